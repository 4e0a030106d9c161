"""Records as the readers yield them: ``ParsedRecord`` (a ``PupilRecord``) or ``ParsedRow`` (its
field values in ``PUPIL_FIELDS`` order), the record template filled from the header, and the UPN check.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final, NamedTuple

from censustrace.census.formats.errors import NO_UPN, ParseIssue, RecordContext
from censustrace.census.formats.header import ExtractHeader
from censustrace.census.model import PUPIL_FIELDS, PupilRecord


class ParsedRecord(NamedTuple):
    """What ``iter_records`` yields: record number, the record, and its row-level issues."""

    number: int
    record: PupilRecord
    issues: list[ParseIssue]


class ParsedRow(NamedTuple):
    """What ``iter_rows`` yields: a record as its field values in ``PUPIL_FIELDS`` order (the same
    values ``PupilRecord(*values)`` holds), for callers that store rows and need no record object."""

    number: int
    values: list[Any]
    issues: list[ParseIssue]


_EMPTY_RECORD: Final[dict[str, Any]] = {
    **dict.fromkeys(PUPIL_FIELDS),
    "nationality": (),
    "sen_needs": (),
    "address_lines": (),
    "fsm_periods": (),
}


def make_record(values: dict[str, Any], header: ExtractHeader) -> PupilRecord:
    """A PupilRecord from mapped ``values`` (missing fields None/empty) and the extract header."""
    return PupilRecord(
        **{
            **_EMPTY_RECORD,
            **values,
            "laestab": header.laestab,
            "urn": header.urn,
            "census_term": header.term,
            "census_year": header.year,
            "reference_date": header.reference_date,
        }
    )


def check_upn(values: dict[str, Any], ctx: RecordContext, item: str) -> None:
    """``upn`` is a required str in the record: an absent one becomes ``""`` plus a CT-PARSE-NO-UPN issue."""
    if not values.get("upn"):
        values["upn"] = ""
        ctx.add(NO_UPN, "upn", item, "is missing")


# --- records as value lists -------------------------------------------------------------------------
# The readers fill a list of field values per record (in ``PUPIL_FIELDS`` order) rather than a dict of
# keyword arguments: a record is built with one positional call, or not at all when the caller stores
# rows (staging). ``iter_records`` and ``iter_rows`` therefore share every line of mapping code.

#: Position of each PupilRecord field in a value list.
FIELD_AT: Final[dict[str, int]] = {name: at for at, name in enumerate(PUPIL_FIELDS)}
UPN_AT: Final = FIELD_AT["upn"]


def record_template(header: ExtractHeader) -> list[Any]:
    """The values of a record with nothing read (None, or ``()`` for lists) and the extract header's
    fields filled in: each record starts as a copy of this."""
    values = [_EMPTY_RECORD[name] for name in PUPIL_FIELDS]
    values[FIELD_AT["laestab"]] = header.laestab
    values[FIELD_AT["urn"]] = header.urn
    values[FIELD_AT["census_term"]] = header.term
    values[FIELD_AT["census_year"]] = header.year
    values[FIELD_AT["reference_date"]] = header.reference_date
    return values


def check_upn_value(values: list[Any], ctx: RecordContext, item: str) -> None:
    """:func:`check_upn` for a value list."""
    if not values[UPN_AT]:
        values[UPN_AT] = ""
        ctx.add(NO_UPN, "upn", item, "is missing")


def as_records(rows: Iterable[ParsedRow]) -> Iterator[ParsedRecord]:
    """Rows as records (``PupilRecord(*values)``), in the same order, lazily."""
    for number, values, issues in rows:
        yield ParsedRecord(number, PupilRecord(*values), issues)
