"""The whole chain for one landed file: ``ingest_file`` receives (archives) it, registers it and, once
its extract is complete, stages (``censustrace.intake.stage``), validates (``censustrace.quality``) and
publishes it (``censustrace.intake.publish``). The CLI, the batch and the Airflow tasks start here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from censustrace.census.formats.errors import ORPHAN, UNKNOWN_COLUMN
from censustrace.config import Settings
from censustrace.intake.ingest_lineage import merge_lineage
from censustrace.intake.publish import MAX_LISTED_REJECTIONS, ROWS_REJECTED, PublishResult, publish
from censustrace.intake.quarantine import Reason, reason
from censustrace.intake.receive import Receipt, receive
from censustrace.intake.registry import (
    PART_TABLES,
    Registration,
    census_facet,
    extract_of,
    get_extract,
    register,
)
from censustrace.intake.reject_codes import DQ_PREFIX
from censustrace.intake.stage import RowCounts, stage
from censustrace.lineage.model import StepLineage
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import DUPLICATE, LOADED, QUARANTINED, RECEIVED, STAGED

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
                if r["code"] in (ORPHAN, UNKNOWN_COLUMN) or r["code"].startswith(DQ_PREFIX)
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
    "IngestOutcome",
    "Received",
    "ingest_file",
    "listed_rejections",
    "receive_and_register",
]
