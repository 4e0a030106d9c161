"""Retention everywhere: the warehouse values (``censustrace.shares.retention``), then every copy of a
file (archive, quarantine, outbox: ``censustrace.compliance.erasure``), for one day."""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from censustrace.compliance.erasure import erase_files, journal_day
from censustrace.config import Settings
from censustrace.lineage.model import StepLineage
from censustrace.shares.retention import erase_warehouse_values

_INTERNAL: Final = ("from_path", "by_rule", "landing_path")  # file erasure details kept off the JSON


def apply_retention(
    settings: Settings, as_of: dt.date, *, lineage: StepLineage | None = None, files: bool = True
) -> dict[str, Any]:
    """Erase what the rules say in the warehouse (one transaction); what was erased. With ``files``
    (the default) the archive, quarantine and outbox copies follow."""
    result = erase_warehouse_values(settings, as_of, lineage=lineage)
    copies: list[dict[str, Any]] = []
    if files:
        journal_day(settings, as_of)
        copies = erase_files(settings, as_of, lineage=lineage)
    return {**result, "files": [{k: v for k, v in c.items() if k not in _INTERNAL} for c in copies]}


__all__ = ["apply_retention"]
