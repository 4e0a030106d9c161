"""The demo's agreements, dated relative to the census term that contains today.

The shipped agreements in ``policies/agreements/`` are written for the academic year 2026/27
(:data:`REFERENCE_YEAR`). ``censustrace pipeline`` (and so ``make pipeline`` / ``make demo``) copies the
policy folder into ``$CENSUSTRACE_HOME/policies`` with every agreement date moved by whole years onto the
academic year that contains today, and generates its sample for the census term that contains today; the
tests do the same. The demo's outcomes (which shares are allowed, which refused and why) are then the
same on any date, without any clock override in the product: the product always judges for today.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path
from typing import Final

from censustrace.census.codes import academic_year_start, term_containing

#: The academic year (starting September) the shipped agreements are written for.
REFERENCE_YEAR: Final = 2026
_DATE: Final = re.compile(r"\b([0-9]{4})-([0-9]{2})-([0-9]{2})\b")


def year_shift(today: dt.date) -> int:
    """Whole years between the shipped agreements' academic year and the one containing ``today``."""
    return academic_year_start(*term_containing(today)) - REFERENCE_YEAR


def _shifted(match: re.Match[str], years: int) -> str:
    year, month, day = (int(g) for g in match.groups())
    try:
        return dt.date(year + years, month, day).isoformat()
    except ValueError:  # 29 February into a common year
        return dt.date(year + years, month, day - 1).isoformat()


def render_demo_policies(source: Path, dest: Path, today: dt.date) -> Path:
    """Copy the policy folder ``source`` to ``dest`` (replacing it) with agreement dates moved onto the
    academic year containing ``today``; returns ``dest``. Ids and everything else are unchanged."""
    years = year_shift(today)
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".*"))
    for path in sorted((dest / "agreements").glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        path.write_text(_DATE.sub(lambda m: _shifted(m, years), text), encoding="utf-8")
    return dest


__all__ = ["REFERENCE_YEAR", "render_demo_policies", "year_shift"]
