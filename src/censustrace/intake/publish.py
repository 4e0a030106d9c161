"""Publish: copy an extract's staged rows, minus rejected records, into ``pupil``, ``pupil_address``
and ``fsm_period`` in ONE transaction, with the registry status and supersession, and empty staging.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from sqlalchemy import Connection, Engine, delete, func, select, text, update

from censustrace.config import Settings
from censustrace.intake.ingest_lineage import table_lineage
from censustrace.intake.quarantine import IngestError, Reason, quarantine, reason
from censustrace.intake.registry import ExtractRow, archive_input, get_extract
from censustrace.intake.reject_codes import add_rejections
from censustrace.intake.stage import Refused, RowCounts, extract_and_files
from censustrace.intake.supersession import supersede
from censustrace.lineage.model import StepLineage
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import (
    CANONICAL,
    LOADED,
    QUARANTINED,
    STAGED,
    STAGING,
    extracts,
    fsm_period,
    pupil,
    pupil_address,
    rejected_record,
    staged_fsm_period,
    staged_pupil,
    staged_pupil_address,
)

ALL_REJECTED: Final = "CT-INGEST-ALL-REJECTED"  # every record was rejected: nothing left to publish
ROWS_REJECTED: Final = "CT-INGEST-ROWS-REJECTED"  # summary on a loaded extract: some records not loaded
#: Rejected records listed one by one in an outcome's errors, at most (the registry keeps them all).
MAX_LISTED_REJECTIONS: Final = 100


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
    head, files = extract_and_files(engine, extract_id)
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
            add_rejections(conn, extract_id, rejected)
            written, rejected_count = _copy_to_final(conn, extract_id)
            loaded = written[pupil.name]
            if loaded == 0:
                raise Refused(
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
    except Refused as exc:
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
    lineage = table_lineage(
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


__all__ = ["ALL_REJECTED", "MAX_LISTED_REJECTIONS", "ROWS_REJECTED", "PublishResult", "publish"]
