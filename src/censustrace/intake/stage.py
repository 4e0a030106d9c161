"""Stage: parse an extract's archived bytes into the staging tables, in ONE transaction.

Earlier staging rows of the extract are deleted first, so a rerun after a crash is exact. A whole-file
ParseError, even after some records, rolls that transaction back and quarantines the extract. (On SQLite
the file is parsed into a temporary spool just before that transaction, so a ParseError comes before it
begins.) Each staged record carries its parse issues and, when the parse rule rejects it, its
``reject_codes`` (``censustrace.intake.reject_codes``). Validation (a later step) reads the staged rows.
"""

from __future__ import annotations

import datetime as dt
import hmac
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Engine, Table, delete, update

from censustrace.census.formats import ExtractHeader, ParseError, ParseIssue, parse_extract
from censustrace.census.formats.la_csv import DEFAULT_RULES, CsvRules
from censustrace.census.formats.records import FIELD_AT
from censustrace.config import Settings
from censustrace.intake.archive import archive_path_for
from censustrace.intake.ingest_lineage import table_lineage
from censustrace.intake.quarantine import IngestError, Reason, quarantine, reason, reason_from_error
from censustrace.intake.registry import (
    ExtractRow,
    archive_input,
    csv_rules,
    extract_files,
    get_extract,
    opened_files,
)
from censustrace.intake.reject_codes import rejection_codes
from censustrace.lineage.model import StepLineage
from censustrace.warehouse.db import sqlite_staging_engine, warehouse_engine, write_transaction
from censustrace.warehouse.load import AttachedSpool, BulkWriter
from censustrace.warehouse.tables import (
    LIST_FIELDS,
    LIST_SEPARATOR,
    QUARANTINED,
    STAGED,
    STAGING,
    UNFINISHED,
    extracts,
    fsm_period,
    pupil,
    pupil_address,
    staged_fsm_period,
    staged_pupil,
    staged_pupil_address,
)

# --- stable codes of this module ------------------------------------------------------------------------
NO_PUPILS: Final = "CT-INGEST-NO-PUPILS"  # a well-formed file with a header and no pupil records
HEADER_MISMATCH: Final = "CT-INGEST-HEADER-MISMATCH"  # the header's LA is the LA of none of the UPNs
#: The header-LA check needs this many UPNs: a tiny school could take all its pupils from elsewhere.
MISMATCH_MIN_UPNS: Final = 5
# Temporary UPNs may carry a pseudo-LA (001-005) instead of an LA number: no evidence either way.
_PSEUDO_LAS: Final = frozenset({"001", "002", "003", "004", "005"})

# --- staging row layouts ----------------------------------------------------------------------------------
_OWN_COLUMNS: Final = ("extract_id", "record_number", "pupil_key", *LIST_FIELDS)
#: PupilRecord fields copied as they are into ``pupil`` (same names).
RECORD_FIELDS: Final = tuple(c.name for c in pupil.columns if c.name not in _OWN_COLUMNS)
STAGED_PUPIL_COLUMNS: Final = (
    "extract_id",
    "record_number",
    "pupil_key",
    *RECORD_FIELDS,
    *LIST_FIELDS,
    "issues",
    "reject_codes",
)
ADDRESS_ROW_COLUMNS: Final = tuple(c.name for c in pupil_address.columns)
FSM_ROW_COLUMNS: Final = tuple(c.name for c in fsm_period.columns)
# Positions in a reader's value list (``ParsedRow.values``, in PupilRecord field order).
_record_values = itemgetter(*(FIELD_AT[name] for name in RECORD_FIELDS))
_UPN_AT, _NATIONALITY_AT, _SEN_NEEDS_AT = FIELD_AT["upn"], FIELD_AT["nationality"], FIELD_AT["sen_needs"]
_ADDRESS_AT, _POSTCODE_AT, _UPRN_AT = FIELD_AT["address_lines"], FIELD_AT["postcode"], FIELD_AT["uprn"]
_PERIODS_AT: Final = FIELD_AT["fsm_periods"]


def pupil_key(secret: bytes, upn: str) -> str:
    """The pupil key of a UPN: HMAC-SHA256 (hex) with the instance's secret."""
    return hmac.digest(secret, upn.encode(), "sha256").hex()


class Refused(Exception):
    """Raised inside a transaction to roll it back and quarantine the extract instead."""

    def __init__(self, *reasons: Reason) -> None:
        super().__init__(reasons[0]["code"])
        self.reasons = reasons


@dataclass(frozen=True, slots=True)
class RowCounts:
    """Pupil records: read from the file, loaded into ``pupil``, and not loaded (rejected)."""

    read: int = 0
    loaded: int = 0
    rejected: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"read": self.read, "loaded": self.loaded, "rejected": self.rejected}


# --- stage -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StageResult:
    """``status`` is ``staged``, ``quarantined``, or (``skipped``) the status the extract already had."""

    extract_id: str
    status: str
    rows: RowCounts
    skipped: bool = False
    issues: tuple[Reason, ...] = ()  # problems of the extract as a whole that did not stop it
    errors: tuple[Reason, ...] = ()  # why it was quarantined
    lineage: StepLineage = field(default_factory=StepLineage)


@dataclass(slots=True)
class _Staged:
    read: int = 0
    rejected: int = 0
    upns_checked: int = 0
    upns_local: int = 0
    written: dict[str, int] = field(default_factory=dict)


def stage(extract_id: str, settings: Settings) -> StageResult:
    """Parse the archived bytes of an extract into the staging tables, in one transaction.

    On SQLite, whose write lock covers the whole warehouse, the file is parsed before that transaction
    into a spool (a temporary database attached to the staging connection: on disk, so memory stays
    bounded) and the transaction only copies the spooled rows inside SQLite: other files' stages and
    publishes are not held up while this one parses. On PostgreSQL the rows go straight from the parser
    into the transaction.

    An extract that is already loaded, quarantined or a duplicate is left alone (``skipped``)."""
    engine = warehouse_engine(settings.warehouse_db_url)
    head, files = extract_and_files(engine, extract_id)
    if head.status not in UNFINISHED:
        return _skipped(head)
    if head.format == "la_csv" and len(files) != 3:
        raise IngestError(
            f"extract {extract_id} ({head.original_name}) is waiting for its sibling tables",
            code="CT-INGEST-INCOMPLETE",
        )
    secret = settings.pupil_key_secret_value()
    orphans: list[ParseIssue] = []
    staged = _Staged()
    refused: tuple[Reason, ...] = ()
    archived = [(archive_path_for(settings.archive_dir, f.sha256), f.original_name) for f in files]
    try:
        with opened_files(archived) as paths:
            rules = csv_rules(settings)

            def parse(add: _AddRow) -> ExtractHeader:
                return _parse_rows(extract_id, paths, secret, orphans, staged, add, rules)

            if engine.dialect.name == "sqlite":
                head, unfinished = _stage_through_spool(
                    settings.warehouse_db_url, head, parse, staged, orphans
                )
            else:
                with write_transaction(engine) as conn:
                    head, unfinished = _stage_in(conn, head, staged, orphans, partial(_write_parsed, parse))
            if not unfinished:  # done meanwhile by another process
                return _skipped(head)
    except ParseError as exc:
        refused = (reason_from_error(exc),)
    except Refused as exc:
        refused = exc.reasons
    counts = RowCounts(read=staged.read, rejected=staged.rejected)
    if refused:
        done = quarantine(extract_id, refused, settings)
        lineage = StepLineage(inputs=[archive_input(settings, f) for f in files])
        lineage.extend(done.lineage)
        return StageResult(
            extract_id, QUARANTINED, RowCounts(staged.read, 0, staged.read), errors=refused, lineage=lineage
        )
    lineage = table_lineage(settings, engine, head, files, STAGING.values(), staged.written)
    return StageResult(extract_id, STAGED, counts, issues=tuple(head.reasons), lineage=lineage)


def _stage_in(
    conn: Connection,
    head: ExtractRow,
    staged: _Staged,
    orphans: list[ParseIssue],
    write: Callable[[Connection], tuple[ExtractHeader, dict[str, int]]],
) -> tuple[ExtractRow, bool]:
    """In the caller's write transaction: replace the extract's staging rows with those ``write``
    writes, check the whole extract and mark it staged. ``(row, False)`` if it is no longer unfinished."""
    locked = get_extract(conn, head.extract_id, lock=True)
    if locked is None or locked.status not in UNFINISHED:
        return locked or head, False
    for table in (staged_fsm_period, staged_pupil_address, staged_pupil):
        conn.execute(delete(table).where(table.c.extract_id == head.extract_id))
    header, staged.written = write(conn)
    _check_staged(header.la, head.original_name, staged)
    return _mark_staged(conn, head, header, staged, [_orphan_reason(i) for i in orphans]), True


def _write_parsed(
    parse: Callable[[_AddRow], ExtractHeader], conn: Connection
) -> tuple[ExtractHeader, dict[str, int]]:
    """Parse straight into the staging tables, in batches."""
    writer = BulkWriter(conn, _STAGING_LAYOUT)
    header = parse(writer.add)
    writer.flush()
    return header, dict(writer.written)


def _stage_through_spool(
    url: str,
    head: ExtractRow,
    parse: Callable[[_AddRow], ExtractHeader],
    staged: _Staged,
    orphans: list[ParseIssue],
) -> tuple[ExtractRow, bool]:
    """SQLite: parse into a spool attached to the staging connection, with no lock on the warehouse,
    then take the write lock for the copy only (``INSERT ... SELECT`` inside SQLite)."""
    engine = sqlite_staging_engine(url)
    with _STAGING_LOCK:
        with engine.connect() as conn:
            spool = AttachedSpool(conn, _STAGING_LAYOUT)
            try:
                header = parse(spool.add)
                spool.finish()
            except BaseException:
                spool.close()
                raise
        try:
            with write_transaction(engine) as conn:
                return _stage_in(conn, head, staged, orphans, lambda c: (header, spool.copy_into(c)))
        finally:
            spool.close()


# Spooling and copying one extract at a time per process: the staging connection is shared.
_STAGING_LOCK: Final = threading.RLock()


def _mark_staged(
    conn: Connection, head: ExtractRow, header: ExtractHeader, staged: _Staged, issues: list[Reason]
) -> ExtractRow:
    now = dt.datetime.now(dt.UTC)
    conn.execute(
        update(extracts)
        .where(extracts.c.extract_id == head.extract_id)
        .values(
            status=STAGED,
            staged_at=now,
            format=header.format,
            la=header.la,
            estab=header.estab,
            laestab=header.laestab,
            urn=header.urn,
            term=header.term,
            year=header.year,
            reference_date=header.reference_date,
            rows_read=staged.read,
            rows_rejected=staged.rejected,
            reasons=issues,
        )
    )
    conn.execute(
        update(extracts).where(extracts.c.part_of == head.extract_id).values(status=STAGED, staged_at=now)
    )
    return get_extract(conn, head.extract_id) or head


def extract_and_files(engine: Engine, extract_id: str) -> tuple[ExtractRow, list[ExtractRow]]:
    with engine.connect() as conn:
        head = get_extract(conn, extract_id)
        if head is None:
            raise IngestError(f"no extract {extract_id} in the registry", code="CT-INGEST-NOT-FOUND")
        if head.part_of is not None:
            raise IngestError(
                f"{extract_id} is a table of extract {head.part_of}; stage or publish that",
                code="CT-INGEST-STATE",
            )
        return head, extract_files(conn, extract_id)


def _skipped(row: ExtractRow) -> StageResult:
    counts = RowCounts(row.rows_read or 0, row.pupil_count or 0, row.rows_rejected or 0)
    return StageResult(row.extract_id, row.status, counts, skipped=True)


#: The staging tables and their row layouts, parent first.
_STAGING_LAYOUT: Final = (
    (staged_pupil, STAGED_PUPIL_COLUMNS),
    (staged_pupil_address, ADDRESS_ROW_COLUMNS),
    (staged_fsm_period, FSM_ROW_COLUMNS),
)
_AddRow = Callable[[Table, Sequence[Any]], None]


def _parse_rows(
    extract_id: str,
    paths: Sequence[Path],
    secret: bytes,
    orphans: list[ParseIssue],
    staged: _Staged,
    add: _AddRow,
    rules: CsvRules = DEFAULT_RULES,
) -> ExtractHeader:
    """Parse the extract into staging rows given to ``add``, counting as it goes."""
    extract = parse_extract(paths, csv_rules=rules)
    la = extract.header.la
    join = LIST_SEPARATOR.join
    # The loop runs once per pupil of a national census: rows are built from the reader's value lists
    # (no PupilRecord), the pupil key with one C call, issues only looked at when there are some.
    for number, values, issues in extract.rows(orphans):
        staged.read += 1
        upn = values[_UPN_AT]
        key = None
        if upn:
            key = hmac.digest(secret, upn.encode(), "sha256").hex()  # pupil_key(secret, upn)
            upn_la = upn[1:4]
            if len(upn) == 13 and upn_la.isdigit() and upn_la not in _PSEUDO_LAS:
                staged.upns_checked += 1
                staged.upns_local += upn_la == la
        issue_list = reject = None
        if issues:
            issue_list = [{"code": i.code, "field": i.field, "item": i.item} for i in issues]
            reject = rejection_codes(issues) or None
            staged.rejected += reject is not None
        add(
            staged_pupil,
            (
                extract_id,
                number,
                key,
                *_record_values(values),
                join(values[_NATIONALITY_AT]) or None,
                join(values[_SEN_NEEDS_AT]) or None,
                issue_list,
                reject,
            ),
        )
        lines = values[_ADDRESS_AT]
        if lines:
            address = (*[line or None for line in lines], values[_POSTCODE_AT], values[_UPRN_AT])
            add(staged_pupil_address, (extract_id, number, *address))
        for period_number, period in enumerate(values[_PERIODS_AT], 1):
            row = (extract_id, number, period_number, period.start, period.end, period.uk_country or None)
            add(staged_fsm_period, row)
    return extract.header


def _check_staged(la: str, file: str, staged: _Staged) -> None:
    """Whole-extract checks that need every record: refuse (roll back) when one fails."""
    if staged.read == 0:
        raise Refused(reason(NO_PUPILS, f"{file}: the file holds no pupil records", file))
    if staged.upns_checked >= MISMATCH_MIN_UPNS and staged.upns_local == 0:
        raise Refused(
            reason(
                HEADER_MISMATCH,
                f"{file}: the header's LA {la} is the LA of none of the {staged.upns_checked} UPNs; "
                "the header or the file is wrong",
                file,
            )
        )


def _orphan_reason(issue: ParseIssue) -> Reason:
    return reason(issue.code, issue.message, f"{issue.file}, {issue.unit} {issue.record}")


__all__ = [
    "HEADER_MISMATCH",
    "NO_PUPILS",
    "Refused",
    "RowCounts",
    "StageResult",
    "extract_and_files",
    "pupil_key",
    "stage",
]
