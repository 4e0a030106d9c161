"""Task bodies for TaskFlow tasks: plain functions, so they are unit-tested without Airflow."""

from __future__ import annotations

from typing import Any

from censustrace.config import get_settings
from censustrace.intake.landing import pending_files


def discover_landed_files() -> list[str]:
    """Paths of the census files waiting in the landing folder."""
    return [str(p) for p in pending_files(get_settings().landing_dir)]


def discover_batches() -> list[dict[str, Any]]:
    """The work of a ``census_ingest`` run cut into batches (one mapped task each, ``{"label", "items"}``):
    the landed files
    and the extracts an earlier run archived but did not finish, ``CENSUSTRACE_INGEST_BATCH_FILES`` /
    ``_BYTES`` at most per batch, so 20,000 files are about 100 task instances (Airflow refuses to map
    more than ``max_map_length``, 1,024 by default)."""
    from airflow.sdk.exceptions import AirflowFailException

    from censustrace.config import ConfigError
    from censustrace.intake.batch import batch_label, discover_work, plan_batches

    settings = get_settings()
    try:
        work = discover_work(settings)
    except ConfigError as exc:  # retrying cannot fix a setting
        raise AirflowFailException(str(exc)) from exc
    batches = plan_batches(work, settings.ingest_batch_files, settings.ingest_batch_bytes)
    return [{"label": batch_label(items), "items": items} for items in batches]


def run_verdict(summary: dict[str, Any] | None) -> dict[str, Any]:
    """The run's last word: reached only when no step failed (quarantined files alone keep it green)."""
    return {"counts": dict((summary or {}).get("counts", {}))}


def summarise_batches(batches: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Per-file outcome of this run from the batch tasks' results (a failed batch left none: it makes
    the run red through ``verdict``), read back from the extract registry."""
    files = [item for batch in batches or [] if batch for item in batch.get("files", [])]
    return summarise_extracts(files)


def summarise_extracts(received: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-file outcome of this run, read back from the extract registry (the source of truth)."""
    from censustrace.intake.registry import find_extract

    settings = get_settings()
    files = []
    for item in received:
        if not item:
            continue
        status, reasons = item["status"], [e["code"] for e in item.get("errors", [])]
        # A duplicate names the extract that holds its bytes: that one's status is not this file's.
        if item.get("extract_id") and status not in ("duplicate", "failed"):
            row = find_extract(settings, item["extract_id"])
            status, reasons = row.status, [r["code"] for r in row.reasons]
        files.append(
            {"file": item["file"], "extract_id": item.get("extract_id"), "status": status, "codes": reasons}
        )
    counts: dict[str, int] = {}
    for f in files:
        counts[f["status"]] = counts.get(f["status"], 0) + 1
    return {"files": files, "counts": counts}
