"""The one rule for ``staged_pupil.reject_codes``: which staged records are not published, and why.

A record's codes are its **parse codes**, set at stage from its parse issues, followed by its
**validation codes** (``CT-DQ-*``), recomputed on every validation run. A record is not published when it
has no UPN (CT-PARSE-NO-UPN), when a row of it in any table has the wrong number of cells
(CT-PARSE-SHAPE: its cells cannot be trusted to line up), or when a value of a mandatory field
(``MANDATORY_FIELDS``) could not be read (CT-PARSE-VALUE, e.g. a DOB that is no date). An *absent*
mandatory value is left for validation to judge. Records a caller of ``publish`` names are added with
their codes (or CT-INGEST-REJECTED).

Stage (``rejection_codes``), validation (``read_codes`` / ``set_codes``) and publish (``add_rejections``)
all read and write the column through this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, bindparam, select, update

from censustrace.census.formats import ParseIssue
from censustrace.census.formats.errors import NO_UPN, SHAPE, VALUE
from censustrace.intake.quarantine import IngestError
from censustrace.warehouse.tables import staged_pupil

#: Reason codes validation owns: stripped and recomputed on every run, so a rerun gives the same codes.
DQ_PREFIX: Final = "CT-DQ-"
RECORD_REJECTED: Final = "CT-INGEST-REJECTED"  # a record rejected by validation without a code of its own

#: Fields whose value must be readable for a record to be published (see the module docstring).
MANDATORY_FIELDS: Final = (
    "upn",
    "surname",
    "forename",
    "dob",
    "sex",
    "entry_date",
    "enrol_status",
    "nc_year",
)


def rejection_codes(issues: Iterable[ParseIssue]) -> list[str]:
    """Why a record's parse issues stop it being published (``code`` or ``code:field``); [] if they don't."""
    found: set[str] = set()
    for issue in issues:
        if issue.code in (NO_UPN, SHAPE):
            found.add(issue.code)
        elif issue.code == VALUE and issue.field in MANDATORY_FIELDS:
            found.add(f"{VALUE}:{issue.field}")
    return sorted(found)


def add_rejections(conn: Connection, extract_id: str, rejected: Mapping[int, Sequence[str]]) -> None:
    """Add ``rejected`` (record number -> codes; none given: CT-INGEST-REJECTED) to the records' codes."""
    if not rejected:
        return
    # Keys may arrive as strings (JSON from a validation task): record numbers are integers.
    wanted = {int(number): list(codes) for number, codes in rejected.items()}
    numbers = sorted(wanted)
    current: dict[int, list[str]] = {}
    for start in range(0, len(numbers), 500):
        chunk = numbers[start : start + 500]
        query = select(staged_pupil.c.record_number, staged_pupil.c.reject_codes).where(
            staged_pupil.c.extract_id == extract_id, staged_pupil.c.record_number.in_(chunk)
        )
        for number, codes in conn.execute(query):
            current[number] = list(codes or [])
    unknown = sorted(set(numbers) - set(current))
    if unknown:
        raise IngestError(
            f"{len(unknown)} rejected record numbers are not staged records of {extract_id} "
            f"(first: {unknown[0]})",
            code="CT-INGEST-REJECT-UNKNOWN",
        )
    params = []
    for number in numbers:
        merged = list(dict.fromkeys([*current[number], *(wanted[number] or [RECORD_REJECTED])]))
        params.append({"b_extract": extract_id, "b_number": number, "b_codes": merged})
    _write_codes(conn, params)


@dataclass(frozen=True, slots=True)
class StagedCodes:
    """``staged_pupil.reject_codes`` of an extract as they are now, and the parse rule's part of them."""

    current: Mapping[int, tuple[str, ...]]  # record number -> codes (records with none left out)

    def parse_codes(self, record: int) -> tuple[str, ...]:
        return tuple(c for c in self.current.get(record, ()) if not c.startswith(DQ_PREFIX))

    def parse_rejected(self) -> set[int]:
        return {n for n in self.current if self.parse_codes(n)}


def read_codes(conn: Connection, extract_id: str) -> StagedCodes:
    rows = conn.execute(
        select(staged_pupil.c.record_number, staged_pupil.c.reject_codes).where(
            staged_pupil.c.extract_id == extract_id, staged_pupil.c.reject_codes.is_not(None)
        )
    )
    return StagedCodes({int(n): tuple(codes or ()) for n, codes in rows})


def set_codes(
    conn: Connection, extract_id: str, codes: StagedCodes, rejected: Mapping[int, Sequence[str]]
) -> None:
    """Set each record's ``reject_codes`` to its parse codes plus this run's validation codes; only rows
    whose codes change are written."""
    changes = []
    for number in sorted(set(codes.current) | set(rejected)):
        wanted = [*codes.parse_codes(number), *rejected.get(number, ())]
        if tuple(wanted) != codes.current.get(number, ()):
            changes.append({"b_extract": extract_id, "b_number": number, "b_codes": wanted or None})
    if changes:
        _write_codes(conn, changes)


def _write_codes(conn: Connection, params: Sequence[Mapping[str, Any]]) -> None:
    """One UPDATE executed for many records (``b_extract``, ``b_number``, ``b_codes``)."""
    conn.execute(
        update(staged_pupil)
        .where(
            staged_pupil.c.extract_id == bindparam("b_extract"),
            staged_pupil.c.record_number == bindparam("b_number"),
        )
        .values(reject_codes=bindparam("b_codes", type_=staged_pupil.c.reject_codes.type)),
        params,
    )


__all__ = [
    "DQ_PREFIX",
    "MANDATORY_FIELDS",
    "RECORD_REJECTED",
    "StagedCodes",
    "add_rejections",
    "read_codes",
    "rejection_codes",
    "set_codes",
]
