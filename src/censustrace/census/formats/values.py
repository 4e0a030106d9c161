"""Value conversion shared by the readers: a format's mapping items, dates and booleans as census
files write them, FSM periods and address lines. An unconvertible value becomes None plus a
CT-PARSE-VALUE issue on its record.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from censustrace.census.formats.errors import VALUE, RecordContext
from censustrace.census.model import FsmPeriod

# --- value conversion --------------------------------------------------------------------------------


class Kind(enum.Enum):
    TEXT = "text"  # kept exactly as written (surrounding whitespace removed)
    DATE = "date"
    BOOL = "bool"
    LIST = "list"  # repeated XML element, or ``;``-separated CSV cell


@dataclass(frozen=True, slots=True)
class Item:
    """One row of a format's mapping table: a PupilRecord field and where it comes from."""

    field: str
    source: str  # XML path relative to the pupil element, or CSV column name
    kind: Kind = Kind.TEXT
    required: bool = False  # CSV only: the column must be in the header (else CT-PARSE-LAYOUT)


_MONTHS: Final = {
    m: n
    for n, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
# ISO ``2020-04-25`` or the LA export's ``2020-Apr-25``, optionally followed by a time (``T`` or space)
# and a zone, which are checked for shape and then dropped: census items are days.
_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2}|[A-Za-z]{3})-([0-9]{2})"
    r"(?:[T ]([01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
)


def parse_date(text: str) -> dt.date:
    """A date in any form real extracts use; ValueError (with no value in it) otherwise.

    Accepted: ``2020-04-25``, ``2020-04-25T00:00:00``, ``2020-04-25 00:00:00(.000)``, ``2020-Apr-25``,
    ``2020-Apr-25 00:00:00`` (month names in any case), each with an optional zone. Day-first
    (``25/04/2020``) is deliberately not guessed: an ambiguous date is worse than a rejected one.
    """
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text[5:7].isdigit():
        return dt.date.fromisoformat(text)  # the common case, fast
    m = _DATE.fullmatch(text)
    if m is None:
        raise ValueError("not a date")
    month = int(m[2]) if m[2].isdigit() else _MONTHS.get(m[2].lower())
    if month is None:
        raise ValueError("not a month")
    return dt.date(int(m[1]), month, int(m[3]))


_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})


def parse_bool(text: str) -> bool:
    """xs:boolean (``true``/``false``/``1``/``0``) and export styles (``True``, ``Y``/``N``, ``Yes``)."""
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean")


_BOOLS: Final[dict[str, bool]] = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def fill_converted(
    values: list[Any],
    converted: Iterable[tuple[int, int, Item]],
    cells: Sequence[str | None],
    ctx: RecordContext,
) -> None:
    """:func:`convert` for the date and boolean items of a record at once, the form the readers use:
    ``converted`` holds ``(position in values, index in cells, item)`` in the items' order (so issues
    keep that order); an empty or absent cell leaves the value as it is (None)."""
    for at, index, item in converted:
        raw = cells[index]
        if raw:
            raw = raw.strip()
        if not raw:
            continue
        if item.kind is Kind.DATE:
            try:
                values[at] = parse_date(raw)
            except ValueError:
                ctx.add(VALUE, item.field, item.source, "is not a date")
        else:
            flag = _BOOLS.get(raw.lower())
            if flag is None:
                ctx.add(VALUE, item.field, item.source, f"is not a {item.kind.value}")
            else:
                values[at] = flag


def convert(item: Item, raw: str | None, ctx: RecordContext) -> Any:
    """One scalar value; an unconvertible one becomes None plus a CT-PARSE-VALUE issue."""
    if not raw:
        return None
    if item.kind is Kind.TEXT:
        return raw
    try:
        return parse_date(raw) if item.kind is Kind.DATE else parse_bool(raw)
    except ValueError:
        ctx.add(VALUE, item.field, item.source, f"is not a {item.kind.value}")
        return None


def fsm_period(
    start: str | None,
    end: str | None,
    country: str | None,
    ctx: RecordContext,
    items: Sequence[str],
    *,
    file: str | None = None,
    number: int | None = None,
) -> FsmPeriod | None:
    """One FSM period from its three items (source names in ``items``); None plus an issue if unusable."""
    start_date = end_date = None
    ok = True
    for index, raw in ((0, start), (1, end)):
        if not raw:
            continue
        try:
            value = parse_date(raw)
        except ValueError:
            ctx.add(VALUE, "fsm_periods", items[index], "is not a date", file=file, number=number)
            ok = False
            continue
        if index == 0:
            start_date = value
        else:
            end_date = value
    if ok and start_date is None:
        ctx.add(VALUE, "fsm_periods", items[0], "is missing: the period is dropped", file=file, number=number)
        ok = False
    if not ok or start_date is None:
        return None
    return FsmPeriod(start_date, end_date, country or "")


def fsm_eligible(periods: Sequence[FsmPeriod], reference_date: dt.date, incomplete: bool) -> bool | None:
    """True when a period covers the census day; None (unknown) when one could not be read and none
    of the readable ones covers it."""
    if any(p.covers(reference_date) for p in periods):
        return True
    return None if incomplete else False


def address_lines(items: Sequence[str | None], postcode: str | None, uprn: str | None) -> tuple[str, ...]:
    """The seven BS7666 items with ``""`` for gaps, or ``()`` when the pupil has no address item at all."""
    if not (postcode or uprn or any(items)):
        return ()
    return tuple(value or "" for value in items)
