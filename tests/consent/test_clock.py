"""A share's day is the calendar day in Europe/London, whatever the machine's time zone."""

from __future__ import annotations

import datetime as dt

import pytest

from censustrace.consent.clock import london_day, release_day


@pytest.mark.parametrize(
    ("instant", "day"),
    [
        (dt.datetime(2026, 7, 31, 23, 30, tzinfo=dt.UTC), dt.date(2026, 8, 1)),  # BST: already tomorrow
        (dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.UTC), dt.date(2026, 12, 31)),  # GMT
        (dt.datetime(2026, 8, 31, 22, 59, tzinfo=dt.UTC), dt.date(2026, 8, 31)),  # last minute of valid_to
        (dt.datetime(2026, 8, 31, 23, 0, tzinfo=dt.UTC), dt.date(2026, 9, 1)),
    ],
)
def test_the_day_is_the_london_calendar_day(instant: dt.datetime, day: dt.date) -> None:
    assert london_day(instant) == day


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        london_day(dt.datetime(2026, 1, 1))


def test_release_day_is_today_in_london() -> None:
    before = london_day(dt.datetime.now(dt.UTC))
    assert release_day() in (before, before + dt.timedelta(days=1))
