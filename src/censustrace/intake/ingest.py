"""The ingest use cases after registration: ``stage`` and ``publish``, and ``ingest_file`` (the whole
chain for one landed file) that the CLI and the Airflow tasks call.

* ``stage`` parses the archived bytes into the staging tables in ONE transaction (earlier staging rows of
  the extract are deleted first, so a rerun after a crash is exact). A whole-file ParseError, even after
  some records, rolls that transaction back and quarantines the extract. (On SQLite the file is parsed
  into a temporary spool just before that transaction, so a ParseError comes before it begins.)
* Validation (a later step) reads the staged rows of an extract and hands back record numbers to reject.
* ``publish`` copies the staged rows, minus rejected records, into ``pupil``, ``pupil_address`` and
  ``fsm_period`` in ONE transaction, with the registry status and supersession, and empties staging.

Rejection rule for parse issues (applied at stage, recorded in ``staged_pupil.reject_codes``): a record is
not published when it has no UPN (CT-PARSE-NO-UPN), when a row of it in any table has the wrong number
of cells (CT-PARSE-SHAPE: its cells cannot be trusted to line up), or when a value of a mandatory field
(``MANDATORY_FIELDS``) could not be read (CT-PARSE-VALUE, e.g. a DOB that is no date). An *absent*
mandatory value is left for validation to judge.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache, partial
from operator import itemgetter
from pathlib import Path
from typing import Any, Final, cast

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet, OutputDatasetFacet
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
    Transformation,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from sqlalchemy import Connection, Dialect, Engine, Table, bindparam, delete, func, select, text, update

from censustrace.census.formats import ExtractHeader, ParseError, ParseIssue, parse_extract
from censustrace.census.formats.common import (
    FIELD_AT,
    NO_UPN,
    ORPHAN,
    SHAPE,
    UNKNOWN_COLUMN,
    VALUE,
    FormatName,
)
from censustrace.census.formats.la_csv import DEFAULT_RULES, CsvRules
from censustrace.config import Settings
from censustrace.intake.archive import archive_path_for
from censustrace.intake.quarantine import IngestError, Reason, quarantine, reason, reason_from_error
from censustrace.intake.receive import Receipt, receive
from censustrace.intake.registry import (
    PART_TABLES,
    ExtractRow,
    Registration,
    archive_input,
    census_facet,
    csv_rules,
    extract_files,
    extract_of,
    get_extract,
    opened_files,
    register,
)
from censustrace.intake.supersession import supersede
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.warehouse.db import sqlite_staging_engine, warehouse_engine, write_transaction
from censustrace.warehouse.load import AttachedSpool, BulkWriter
from censustrace.warehouse.naming import (
    CSV_JOIN_COLUMN,
    SourceItem,
    column_sources,
    description,
    warehouse_dataset_name,
    warehouse_namespace,
)
from censustrace.warehouse.tables import (
    CANONICAL,
    DUPLICATE,
    LIST_FIELDS,
    LIST_SEPARATOR,
    LOADED,
    QUARANTINED,
    RECEIVED,
    STAGED,
    STAGING,
    UNFINISHED,
    extracts,
    fsm_period,
    pupil,
    pupil_address,
    rejected_record,
    staged_fsm_period,
    staged_pupil,
    staged_pupil_address,
)

# --- stable codes of this module ------------------------------------------------------------------------
NO_PUPILS: Final = "CT-INGEST-NO-PUPILS"  # a well-formed file with a header and no pupil records
HEADER_MISMATCH: Final = "CT-INGEST-HEADER-MISMATCH"  # the header's LA is the LA of none of the UPNs
ALL_REJECTED: Final = "CT-INGEST-ALL-REJECTED"  # every record was rejected: nothing left to publish
ROWS_REJECTED: Final = "CT-INGEST-ROWS-REJECTED"  # summary on a loaded extract: some records not loaded
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
#: The header-LA check needs this many UPNs: a tiny school could take all its pupils from elsewhere.
MISMATCH_MIN_UPNS: Final = 5
# Temporary UPNs may carry a pseudo-LA (001-005) instead of an LA number: no evidence either way.
_PSEUDO_LAS: Final = frozenset({"001", "002", "003", "004", "005"})
#: Rejected records listed one by one in an outcome's errors, at most (the registry keeps them all).
MAX_LISTED_REJECTIONS: Final = 100

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


def rejection_codes(issues: Iterable[ParseIssue]) -> list[str]:
    """Why a record's parse issues stop it being published (``code`` or ``code:field``); [] if they don't."""
    found: set[str] = set()
    for issue in issues:
        if issue.code in (NO_UPN, SHAPE):
            found.add(issue.code)
        elif issue.code == VALUE and issue.field in MANDATORY_FIELDS:
            found.add(f"{VALUE}:{issue.field}")
    return sorted(found)


def pupil_key(secret: bytes, upn: str) -> str:
    """The pupil key of a UPN: HMAC-SHA256 (hex) with the instance's secret."""
    return hmac.digest(secret, upn.encode(), "sha256").hex()


class _Refused(Exception):
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
    head, files = _extract_and_files(engine, extract_id)
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
    except _Refused as exc:
        refused = exc.reasons
    counts = RowCounts(read=staged.read, rejected=staged.rejected)
    if refused:
        done = quarantine(extract_id, refused, settings)
        lineage = StepLineage(inputs=[archive_input(settings, f) for f in files])
        lineage.extend(done.lineage)
        return StageResult(
            extract_id, QUARANTINED, RowCounts(staged.read, 0, staged.read), errors=refused, lineage=lineage
        )
    lineage = _table_lineage(settings, engine, head, files, STAGING.values(), staged.written)
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


def _extract_and_files(engine: Engine, extract_id: str) -> tuple[ExtractRow, list[ExtractRow]]:
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
        raise _Refused(reason(NO_PUPILS, f"{file}: the file holds no pupil records", file))
    if staged.upns_checked >= MISMATCH_MIN_UPNS and staged.upns_local == 0:
        raise _Refused(
            reason(
                HEADER_MISMATCH,
                f"{file}: the header's LA {la} is the LA of none of the {staged.upns_checked} UPNs; "
                "the header or the file is wrong",
                file,
            )
        )


def _orphan_reason(issue: ParseIssue) -> Reason:
    return reason(issue.code, issue.message, f"{issue.file}, {issue.unit} {issue.record}")


# --- publish ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishResult:
    """``status`` is ``loaded`` (also when it already was: publishing again changes nothing) or
    ``quarantined`` (every record rejected)."""

    extract_id: str
    status: str
    rows: RowCounts
    supersedes: str | None = None
    superseded_by: str | None = None
    rejections: tuple[tuple[int, tuple[str, ...]], ...] = ()  # (record number, codes), at most 101
    errors: tuple[Reason, ...] = ()
    already_loaded: bool = False
    lineage: StepLineage = field(default_factory=StepLineage)


def publish(extract_id: str, rejected: Mapping[int, Sequence[str]], settings: Settings) -> PublishResult:
    """Publish a staged extract: its staged records minus ``rejected`` (record number -> reason codes,
    from validation) and minus those the parse rule rejected, into the canonical tables, in one
    transaction that also sets its registry row (``loaded``, counts, supersession) and empties staging."""
    engine = warehouse_engine(settings.warehouse_db_url)
    head, files = _extract_and_files(engine, extract_id)
    try:
        with write_transaction(engine) as conn:
            if conn.dialect.name == "postgresql" and head.laestab:
                # Publishes of one school's census queue here, so supersession sees the last one.
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _school_lock(head)})
            row = get_extract(conn, extract_id, lock=True)
            assert row is not None
            if row.status == LOADED:
                return _published(settings, engine, conn, row, files, already=True)
            if row.status != STAGED:
                raise IngestError(
                    f"extract {extract_id} is {row.status}, not staged: stage it first",
                    code="CT-INGEST-STATE",
                )
            _apply_rejections(conn, extract_id, rejected)
            written, rejected_count = _copy_to_final(conn, extract_id)
            loaded = written[pupil.name]
            if loaded == 0:
                raise _Refused(
                    reason(ALL_REJECTED, f"{row.original_name}: every record was rejected", row.original_name)
                )
            previous, following = supersede(conn, row)
            now = dt.datetime.now(dt.UTC)
            reasons = [r for r in row.reasons if r["code"] != ROWS_REJECTED]
            if rejected_count:
                reasons.append(_rejection_summary(conn, row, rejected_count))
            conn.execute(
                update(extracts)
                .where(extracts.c.extract_id == extract_id)
                .values(
                    status=LOADED,
                    loaded_at=now,
                    pupil_count=loaded,
                    rows_rejected=rejected_count,
                    supersedes=previous,
                    superseded_by=following,
                    reasons=reasons,
                )
            )
            conn.execute(
                update(extracts).where(extracts.c.part_of == extract_id).values(status=LOADED, loaded_at=now)
            )
            for table in (staged_fsm_period, staged_pupil_address, staged_pupil):
                conn.execute(delete(table).where(table.c.extract_id == extract_id))
            row = get_extract(conn, extract_id)
            assert row is not None
            return _published(settings, engine, conn, row, files, already=False, written=written)
    except _Refused as exc:
        done = quarantine(extract_id, exc.reasons, settings)
        lineage = StepLineage(inputs=[archive_input(settings, f) for f in files])
        lineage.extend(done.lineage)
        read = head.rows_read or 0
        return PublishResult(
            extract_id, QUARANTINED, RowCounts(read, 0, read), errors=exc.reasons, lineage=lineage
        )


def _school_lock(row: ExtractRow) -> int:
    digest = hashlib.sha256(f"censustrace-publish:{row.laestab}/{row.term}/{row.year}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _apply_rejections(conn: Connection, extract_id: str, rejected: Mapping[int, Sequence[str]]) -> None:
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
    conn.execute(
        update(staged_pupil)
        .where(
            staged_pupil.c.extract_id == bindparam("b_extract"),
            staged_pupil.c.record_number == bindparam("b_number"),
        )
        .values(reject_codes=bindparam("b_codes", type_=staged_pupil.c.reject_codes.type)),
        params,
    )


def _copy_to_final(conn: Connection, extract_id: str) -> tuple[dict[str, int], int]:
    """Staged rows of kept records into the canonical tables (replacing any of this extract), inside
    the database (``INSERT ... SELECT``): rows written per table, and records rejected."""
    for table in (fsm_period, pupil_address, pupil, rejected_record):
        conn.execute(delete(table).where(table.c.extract_id == extract_id))
    kept = (staged_pupil.c.extract_id == extract_id) & staged_pupil.c.reject_codes.is_(None)
    counts: dict[str, int] = {}
    for final in CANONICAL:
        source = STAGING[final]
        columns = [c.name for c in final.columns]
        query = select(*(source.c[name] for name in columns))
        if source is not staged_pupil:
            query = query.join(
                staged_pupil,
                (staged_pupil.c.extract_id == source.c.extract_id)
                & (staged_pupil.c.record_number == source.c.record_number),
            )
        result = conn.execute(final.insert().from_select(columns, query.where(kept)))
        counts[final.name] = result.rowcount
    result = conn.execute(
        rejected_record.insert().from_select(
            ["extract_id", "record_number", "codes"],
            select(
                staged_pupil.c.extract_id, staged_pupil.c.record_number, staged_pupil.c.reject_codes
            ).where(staged_pupil.c.extract_id == extract_id, staged_pupil.c.reject_codes.is_not(None)),
        )
    )
    return counts, result.rowcount


def _rejection_summary(conn: Connection, row: ExtractRow, count: int) -> Reason:
    tally: Counter[str] = Counter()
    for codes in conn.execute(
        select(rejected_record.c.codes).where(rejected_record.c.extract_id == row.extract_id)
    ).scalars():
        tally.update(codes)
    detail = ", ".join(f"{code} x{n}" for code, n in sorted(tally.items()))
    return reason(
        ROWS_REJECTED,
        f"{row.original_name}: {count} of {row.rows_read} records not loaded ({detail})",
        row.original_name,
    )


def _published(
    settings: Settings,
    engine: Engine,
    conn: Connection,
    row: ExtractRow,
    files: list[ExtractRow],
    *,
    already: bool,
    written: Mapping[str, int] | None = None,
) -> PublishResult:
    """The result of a publish; ``written`` (rows per canonical table) is counted when not given."""
    if written is None:
        written = {
            table.name: conn.execute(
                select(func.count()).select_from(table).where(table.c.extract_id == row.extract_id)
            ).scalar_one()
            for table in CANONICAL
        }
    rejections = tuple(
        (number, tuple(codes))
        for number, codes in conn.execute(
            select(rejected_record.c.record_number, rejected_record.c.codes)
            .where(rejected_record.c.extract_id == row.extract_id)
            .order_by(rejected_record.c.record_number)
            .limit(MAX_LISTED_REJECTIONS + 1)
        )
    )
    counts = RowCounts(row.rows_read or 0, row.pupil_count or 0, row.rows_rejected or 0)
    lineage = _table_lineage(
        settings, engine, row, files, CANONICAL, written, pupil_count=row.pupil_count, read=STAGING.values()
    )
    return PublishResult(
        row.extract_id,
        LOADED,
        counts,
        supersedes=row.supersedes,
        superseded_by=row.superseded_by,
        rejections=rejections,
        already_loaded=already,
        lineage=lineage,
    )


# --- lineage ---------------------------------------------------------------------------------------------

_TRANSFORMS: Final[dict[str, tuple[str, str]]] = {
    "identity": ("DIRECT", "IDENTITY"),
    "transformation": ("DIRECT", "TRANSFORMATION"),
    "masked": ("DIRECT", "TRANSFORMATION"),
    "derived": ("DIRECT", "TRANSFORMATION"),
}


def _table_lineage(
    settings: Settings,
    engine: Engine,
    head: ExtractRow,
    files: list[ExtractRow],
    tables: Iterable[Table],
    written: Mapping[str, int],
    *,
    pupil_count: int | None = None,
    read: Iterable[Table] = (),
) -> StepLineage:
    """Inputs: the archived files at their sha256 (and the ``read`` tables at version = extract id);
    outputs: ``tables`` at version = extract id, with schema, row count, the extract's header and column
    lineage back to the source items."""
    url = settings.warehouse_db_url
    archived = [archive_input(settings, f) for f in files]
    by_role = {
        (f.csv_table or "file"): (FILE_NAMESPACE, i.name) for f, i in zip(files, archived, strict=True)
    }
    inputs: list[InputDataset] = list(archived)
    version_facet = DatasetVersionDatasetFacet(datasetVersion=head.extract_id)
    # Publish reads the validated staging tables: the trace then passes through them and their
    # data-quality facets on the way back to the files.
    inputs += [
        InputDataset(
            namespace=_warehouse_namespace(url),
            name=_warehouse_dataset_name(url, table.name),
            facets={"version": version_facet},
        )
        for table in read
    ]
    known = head.format in ("school_census_xml", "ctf_xml", "la_csv")
    sources = _column_sources(cast(FormatName, head.format)) if known else {}
    outputs = []
    for table in tables:
        canonical = table.name.removeprefix("staged_")
        facets: dict[str, DatasetFacet] = {
            "version": DatasetVersionDatasetFacet(datasetVersion=head.extract_id),
            "schema": SchemaDatasetFacet(
                fields=[
                    SchemaDatasetFacetFields(name=name, type=type_)
                    for name, type_ in _column_types(engine.dialect, table)
                ]
            ),
            "censusExtract": census_facet(head, pupil_count),
        }
        column_facet = _column_lineage(
            sources.get(canonical, {}), by_role, csv_join=head.format == "la_csv" and canonical != "pupil"
        )
        if column_facet is not None:
            facets["columnLineage"] = column_facet
        output_facets: dict[str, OutputDatasetFacet] = {
            "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=written.get(table.name, 0))
        }
        outputs.append(
            OutputDataset(
                namespace=_warehouse_namespace(url),
                name=_warehouse_dataset_name(url, table.name),
                facets=facets,
                outputFacets=output_facets,
            )
        )
    return StepLineage(inputs=inputs, outputs=outputs)


# Names and sources are the same for every file: worked out once (they parse URLs, walk mappings).
_warehouse_namespace = lru_cache(maxsize=16)(warehouse_namespace)
_warehouse_dataset_name = lru_cache(maxsize=64)(warehouse_dataset_name)
_column_sources = lru_cache(maxsize=8)(column_sources)


@lru_cache(maxsize=64)
def _column_types(dialect: Dialect, table: Table) -> tuple[tuple[str, str], ...]:
    """(name, SQL type) of each column, as the dialect writes it (compiled once per table)."""
    return tuple((c.name, str(c.type.compile(dialect=dialect))) for c in table.columns)


def _column_lineage(
    sources: Mapping[str, tuple[SourceItem, ...]],
    by_role: Mapping[str, tuple[str, str]],
    *,
    csv_join: bool,
) -> ColumnLineageDatasetFacet | None:
    fields: dict[str, Fields] = {}
    for column, items in sources.items():
        inputs = []
        for item in items:
            if item.role not in by_role:
                continue
            namespace, name = by_role[item.role]
            kind, subtype = _TRANSFORMS[item.transform]
            transformation = Transformation(
                type=kind,
                subtype=subtype,
                description=description(column) if item.transform != "identity" else None,
                masking=item.transform == "masked",
            )
            inputs.append(
                InputField(namespace=namespace, name=name, field=item.item, transformations=[transformation])
            )
        if inputs:
            fields[column] = Fields(inputFields=inputs)
    if not fields:
        return None
    dataset: list[InputField] = []
    if csv_join:
        # Address and FSM rows are matched to pupil rows on the UPN of each table.
        dataset = [
            InputField(
                namespace=namespace,
                name=name,
                field=CSV_JOIN_COLUMN,
                transformations=[Transformation(type="INDIRECT", subtype="JOIN")],
            )
            for namespace, name in by_role.values()
        ]
    return ColumnLineageDatasetFacet(fields=fields, dataset=dataset)


# --- the whole chain for one landed file --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IngestOutcome:
    """What happened to one landed file; ``as_dict()`` is the CLI's ``--json`` shape.

    ``status``: ``loaded``, ``quarantined``, ``duplicate``, or ``received`` for an LA CSV table whose
    sibling tables have not all arrived yet. ``extract_id``: the extract that holds (or would hold) this
    file's data. ``rows`` counts pupil records of that extract; zero for a duplicate or a waiting file."""

    file: str
    sha256: str
    extract_id: str | None
    status: str
    supersedes: str | None
    rows: RowCounts
    errors: tuple[Reason, ...]
    lineage: StepLineage  # the steps merged: what the whole ingest read and wrote
    steps: tuple[tuple[str, StepLineage], ...] = ()  # ("receive" | "register" | "stage" | "publish", ...)

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "extract_id": self.extract_id,
            "status": self.status,
            "supersedes": self.supersedes,
            "rows": self.rows.as_dict(),
            "errors": [dict(e) for e in self.errors],
        }


@dataclass(frozen=True, slots=True)
class Received:
    """A landed file archived and registered: what the ``receive`` task hands to ``stage``."""

    file: str
    receipt: Receipt
    registration: Registration

    @property
    def lineage(self) -> StepLineage:
        """Landed file -> archive -> registry; the landed and archived versions carry the header the
        registry read (school, term, year), so a trace-back names whose census a source file is."""
        merged = merge_lineage([self.receipt.lineage, self.registration.lineage])
        facet = census_facet(self.registration.extract)
        for dataset in [*merged.inputs, *merged.outputs]:
            if dataset.facets and "censusExtract" in dataset.facets:
                dataset.facets["censusExtract"] = facet
        return merged

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": Path(self.file).name,
            "sha256": self.receipt.archived.sha256,
            "extract_id": self.registration.extract_id,
            "status": self.registration.status,
            "ready": self.registration.ready,
            "errors": [dict(e) for e in self.registration.errors],
        }


def receive_and_register(path: Path, settings: Settings) -> Received:
    """Archive a landed file and register it; the landing copy goes only once both are durable, so a
    retry after a crash finds the file again (the archive keeps the bytes once, the registry resumes)."""
    receipt = receive(path, settings, remove_landing=False)
    try:
        registration = register(receipt.archived, receipt.received_at, settings)
    except BaseException:
        receipt.give_back()  # e.g. the warehouse is down: the next run receives it again
        raise
    receipt.done()  # this receiver's claim only: a same-named upload that arrived meanwhile stays
    return Received(str(path), receipt, registration)


def ingest_file(path: Path, settings: Settings) -> IngestOutcome:
    """Receive (archive) one landed file, register it, and if its extract is complete stage, validate
    (``censustrace.quality``) and publish it. Bad input never raises: it is quarantined with stable codes."""
    from censustrace.quality.run import validate_extract

    received = receive_and_register(path, settings)
    receipt, registration = received.receipt, received.registration
    steps = [("receive", receipt.lineage), ("register", registration.lineage)]
    errors: list[Reason] = list(registration.errors)
    counts = RowCounts()
    supersedes: str | None = None
    ready = registration.ready
    if ready is not None:
        staged = stage(ready, settings)
        steps.append(("stage", staged.lineage))
        errors += staged.errors
        counts = staged.rows
        refused = False
        if staged.status == STAGED:
            validated = validate_extract(ready, settings)
            steps.append(("validate", validated.lineage))
            errors += validated.errors
            refused = validated.status == QUARANTINED
            if refused:
                counts = RowCounts(staged.rows.read, 0, staged.rows.read)
        if staged.status in (STAGED, LOADED) and not refused:
            published = publish(ready, {}, settings)
            steps.append(("publish", published.lineage))
            counts, supersedes = published.rows, published.supersedes
            errors += published.errors
            errors += listed_rejections(published)
            # Rows that joined no pupil, unknown CSV columns and validation warnings: kept in the registry.
            errors += [
                r
                for r in _issues_of(settings, ready)
                if r["code"] in (ORPHAN, UNKNOWN_COLUMN) or r["code"].startswith("CT-DQ-")
            ]
    engine = warehouse_engine(settings.warehouse_db_url)
    with engine.connect() as conn:
        row = get_extract(conn, registration.extract_id) or registration.extract
        owner = extract_of(conn, row)
    if row.status == DUPLICATE and owner.status == QUARANTINED:
        errors += owner.reasons
    status = row.status if row.status != STAGED else RECEIVED
    return IngestOutcome(
        file=str(path),
        sha256=receipt.archived.sha256,
        extract_id=None if row.csv_table in PART_TABLES and owner is row else owner.extract_id,
        status=status,
        supersedes=supersedes,
        rows=counts if row.status != DUPLICATE else RowCounts(),
        errors=tuple(errors),
        lineage=merge_lineage(step for _, step in steps),
        steps=tuple(steps),
    )


def merge_lineage(steps: Iterable[StepLineage]) -> StepLineage:
    """The lineage of several steps as one: each dataset once (the last step's facets win), and a
    dataset written by one step and read by a later one (the archived file) only as an output."""
    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    merged = StepLineage()
    for step in steps:
        for dataset in step.inputs:
            inputs[(dataset.namespace, dataset.name)] = dataset
        for output in step.outputs:
            outputs[(output.namespace, output.name)] = output
        merged.run_facets.update(step.run_facets)
        merged.job_facets.update(step.job_facets)
    merged.inputs = [d for key, d in inputs.items() if key not in outputs]
    merged.outputs = list(outputs.values())
    return merged


def listed_rejections(result: PublishResult) -> list[Reason]:
    """The first rejected records as reasons (record numbers and codes only), and how many more."""
    out: list[Reason] = []
    for number, codes in result.rejections[:MAX_LISTED_REJECTIONS]:
        for code in codes:
            base, _, field_name = code.partition(":")
            what = f" (field {field_name})" if field_name else ""
            out.append(reason(base, f"record {number} not loaded{what}", f"record {number}"))
    if len(result.rejections) > MAX_LISTED_REJECTIONS:
        out.append(
            reason(
                ROWS_REJECTED,
                f"{result.rows.rejected} records not loaded; the first {MAX_LISTED_REJECTIONS} are listed",
                "",
            )
        )
    return out


def _issues_of(settings: Settings, extract_id: str) -> list[Reason]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        row = get_extract(conn, extract_id)
    return list(row.reasons) if row else []


__all__ = [
    "ALL_REJECTED",
    "HEADER_MISMATCH",
    "MANDATORY_FIELDS",
    "NO_PUPILS",
    "IngestOutcome",
    "PublishResult",
    "RowCounts",
    "StageResult",
    "ingest_file",
    "merge_lineage",
    "publish",
    "pupil_key",
    "rejection_codes",
    "stage",
]
