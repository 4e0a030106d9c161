"""The demo's outcomes do not depend on the date: the shipped agreements, moved onto the academic year
containing any day, get the same verdicts on that day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from censustrace.census.codes import academic_year_bounds, term_containing
from censustrace.consent.demo import render_demo_policies
from censustrace.consent.evaluate import check_all
from tests.plugins.helpers.policies import SHIPPED

EXPECTED = {
    "home-office-immigration-2026": "deny",
    "la330-admissions-2025": "deny",
    "la330-admissions-2026": "allow",
    "la330-inclusion-planning-2026": "deny",
    "la330-sen-transport-2026": "allow",
    "la330-statutory-return-2026": "allow",
    "nhs-school-nursing-2026": "allow",
    "police-missing-education-2026": "allow",
    "research-attainment-gaps-2026": "allow",
    "research-migration-2026": "deny",
    "tutoring-marketing-2026": "deny",
}
DAYS = [
    dt.date(2026, 9, 1),
    dt.date(2027, 1, 20),
    dt.date(2027, 8, 31),
    dt.date(2031, 5, 15),
    dt.date(2040, 2, 29),
    dt.date(2055, 12, 31),
]


@pytest.mark.parametrize("day", DAYS, ids=str)
def test_demo_verdicts_are_the_same_on_any_day(day: dt.date, tmp_path: Path) -> None:
    folder = render_demo_policies(SHIPPED, tmp_path / "policies", day)
    report = check_all(day, folder)
    assert report.problems == ()
    assert {v.agreement: v.verdict for v in report.verdicts} == EXPECTED


@pytest.mark.parametrize(
    ("day", "term"),
    [
        (dt.date(2026, 9, 1), ("AUT", 2026)),
        (dt.date(2026, 12, 31), ("AUT", 2026)),
        (dt.date(2027, 1, 1), ("SPR", 2027)),
        (dt.date(2027, 4, 1), ("SUM", 2027)),
        (dt.date(2027, 8, 31), ("SUM", 2027)),
    ],
)
def test_the_term_containing_a_day(day: dt.date, term: tuple[str, int]) -> None:
    assert term_containing(day) == term
    start, end = academic_year_bounds(*term)
    assert start <= day <= end
