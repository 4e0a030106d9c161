"""The day a share is judged for: today's calendar day in Europe/London, whatever the machine's zone.

There is deliberately no override (no flag, setting or DAG date): a release is judged for the day it
leaves, so an expired agreement can never be made to look valid by back-dating. ``policy check
--as-of`` is a dry run of the evaluator and never releases anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Final
from zoneinfo import ZoneInfo

LONDON: Final = ZoneInfo("Europe/London")


def london_day(instant: dt.datetime) -> dt.date:
    """The calendar day in Europe/London of an aware ``instant`` (e.g. 23:30 UTC in summer is the next
    day in London)."""
    if instant.tzinfo is None:
        raise ValueError("an aware datetime is needed to find the day in Europe/London")
    return instant.astimezone(LONDON).date()


def release_day() -> dt.date:
    """Today in Europe/London: the day every share is judged and released for."""
    return london_day(dt.datetime.now(dt.UTC))


__all__ = ["LONDON", "london_day", "release_day"]
