"""The one CSV formula rule (OWASP "CSV injection"), character by character."""

from __future__ import annotations

import csv
import io

import pytest

from censustrace.csvsafe import FORMULA_START, safe_cell


def test_the_triggers_are_owasps_plus_line_feed() -> None:
    assert set(FORMULA_START) == {"=", "+", "-", "@", "\t", "\r", "\n"}


@pytest.mark.parametrize("trigger", ["=", "+", "-", "@", "\t", "\r", "\n"])
def test_each_trigger_makes_the_cell_text(trigger: str) -> None:
    cell = trigger + "SUM(A1)"
    assert safe_cell(cell) == "'" + cell
    assert safe_cell(trigger) == "'" + trigger
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe_cell(cell)])
    (read,) = csv.reader(io.StringIO(buffer.getvalue()))
    assert read == ["'" + cell]


@pytest.mark.parametrize("cell", ["", "Testington", "a=b", "O'Sample", " =1", "2016-02", "'=1"])
def test_other_cells_are_unchanged(cell: str) -> None:
    assert safe_cell(cell) == cell
