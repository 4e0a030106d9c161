"""Task bodies for TaskFlow tasks: plain functions, so they are unit-tested without Airflow."""

from __future__ import annotations

from typing import Any

from censustrace.config import get_settings
from censustrace.intake.landing import pending_files


def discover_landed_files() -> list[str]:
    """Paths of the census files waiting in the landing folder."""
    return [str(p) for p in pending_files(get_settings().landing_dir)]


def summarise_extracts(received: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-file outcome of this run, read back from the extract registry (the source of truth)."""
    from censustrace.intake.registry import find_extract

    settings = get_settings()
    files = []
    for item in received:
        if not item:
            continue
        status, reasons = item["status"], [e["code"] for e in item.get("errors", [])]
        if item.get("extract_id"):
            row = find_extract(settings, item["extract_id"])
            status, reasons = row.status, [r["code"] for r in row.reasons]
        files.append(
            {"file": item["file"], "extract_id": item.get("extract_id"), "status": status, "codes": reasons}
        )
    counts: dict[str, int] = {}
    for f in files:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return {"files": files, "counts": counts}
