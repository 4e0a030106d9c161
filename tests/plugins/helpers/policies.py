"""Policy-file helpers: the shipped policies, a private copy to break, and finding a line in a file."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SHIPPED = REPO / "policies"
CENSUS_DAY = date(2026, 10, 1)  # autumn 2026, the generator's default census


def copy_policies(tmp_path: Path) -> Path:
    """A private copy of the shipped policies, to break or vary."""
    target = tmp_path / "policies"
    shutil.copytree(SHIPPED, target)
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {path}"
    path.write_text(text.replace(old, new))


def line_of(path: Path, text: str, after: str = "") -> int:
    """1-based line of the first line holding ``text`` (after the first line holding ``after``)."""
    started = not after
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        started = started or after in line
        if started and text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")
