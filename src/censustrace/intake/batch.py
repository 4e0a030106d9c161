"""A batch of landed files as one unit of work: ``census_ingest``'s mapped task and ``censustrace ingest``.

Every file stays first-class: its own archive entry, extract registry row, quarantine, lineage runs and
outcome. Only the fixed costs are shared: one process and its imports (GX once), one GX run per suite
for all the batch's staged rows (``censustrace.quality.batch``), and one lineage store transaction for
all the files' events (``censustrace.lineage.bulk``).

Steps, each per file and in its own transaction(s) as before: receive + register, stage, (validate:
per batch), publish. A file's bad input is quarantined and never stops the others; an unexpected error
in one file (a bug, a database gone away) is recorded as that file's ``failed`` outcome, the others go
on, and the batch then reports itself failed (``BatchResult.failed``) so that Airflow retries it.

Crash safety (SIGKILL at any point): every step's transaction is whole, so a file is either still in
the landing folder, or archived and registered (``received``), staged, or loaded. A batch item whose
landing file is gone (a retry) and ``discover_work`` (a new DAG run: it also lists unfinished extracts
as ``extract:<id>``) pick those up and finish them; a loaded file is reported as loaded, not loaded
again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.intake.archive import ArchivedFile, archive_path_for
from censustrace.intake.ingest import IngestOutcome, _issues_of, listed_rejections, receive_and_register
from censustrace.intake.ingest_lineage import merge_lineage
from censustrace.intake.landing import pending_files
from censustrace.intake.publish import publish
from censustrace.intake.quarantine import Reason, reason
from censustrace.intake.registry import (
    PART_TABLES,
    ExtractRow,
    census_facet,
    extract_of,
    get_extract,
    register_lineage,
)
from censustrace.intake.stage import RowCounts, stage
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import file_dataset_name
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import (
    DUPLICATE,
    LOADED,
    QUARANTINED,
    RECEIVED,
    STAGED,
    UNFINISHED,
    extracts,
)

#: A batch item naming an unfinished extract (archived, not loaded) instead of a landed file.
EXTRACT_ITEM: Final = "extract:"
FAILED: Final = "failed"  # an outcome status: the file hit an error that is not its own bad input
BATCH_ERROR: Final = "CT-INGEST-BATCH-ERROR"
JOB_PREFIX: Final = "census_ingest.ingest"


# --- planning ------------------------------------------------------------------------------------------


def discover_work(settings: Settings) -> list[str]:
    """What a DAG run must do: every landed file, then every extract that was archived and registered
    but not finished (a run or task killed mid-batch), as ``extract:<id>``."""
    from censustrace.config import ConfigError

    if settings.landing_dir.exists() and not settings.landing_dir.is_dir():
        # Not "nothing landed": a run that cannot see its landing folder must not end green.
        raise ConfigError(f"landing folder {settings.landing_dir} is not a folder")
    items = [str(p) for p in pending_files(settings.landing_dir)]
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        unfinished = conn.execute(
            select(extracts.c.extract_id)
            .where(extracts.c.status.in_(UNFINISHED), extracts.c.part_of.is_(None))
            .order_by(extracts.c.id)
        ).scalars()
        items += [f"{EXTRACT_ITEM}{e}" for e in unfinished]
    return items


def plan_batches(items: Sequence[str], max_files: int, max_bytes: int) -> list[list[str]]:
    """Items in order, cut into batches of at most ``max_files`` items and ``max_bytes`` bytes of landed
    files (a file larger than that is a batch of its own). LA CSV tables of one school go together when
    they are next to each other (they are named alike), so their extract completes in one batch."""
    batches: list[list[str]] = []
    current: list[str] = []
    size = 0
    for item in items:
        item_size = _size(item)
        full = len(current) >= max_files or (current and size + item_size > max_bytes)
        if full and not _same_csv_group(current[-1], item):
            batches.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        batches.append(current)
    return batches


def batch_label(items: Sequence[str], limit: int = 240) -> str:
    """The batch's label in the Airflow grid: its file names (file names carry no pupil data), or,
    when they do not all fit, how many and the first and last (the work is listed in name order; every
    file is named in the task's log)."""
    names = [
        item.removeprefix(EXTRACT_ITEM) if item.startswith(EXTRACT_ITEM) else Path(item).name
        for item in items
    ]
    if len(names) == 1:
        return names[0][:limit]
    text = f"{len(names)} files: " + ", ".join(names)
    if len(text) <= limit:
        return text
    return f"{len(names)} files: {names[0]} … {names[-1]}"[:limit]


def _size(item: str) -> int:
    if item.startswith(EXTRACT_ITEM):
        return 0
    try:
        return Path(item).stat().st_size
    except OSError:
        return 0


def _same_csv_group(a: str, b: str) -> bool:
    """Two LA CSV tables of one school (named alike but for the table: ``..._pupilonroll.csv``)."""
    from censustrace.warehouse.tables import CSV_TABLES

    def school(item: str) -> str | None:
        name = Path(item).name.lower()
        if not name.endswith(".csv"):
            return None
        found = [t for t in CSV_TABLES if t in name]
        return name.replace(found[0], "") if found else None

    sa = school(a)
    return sa is not None and sa == school(b)


# --- the batch ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _File:
    """One item's progress through the batch."""

    item: str
    file: str
    sha256: str = ""
    row: ExtractRow | None = None  # the file's own registry row
    ready: str | None = None  # the extract to stage/validate/publish, once complete
    steps: list[tuple[str, StepLineage]] = field(default_factory=list)
    errors: list[Reason] = field(default_factory=list)
    counts: RowCounts = field(default_factory=RowCounts)
    supersedes: str | None = None
    refused: bool = False
    staged: str | None = None  # the extract's status after stage
    failure: str | None = None


@dataclass(frozen=True, slots=True)
class BatchResult:
    """Per-file outcomes in item order, and the events written for them."""

    outcomes: tuple[IngestOutcome, ...]
    events: int

    @property
    def failed(self) -> list[IngestOutcome]:
        return [o for o in self.outcomes if o.status == FAILED]


def ingest_batch(
    items: Sequence[str], settings: Settings, *, parent: Any = None, emit: bool = True
) -> BatchResult:
    """Ingest a batch: each landed file (or ``extract:<id>``) received, registered, staged; all staged
    extracts validated together; each published; every file's lineage written in one transaction,
    each run a child of ``parent`` (a ``censustrace.lineage.bulk.ParentRef``)."""
    from censustrace.quality.batch import validate_batch
    from censustrace.quality.run import SKIPPED

    files = [_File(item=item, file=item) for item in items]
    for f in files:
        _guard(f, _receive, f, settings)
    for f in files:
        if f.ready and not f.failure:
            _guard(f, _stage, f, settings)
    to_validate = [
        f.ready for f in files if f.ready and not f.failure and not f.refused and f.staged == STAGED
    ]
    validated = _validate(validate_batch, to_validate, settings)
    for f in files:
        if f.ready and not f.failure and not f.refused:
            outcome = validated.get(f.ready)
            if outcome is not None and outcome.status != SKIPPED:
                f.steps.append(("validate", outcome.lineage))
                f.errors += outcome.errors
                if outcome.status == QUARANTINED:
                    f.refused = True
                    f.counts = RowCounts(f.counts.read, 0, f.counts.read)
            if not f.refused:
                _guard(f, _publish, f, settings)
    outcomes = tuple(_outcome(f, settings) for f in files)
    events = _emit(settings, files, parent) if emit else 0
    return BatchResult(outcomes=outcomes, events=events)


def _guard(f: _File, step: Any, *args: Any) -> None:
    """Run one file's step; an error that is not the file's own bad input fails that file only."""
    try:
        step(*args)
    except Exception as exc:
        code = exc.code if isinstance(exc, CensustraceError) else BATCH_ERROR
        f.failure = f"{code}: {type(exc).__name__}: {exc}"
        f.errors.append(reason(code, f"{Path(f.file).name}: {type(exc).__name__}: {exc}", Path(f.file).name))


def _validate(validate_batch: Any, ids: list[str], settings: Settings) -> dict[str, Any]:
    """Validate in chunks of at most ``validate_batch_rows`` staged rows (memory stays bounded)."""
    if not ids:
        return {}
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = dict(
            conn.execute(
                select(extracts.c.extract_id, extracts.c.rows_read).where(extracts.c.extract_id.in_(ids))
            ).all()
        )
    out: dict[str, Any] = {}
    for chunk in _chunks(ids, rows, settings.validate_batch_rows):
        out.update(validate_batch(chunk, settings))
    return out


def _chunks(ids: Iterable[str], rows: dict[str, int | None], limit: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    current: list[str] = []
    total = 0
    for extract_id in ids:
        n = rows.get(extract_id) or 0
        if current and total + n > limit:
            chunks.append(current)
            current, total = [], 0
        current.append(extract_id)
        total += n
    if current:
        chunks.append(current)
    return chunks


def _receive(f: _File, settings: Settings) -> None:
    if f.item.startswith(EXTRACT_ITEM):
        _resume(f, settings, f.item.removeprefix(EXTRACT_ITEM))
        return
    path = Path(f.item)
    if not path.exists():
        # A retry: this file was received by an earlier try (its landing copy goes once registered)...
        found = _latest_by_name(settings, path.name)
        if found is not None:
            _resume(f, settings, found.extract_id)
            return
        # ...or claimed by a try that died before registering it: receiving finds that claim (or says
        # CT-LANDING-GONE).
    received = receive_and_register(path, settings)
    registration = received.registration
    f.sha256 = received.receipt.archived.sha256
    f.row = registration.extract
    f.ready = registration.ready
    f.errors += registration.errors
    # Landed file -> archive -> registry, the files' versions carrying the header the registry read.
    f.steps.append(("receive", received.lineage))


def _resume(f: _File, settings: Settings, extract_id: str) -> None:
    """Pick up an extract an earlier try archived and registered: its lineage so far is rebuilt from
    the registry (the earlier try may have died before writing it)."""
    from censustrace.intake.receive import _lineage

    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        row = get_extract(conn, extract_id)
        if row is None:
            raise CensustraceError(f"no extract {extract_id} in the registry", code="CT-INGEST-NOT-FOUND")
        head = extract_of(conn, row)
    if f.item.startswith(EXTRACT_ITEM):
        f.file = row.original_name
    f.sha256, f.row = row.sha256, row
    archived = ArchivedFile(
        row.sha256, row.size, row.original_name, archive_path_for(settings.archive_dir, row.sha256), True
    )
    landing = file_dataset_name(settings.landing_dir / row.original_name)
    merged = merge_lineage([_lineage(landing, archived, row.received_at), register_lineage(settings, row)])
    facet = census_facet(row)
    for dataset in [*merged.inputs, *merged.outputs]:
        if dataset.facets and "censusExtract" in dataset.facets:
            dataset.facets["censusExtract"] = facet
    f.steps.append(("receive", merged))
    if row.status == DUPLICATE or (row.csv_table in PART_TABLES and head is row):
        return
    f.ready = head.extract_id if head.status in (*UNFINISHED, LOADED) else None


def _latest_by_name(settings: Settings, name: str) -> ExtractRow | None:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        found = conn.execute(
            select(extracts.c.extract_id)
            .where(extracts.c.original_name == name)
            .order_by(extracts.c.id.desc())
            .limit(1)
        ).scalar_one_or_none()
        return get_extract(conn, found) if found else None


def _stage(f: _File, settings: Settings) -> None:
    assert f.ready is not None
    staged = stage(f.ready, settings)
    f.staged = staged.status
    f.errors += staged.errors
    f.counts = staged.rows
    if not staged.skipped:
        f.steps.append(("stage", staged.lineage))
    if staged.status == QUARANTINED:
        f.refused = True
    elif staged.status not in (STAGED, LOADED):
        f.refused = True  # quarantined or a duplicate meanwhile: nothing to publish


def _publish(f: _File, settings: Settings) -> None:
    assert f.ready is not None
    published = publish(f.ready, {}, settings)
    f.steps.append(("publish", published.lineage))
    f.counts, f.supersedes = published.rows, published.supersedes
    f.errors += published.errors
    f.errors += listed_rejections(published)
    # Rows that joined no pupil, and validation warnings (CT-DQ-...): kept in the registry.
    from censustrace.census.formats.errors import ORPHAN

    f.errors += [
        r for r in _issues_of(settings, f.ready) if r["code"] == ORPHAN or r["code"].startswith("CT-DQ-")
    ]


def _outcome(f: _File, settings: Settings) -> IngestOutcome:
    """The file's outcome, read back from the registry (the source of truth), as ``ingest_file``'s."""
    status, extract_id = FAILED, None
    counts = f.counts
    errors = list(f.errors)
    if f.row is not None:
        with warehouse_engine(settings.warehouse_db_url).connect() as conn:
            row = get_extract(conn, f.row.extract_id) or f.row
            owner = extract_of(conn, row)
        if row.status == DUPLICATE and owner.status == QUARANTINED:
            errors += owner.reasons
        if f.failure is None:
            status = row.status if row.status != STAGED else RECEIVED
        extract_id = None if row.csv_table in PART_TABLES and owner is row else owner.extract_id
        if row.status == DUPLICATE:
            counts = RowCounts()
        elif row.status == LOADED and not any(name == "publish" for name, _ in f.steps):
            counts = RowCounts(row.rows_read or 0, row.pupil_count or 0, row.rows_rejected or 0)
    return IngestOutcome(
        file=f.file,
        sha256=f.sha256,
        extract_id=extract_id,
        status=status,
        supersedes=f.supersedes,
        rows=counts,
        errors=tuple(errors),
        lineage=merge_lineage(step for _, step in f.steps),
        steps=tuple(f.steps),
    )


def _emit(settings: Settings, files: Sequence[_File], parent: Any) -> int:
    """Every file's runs (receive+register, stage, validate, publish: one each, as the per-file tasks
    had) in one store transaction."""
    from censustrace.lineage.bulk import emit_bulk, step_event

    payloads = []
    for f in files:
        by_task: dict[str, list[StepLineage]] = {}
        for name, step in f.steps:
            by_task.setdefault("receive" if name == "register" else name, []).append(step)
        for task, parts in by_task.items():
            payloads.append(step_event(settings, f"{JOB_PREFIX}.{task}", merge_lineage(parts), parent=parent))
    emit_bulk(settings, payloads)
    return len(payloads)


__all__ = [
    "EXTRACT_ITEM",
    "FAILED",
    "BatchResult",
    "batch_label",
    "discover_work",
    "ingest_batch",
    "plan_batches",
]
