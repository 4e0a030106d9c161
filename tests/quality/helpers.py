"""Shared steps for the quality tests: stage generated files, read what validation stored, map the
generator's manifest to record numbers."""

from __future__ import annotations

import json
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from censustrace.config import Settings
from censustrace.intake.receive import receive
from censustrace.intake.registry import register
from censustrace.intake.stage import stage
from censustrace.quality.tables import validation_result
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import extracts, staged_pupil
from tests.plugins.helpers.warehouse import land

Record = tuple[str, int]  # (census file: XML/CTF file or CSV pupilonroll table, record number)


def stage_files(settings: Settings, folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Receive, register and stage every file; census file name -> its staged extract id (extracts
    refused before validation, by a whole-file fault, are left out)."""
    staged: dict[str, str] = {}
    for entry in manifest["files"]:
        receipt = receive(land(settings, folder / entry["file"]), settings)
        ready = register(receipt.archived, receipt.received_at, settings).ready
        if ready is not None and stage(ready, settings).status == "staged":
            staged[pupil_table(entry["file"])] = ready
    return staged


def pupil_table(name: str) -> str:
    return name.replace("addressesonroll", "pupilonroll").replace("fsmperiod", "pupilonroll")


def stage_one(settings: Settings, path: Path) -> str:
    receipt = receive(land(settings, path), settings)
    ready = register(receipt.archived, receipt.received_at, settings).ready
    assert ready is not None
    assert stage(ready, settings).status == "staged"
    return ready


def reject_codes(settings: Settings, extract_id: str) -> dict[int, list[str]]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(staged_pupil.c.record_number, staged_pupil.c.reject_codes).where(
                staged_pupil.c.extract_id == extract_id, staged_pupil.c.reject_codes.is_not(None)
            )
        )
        return {int(n): list(codes) for n, codes in rows}


def stored_results(settings: Settings, extract_id: str | None = None) -> list[dict[str, Any]]:
    query = select(validation_result).order_by(
        validation_result.c.extract_id, validation_result.c.suite, validation_result.c.code
    )
    if extract_id is not None:
        query = query.where(validation_result.c.extract_id == extract_id)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def flagged(settings: Settings, files_by_extract: dict[str, str]) -> dict[str, set[Record]]:
    """Expectation code -> the (file, record) rows it failed, over every validated extract."""
    out: dict[str, set[Record]] = defaultdict(set)
    for row in stored_results(settings):
        file = files_by_extract.get(row["extract_id"])
        if file is not None:
            out[row["code"]].update((file, n) for n in row["unexpected_records"] or [])
    return out


def manifest_faults(manifest: dict[str, Any]) -> dict[str, set[Record]]:
    """Row faults by ``fault`` (``unknown_code`` and ``missing_mandatory`` by ``fault:field``) as
    (file, record number): XML/CTF ``pupil_index``; CSV the data row, which is the record number in
    ``pupilonroll`` and, one address row per pupil in the same order, in ``addressesonroll`` too."""
    out: dict[str, set[Record]] = defaultdict(set)
    for fault in manifest["faults"]:
        location = fault["location"]
        if location.get("file"):
            continue
        kind = fault["fault"]
        if kind in ("unknown_code", "missing_mandatory"):
            kind = f"{kind}:{location['field']}"
        number = location["pupil_index"] if "pupil_index" in location else location["row"]
        out[kind].add((pupil_table(fault["file"]), int(number)))
    return out


def set_rows_read(settings: Settings, extract_id: str, rows_read: int) -> None:
    with warehouse_engine(settings.warehouse_db_url).begin() as conn:
        conn.execute(update(extracts).where(extracts.c.extract_id == extract_id).values(rows_read=rows_read))


def copy_suites(source: Path, target: Path) -> Path:
    """A writable copy of an expectations folder."""
    shutil.copytree(source, target)
    return target


def edit_suite(folder: Path, name: str, edit: Any) -> Path:
    path = folder / "suites" / f"{name}.json"
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document, indent=2))
    return path
