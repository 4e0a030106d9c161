"""Times for people: ``3 Dec 2026, 12:33 GMT`` in the viewer's time zone (CENSUSTRACE_VIEWER_TIMEZONE),
never ``2026-12-03T12:33:13.821356000Z``. The exact UTC instant stays in the element's ``datetime``
attribute and title for anyone who needs it."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from markupsafe import Markup, escape

# Fractions of a second beyond microseconds (OpenLineage producers send nanoseconds) and a "Z" suffix.
_FRACTION = re.compile(r"(\.\d{6})\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@lru_cache(maxsize=8)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def parse(value: object) -> datetime | None:
    """A datetime from a datetime or an ISO 8601 string (nanoseconds and ``Z`` allowed); naive means
    UTC (the stores keep UTC)."""
    if isinstance(value, datetime):
        found = value
    elif isinstance(value, str) and value.strip():
        text = _FRACTION.sub(r"\1", value.strip().replace("Z", "+00:00").replace(" ", "T", 1))
        try:
            found = datetime.fromisoformat(text)
        except ValueError:
            return None
    else:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def human(value: object, zone: str, *, seconds: bool = False) -> str:
    """``3 Dec 2026, 12:33 GMT`` (``12:33:13`` with ``seconds``); dates as ``3 Dec 2026``; anything
    unparseable as given; None as an em dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str) and _DATE.fullmatch(value.strip()):
        value = date.fromisoformat(value.strip())
    if isinstance(value, date) and not isinstance(value, datetime):
        return f"{value.day} {value:%b %Y}"
    when = parse(value)
    if when is None:
        return str(value)
    local = when.astimezone(_zone(zone))
    clock = "%H:%M:%S" if seconds else "%H:%M"
    return f"{local.day} {local:%b %Y}, {local.strftime(clock)} {local.tzname()}"


def time_element(value: object, zone: str) -> Markup:
    """``<time datetime="UTC instant" title="UTC instant">human</time>``."""
    when = parse(value)
    if when is None:
        return escape(human(value, zone))
    instant = when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return Markup('<time datetime="{0}" title="{0}">{1}</time>').format(instant, human(when, zone))
