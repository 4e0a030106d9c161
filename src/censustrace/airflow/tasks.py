"""Task bodies for TaskFlow tasks: plain functions, so they are unit-tested without Airflow."""

from __future__ import annotations

from typing import Any

from censustrace.config import get_settings
from censustrace.intake.landing import pending_files


def discover_landed_files() -> list[str]:
    """Paths of the census files waiting in the landing folder."""
    return [str(p) for p in pending_files(get_settings().landing_dir)]


def summarise_receipts(receipts: list[dict[str, Any]]) -> dict[str, int]:
    received = [r for r in receipts if r]
    duplicates = sum(1 for r in received if r.get("already_archived"))
    return {"files": len(received), "new": len(received) - duplicates, "duplicates": duplicates}
