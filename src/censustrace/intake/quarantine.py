"""Quarantine: a refused file's exact bytes, set aside with a machine-readable reason.

``quarantine_dir/<sha256>/<original name, made safe>`` holds a byte-for-byte copy of the archived file
and ``quarantine_dir/<sha256>/reason.json`` says why (stable codes, no pupil data). The registry row
becomes ``quarantined`` with the same reasons. The files are written before the registry row changes,
so a crash in between leaves an unfinished row that the next receipt of the file resumes.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypedDict

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from sqlalchemy import Connection, Engine, delete, select, update

from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.intake.archive import ArchivedFile, archive_path_for
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import (
    LOADED,
    QUARANTINED,
    UNFINISHED,
    extracts,
    staged_fsm_period,
    staged_pupil,
    staged_pupil_address,
)

REASON_FILE: Final = "reason.json"
REASON_VERSION: Final = 1
_MAX_NAME_BYTES: Final = 200
_UNSAFE: Final = re.compile(r"[^\w.\-]+")  # \w is Unicode-aware: letters and digits of any script stay


class Reason(TypedDict):
    """Why a file or some of its rows were refused: a stable code, a message naming the file and place
    (never a value from it), and that place on its own."""

    code: str
    message: str
    location: str


class IngestError(CensustraceError):
    """A use case asked to do something the registry does not allow (unknown extract, wrong state)."""

    code = "CT-INGEST"


def reason(code: str, message: str, location: str = "") -> Reason:
    return {"code": code, "message": message, "location": location}


def reason_from_error(exc: CensustraceError) -> Reason:
    """A Reason from an error with a stable code; ParseError's structured place becomes ``location``."""
    parts = []
    details = exc.as_dict()
    if "file" in details:
        parts.append(details["file"])
    for name in ("line", "column", "offset", "record", "field", "item"):
        if name in details:
            parts.append(f"{name} {details[name]}")
    return reason(exc.code, exc.message, ", ".join(parts))


def safe_file_name(name: str) -> str:
    """A file name that stays inside its folder whatever was received: no directory part, no ``..``,
    no leading dot or dash, no control characters or spaces, at most 200 UTF-8 bytes (the extension
    kept); letters of any script are kept."""
    base = re.split(r"[/\\]", unicodedata.normalize("NFC", name))[-1]
    cleaned = re.sub(r"\.{2,}", ".", _UNSAFE.sub("_", base)).lstrip(".-_")
    stem, dot, suffix = cleaned.rpartition(".")
    extension = f".{suffix[:20]}" if dot and stem else ""
    stem = stem if extension else cleaned
    while stem and len((stem + extension).encode()) > _MAX_NAME_BYTES:
        stem = stem[:-1]
    cleaned = stem + extension if stem else ""
    if not cleaned:
        return "file"
    return f"file_{cleaned}" if cleaned == REASON_FILE else cleaned


@dataclass(frozen=True, slots=True)
class QuarantinedFile:
    extract_id: str | None
    sha256: str
    path: Path


@dataclass(frozen=True, slots=True)
class QuarantineResult:
    files: tuple[QuarantinedFile, ...]
    reasons: tuple[Reason, ...]
    lineage: StepLineage


@dataclass(frozen=True, slots=True)
class _Target:
    extract_id: str | None
    sha256: str
    original_name: str
    received_at: dt.datetime
    part_of: str | None


def quarantine(
    target: str | ArchivedFile,
    reasons: Sequence[Reason],
    settings: Settings,
    *,
    received_at: dt.datetime | None = None,
    connection: Connection | None = None,
) -> QuarantineResult:
    """Set an extract aside: ``target`` is an extract id (its CSV sibling tables go too) or an archived
    file (its unfinished registry row, if any, is updated; else only the files are written). A received
    or staged extract can be quarantined (its staged rows are deleted), a loaded one cannot.

    ``connection``: a caller's open write transaction to make the registry change in (validation
    quarantines in the transaction that stores its results); else one of its own."""
    if not reasons:
        raise ValueError("quarantine needs at least one reason")
    engine = warehouse_engine(settings.warehouse_db_url)
    targets = _targets(connection or engine, target, received_at)
    now = dt.datetime.now(dt.UTC)
    written = tuple(_write(settings, t, reasons, now) for t in targets)
    ids = [t.extract_id for t in targets if t.extract_id is not None]
    if ids:
        with nullcontext(connection) if connection is not None else write_transaction(engine) as conn:
            conn.execute(
                update(extracts)
                .where(extracts.c.extract_id.in_(ids), extracts.c.status.in_(UNFINISHED))
                .values(status=QUARANTINED, reasons=list(reasons), quarantined_at=now)
            )
            # Staged rows of a refused extract must not wait for a publish that will never come.
            for table in (staged_fsm_period, staged_pupil_address, staged_pupil):
                conn.execute(delete(table).where(table.c.extract_id.in_(ids)))
    lineage = StepLineage(
        inputs=[
            InputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(archive_path_for(settings.archive_dir, f.sha256)),
                facets={"version": DatasetVersionDatasetFacet(datasetVersion=f.sha256)},
            )
            for f in written
        ],
        outputs=[
            OutputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(f.path),
                facets={"version": DatasetVersionDatasetFacet(datasetVersion=f.sha256)},
            )
            for f in written
        ],
    )
    return QuarantineResult(written, tuple(reasons), lineage)


def _targets(
    source: Engine | Connection, target: str | ArchivedFile, received_at: dt.datetime | None
) -> list[_Target]:
    with source.connect() if isinstance(source, Engine) else nullcontext(source) as conn:
        if isinstance(target, str):
            rows = conn.execute(
                select(extracts)
                .where((extracts.c.extract_id == target) | (extracts.c.part_of == target))
                .order_by(extracts.c.id)
            ).all()
            if not any(r.extract_id == target for r in rows):
                raise IngestError(f"no extract {target} in the registry", code="CT-INGEST-NOT-FOUND")
            head = next(r for r in rows if r.extract_id == target)
            if head.status == LOADED:
                raise IngestError(
                    f"extract {target} is already loaded; it cannot be quarantined", code="CT-INGEST-STATE"
                )
        else:
            rows = conn.execute(
                select(extracts)
                .where(extracts.c.sha256 == target.sha256, extracts.c.status.in_(UNFINISHED))
                .order_by(extracts.c.id.desc())
                .limit(1)
            ).all()
            if not rows:
                when = received_at or dt.datetime.now(dt.UTC)
                return [_Target(None, target.sha256, target.original_name, when, None)]
    return [_Target(r.extract_id, r.sha256, r.original_name, r.received_at, r.part_of) for r in rows]


def _write(
    settings: Settings, target: _Target, reasons: Sequence[Reason], now: dt.datetime
) -> QuarantinedFile:
    folder = settings.quarantine_dir / target.sha256
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe_file_name(target.original_name)
    if path.resolve().parent != folder.resolve():  # belt and braces: safe_file_name never allows this
        raise IngestError(f"unsafe quarantine name for {target.sha256}", code="CT-INGEST-NAME")
    source = archive_path_for(settings.archive_dir, target.sha256)
    if not (path.exists() and path.stat().st_size == source.stat().st_size):
        _atomic_copy(source, path)
    document = {
        "version": REASON_VERSION,
        "extract_id": target.extract_id,
        "part_of": target.part_of,
        "sha256": target.sha256,
        "original_name": target.original_name,
        "file": path.name,
        "received_at": target.received_at.isoformat(),
        "quarantined_at": now.isoformat(),
        "reasons": list(reasons),
    }
    _atomic_write(folder / REASON_FILE, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return QuarantinedFile(target.extract_id, target.sha256, path)


def _atomic_copy(source: Path, target: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as dst, source.open("rb") as src:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _atomic_write(target: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
