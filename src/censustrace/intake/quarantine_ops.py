"""Acting on quarantined extracts: list, show, retry and discard (``censustrace quarantine ...``).

* **retry** runs the archived original bytes (checked against their sha256) through today's code,
  suites and thresholds, as a new registry row per file (``ext_<...>-<n>``) whose ``retry_of`` names the
  quarantined row and whose ``received_at`` is the original receipt's: supersession orders by when the
  bytes first came, so a retried old file never replaces a newer census. The original row stays
  quarantined, with its reasons, as the record of what happened. The result is the same object per file
  as ``censustrace ingest --json``. Its lineage reads the archived file at its sha256 and the original
  registry row (``extracts`` at the quarantined extract id) and writes the new one, so a trace from the
  retried data leads back to the original receipt.
* **discard** records that nobody will retry it, with the operator's reason (``quarantine_action``);
  the bytes stay in the archive and the quarantine folder (nothing received is ever deleted).

An extract can be retried or discarded while it is *open*: quarantined, not discarded, and not already
retried (retry the newest attempt instead). Codes: CT-QUARANTINE-NOT-FOUND, -STATE, -PART, -ARCHIVE,
-REASON.
"""

from __future__ import annotations

import datetime as dt
import getpass
from dataclasses import dataclass, field
from typing import Any, Final

from openlineage.client.event_v2 import InputDataset
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from sqlalchemy import Connection, func, select, text

from censustrace.census.formats.errors import ORPHAN, UNKNOWN_COLUMN
from censustrace.census.formats.header import ExtractHeader
from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.intake.archive import archive_path_for, sha256_of
from censustrace.intake.ingest import IngestOutcome, listed_rejections
from censustrace.intake.ingest_lineage import merge_lineage
from censustrace.intake.publish import publish
from censustrace.intake.quarantine import Reason, quarantine, reason
from censustrace.intake.registry import (
    REGISTRY_LOCK_KEY,
    ExtractRow,
    archive_input,
    extract_files,
    extract_id_for,
    get_extract,
    inspect_extract,
    inspect_file,
    register_lineage,
)
from censustrace.intake.stage import RowCounts, stage
from censustrace.lineage.model import StepLineage
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import (
    DISCARD,
    LOADED,
    QUARANTINED,
    RECEIVED,
    RETRY,
    STAGED,
    UNFINISHED,
    extracts,
    quarantine_action,
)

OPEN: Final = "open"
RETRYING: Final = "retrying"  # a retry was cut short (a crash): retrying again resumes that attempt
RETRIED: Final = "retried"
DISCARDED: Final = "discarded"
STATES: Final = (OPEN, RETRYING, RETRIED, DISCARDED)
#: Rejected records listed one by one in a retry's errors, at most (as ``ingest``).
MAX_LISTED_REJECTIONS: Final = 100


class QuarantineError(CensustraceError):
    code = "CT-QUARANTINE"


@dataclass(frozen=True, slots=True)
class Action:
    action: str
    reason: str | None
    acted_at: dt.datetime
    actor: str | None
    result_extract_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "acted_at": self.acted_at.isoformat(),
            "actor": self.actor,
            "result_extract_id": self.result_extract_id,
        }


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One quarantined extract (its head row, its files) and what was done about it."""

    head: ExtractRow
    files: tuple[ExtractRow, ...]
    state: str
    actions: tuple[Action, ...] = ()
    retried_by: str | None = None
    folder: str | None = None

    def as_dict(self, *, detail: bool = False) -> dict[str, Any]:
        h = self.head
        out: dict[str, Any] = {
            "extract_id": h.extract_id,
            "file": h.original_name,
            "sha256": h.sha256,
            "format": h.format,
            "laestab": h.laestab,
            "term": h.term,
            "year": h.year,
            "received_at": h.received_at.isoformat(),
            "quarantined_at": h.quarantined_at.isoformat() if h.quarantined_at else None,
            "state": self.state,
            "codes": sorted({r["code"] for r in h.reasons}),
            "retry_of": h.retry_of,
            "retried_by": self.retried_by,
        }
        if detail:
            out["reasons"] = [dict(r) for r in h.reasons]
            out["files"] = [
                {"file": f.original_name, "sha256": f.sha256, "size": f.size, "csv_table": f.csv_table}
                for f in self.files
            ]
            out["actions"] = [a.as_dict() for a in self.actions]
            out["quarantine_folder"] = self.folder
        return out


# --- reading -------------------------------------------------------------------------------------------


def _entry(conn: Connection, settings: Settings, head: ExtractRow) -> QuarantineEntry:
    actions = tuple(
        Action(r.action, r.reason, r.acted_at, r.actor, r.result_extract_id)
        for r in conn.execute(
            select(quarantine_action)
            .where(quarantine_action.c.extract_id == head.extract_id)
            .order_by(quarantine_action.c.id)
        )
    )
    retried_by = conn.execute(
        select(extracts.c.extract_id)
        .where(extracts.c.retry_of == head.extract_id, extracts.c.part_of.is_(None))
        .order_by(extracts.c.id.desc())
        .limit(1)
    ).scalar()
    attempt = get_extract(conn, retried_by) if retried_by else None
    state = (
        DISCARDED
        if any(a.action == DISCARD for a in actions)
        else RETRYING
        if attempt is not None and attempt.status in UNFINISHED
        else RETRIED
        if attempt is not None
        else OPEN
    )
    folder = settings.quarantine_dir / head.sha256
    return QuarantineEntry(
        head,
        tuple(extract_files(conn, head.extract_id)),
        state,
        actions,
        retried_by,
        str(folder) if folder.is_dir() else None,
    )


def list_quarantined(settings: Settings, *, include_all: bool = False) -> list[QuarantineEntry]:
    """Quarantined extracts in receipt order: those waiting for a decision (open, or a retry cut
    short), or (``include_all``) every one."""
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        heads = [
            ExtractRow.of(r)
            for r in conn.execute(
                select(extracts)
                .where(extracts.c.status == QUARANTINED, extracts.c.part_of.is_(None))
                .order_by(extracts.c.id)
            )
        ]
        entries = [_entry(conn, settings, h) for h in heads]
    return [e for e in entries if include_all or e.state in (OPEN, RETRYING)]


def show_quarantined(settings: Settings, extract_id: str) -> QuarantineEntry:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return _entry(conn, settings, _quarantined_head(conn, extract_id))


def _quarantined_head(conn: Connection, extract_id: str) -> ExtractRow:
    row = get_extract(conn, extract_id)
    if row is None:
        raise QuarantineError(f"no extract {extract_id} in the registry", code="CT-QUARANTINE-NOT-FOUND")
    if row.part_of is not None:
        raise QuarantineError(
            f"{extract_id} ({row.original_name}) is a table of extract {row.part_of}; use that id",
            code="CT-QUARANTINE-PART",
        )
    if row.status != QUARANTINED:
        raise QuarantineError(
            f"extract {extract_id} is {row.status}, not quarantined", code="CT-QUARANTINE-STATE"
        )
    return row


def _open_head(
    conn: Connection, settings: Settings, extract_id: str, *, resumable: bool = False
) -> QuarantineEntry:
    entry = _entry(conn, settings, _quarantined_head(conn, extract_id))
    if entry.state == RETRYING and resumable:
        return entry
    if entry.state == DISCARDED:
        raise QuarantineError(f"extract {extract_id} was discarded", code="CT-QUARANTINE-STATE")
    if entry.state in (RETRIED, RETRYING):
        raise QuarantineError(
            f"extract {extract_id} was already retried as {entry.retried_by}; act on that one",
            code="CT-QUARANTINE-STATE",
        )
    return entry


def _actor() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a bare container
        return None


# --- discard -------------------------------------------------------------------------------------------


def discard(settings: Settings, extract_id: str, why: str) -> QuarantineEntry:
    """Record that a quarantined extract will not be retried, and why; its bytes stay where they are."""
    why = why.strip()
    if not why:
        raise QuarantineError("a discard needs a reason (--reason TEXT)", code="CT-QUARANTINE-REASON")
    engine = warehouse_engine(settings.warehouse_db_url)
    with write_transaction(engine) as conn:
        _lock_registry(conn)
        _open_head(conn, settings, extract_id)
        conn.execute(
            quarantine_action.insert().values(
                extract_id=extract_id,
                action=DISCARD,
                reason=why,
                acted_at=dt.datetime.now(dt.UTC),
                actor=_actor(),
            )
        )
    return show_quarantined(settings, extract_id)


def _lock_registry(conn: Connection) -> None:
    # Registrations and quarantine actions queue on one lock (SQLite: BEGIN IMMEDIATE already does).
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REGISTRY_LOCK_KEY})


# --- retry ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryResult:
    """A retry: the quarantined extract, the new one, and one ``ingest``-shaped outcome per file."""

    retried: str
    extract_id: str
    outcomes: tuple[IngestOutcome, ...]
    steps: tuple[tuple[str, StepLineage], ...] = field(default=())

    @property
    def status(self) -> str:
        return self.outcomes[0].status


def retry(settings: Settings, extract_id: str) -> RetryResult:
    """Run a quarantined extract's archived bytes again through today's code (see the module doc)."""
    from censustrace.quality.run import validate_extract

    engine = warehouse_engine(settings.warehouse_db_url)
    with engine.connect() as conn:
        original = _open_head(conn, settings, extract_id, resumable=True)
    from censustrace.compliance.erasure import ensure_not_erased

    for f in original.files:
        ensure_not_erased(settings, f.sha256, f.original_name)  # CT-ERASED-FILE: never brought back
        path = archive_path_for(settings.archive_dir, f.sha256)
        if not path.is_file() or sha256_of(path) != f.sha256:
            raise QuarantineError(
                f"{f.original_name}: the archived bytes {f.sha256} are missing or do not match their sha256",
                code="CT-QUARANTINE-ARCHIVE",
            )
    inspections = [
        inspect_file(archive_path_for(settings.archive_dir, f.sha256), f.original_name)
        for f in original.files
    ]
    with write_transaction(engine) as conn:
        _lock_registry(conn)
        entry = _open_head(conn, settings, extract_id, resumable=True)  # not retried/discarded meanwhile
        if entry.state == RETRYING and entry.retried_by:
            new_head = entry.retried_by  # resume the attempt a crash cut short
        else:
            new_head = _insert_attempt(conn, original.files, inspections)[0]
            conn.execute(
                quarantine_action.insert().values(
                    extract_id=extract_id,
                    action=RETRY,
                    acted_at=dt.datetime.now(dt.UTC),
                    actor=_actor(),
                    result_extract_id=new_head,
                )
            )
        files = extract_files(conn, new_head)
    head = files[0]
    steps: list[tuple[str, StepLineage]] = [("retry", _retry_lineage(settings, original, files))]
    errors: list[Reason] = [i.error for i in inspections if i.error is not None]
    if not errors and head.format == "la_csv":
        checked = inspect_extract(settings, files) if len(files) == 3 else _incomplete(head)
        if not isinstance(checked, ExtractHeader):
            errors.append(checked)
    counts = RowCounts()
    supersedes: str | None = None
    if errors:
        quarantine(head.extract_id, errors, settings)
    else:
        staged = stage(head.extract_id, settings)
        steps.append(("stage", staged.lineage))
        errors += staged.errors
        counts = staged.rows
        refused = False
        if staged.status == STAGED:
            validated = validate_extract(head.extract_id, settings)
            steps.append(("validate", validated.lineage))
            errors += validated.errors
            refused = validated.status == QUARANTINED
            if refused:
                counts = RowCounts(staged.rows.read, 0, staged.rows.read)
        if staged.status in (STAGED, LOADED) and not refused:
            published = publish(head.extract_id, {}, settings)
            steps.append(("publish", published.lineage))
            counts, supersedes = published.rows, published.supersedes
            errors += published.errors
            errors += listed_rejections(published)
            with engine.connect() as conn:
                now = get_extract(conn, head.extract_id)
            errors += [
                r
                for r in (now.reasons if now else [])
                if r["code"] in (ORPHAN, UNKNOWN_COLUMN) or r["code"].startswith("CT-DQ-")
            ]
    with engine.connect() as conn:
        final = get_extract(conn, head.extract_id) or head
    status = final.status if final.status != STAGED else RECEIVED
    lineage = merge_lineage(step for _, step in steps)
    outcomes = tuple(
        IngestOutcome(
            file=f.original_name,
            sha256=f.sha256,
            extract_id=final.extract_id,
            status=status,
            supersedes=supersedes,
            rows=counts if f is head else RowCounts(),
            errors=tuple(errors) if f is head else (),
            lineage=lineage,
            steps=tuple(steps) if f is head else (),
        )
        for f in files
    )
    return RetryResult(extract_id, final.extract_id, outcomes, tuple(steps))


def _incomplete(head: ExtractRow) -> Reason:
    return reason(
        "CT-INGEST-INCOMPLETE",
        f"{head.original_name}: the LA export's sibling tables were never grouped with it; deliver the "
        "three tables again",
        head.original_name,
    )


def _insert_attempt(conn: Connection, files: tuple[ExtractRow, ...], inspections: list[Any]) -> list[str]:
    """New registry rows for the files of a retried extract (head first): the next receipt number of
    each file's bytes, the original receipt time, ``retry_of`` the original row."""
    new_ids: list[str] = []
    for f, info in zip(files, inspections, strict=True):
        receipts = conn.execute(
            select(func.count()).select_from(extracts).where(extracts.c.sha256 == f.sha256)
        ).scalar_one()
        new_id = extract_id_for(f.sha256, receipts + 1)
        values: dict[str, Any] = {
            "extract_id": new_id,
            "sha256": f.sha256,
            "size": f.size,
            "original_name": f.original_name,
            "received_at": f.received_at,
            "status": RECEIVED,
            "reasons": [],
            "retry_of": f.extract_id,
            "part_of": new_ids[0] if new_ids else None,
            **info.values(),
        }
        conn.execute(extracts.insert().values(**values))
        new_ids.append(new_id)
    return new_ids


def _retry_lineage(settings: Settings, original: QuarantineEntry, files: list[ExtractRow]) -> StepLineage:
    """Archived files (at their sha256, with the original receipt) and the original registry row in;
    the new registry row out."""
    url = settings.warehouse_db_url
    step = merge_lineage(register_lineage(settings, f) for f in files[:1])
    step.inputs = [archive_input(settings, f) for f in files] + [
        InputDataset(
            namespace=warehouse_namespace(url),
            name=warehouse_dataset_name(url, extracts.name),
            facets={"version": DatasetVersionDatasetFacet(datasetVersion=original.head.extract_id)},
        )
    ]
    return step


__all__ = [
    "DISCARDED",
    "OPEN",
    "RETRIED",
    "RETRYING",
    "QuarantineEntry",
    "QuarantineError",
    "RetryResult",
    "discard",
    "list_quarantined",
    "retry",
    "show_quarantined",
]
