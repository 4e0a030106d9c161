"""Helpers for the census reader tests: generate files while capturing what the generator wrote.

The generator does not return its records, so :func:`generate_captured` wraps its writers'
``write`` for the run and keeps each pupil with the text overrides a row fault put in its place.
:func:`expected_record` then says what a correct reader must return for that row, so tests compare
whole records field by field rather than a handful of items.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.formats.records import ParsedRecord
from censustrace.census.generator import GeneratorOptions, generate
from censustrace.census.generator import writers as generator_writers
from censustrace.census.model import FsmPeriod, PupilRecord

# laestab -> [(pupil as generated, {field: text written instead, None for left out})] in file order
Captured = dict[str, list[tuple[PupilRecord, dict[str, str | None]]]]
# Items a CTF does not carry.
CTF_ABSENT = ("boarder", "part_time", "yssa", "top_up_funding")


def generate_captured(out: Path, **options: Any) -> tuple[dict[str, Any], Captured]:
    """Run the generator, returning its manifest and every pupil row it wrote, by school."""
    captured: Captured = defaultdict(list)
    original = generator_writers.SchoolWriter.write

    def spy(self: Any, pupil: PupilRecord, overrides: Any = None) -> None:
        captured[self.school.laestab].append((pupil, dict(overrides or {})))
        if overrides is None:
            original(self, pupil)
        else:
            original(self, pupil, overrides)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(generator_writers.SchoolWriter, "write", spy)
        manifest = generate(GeneratorOptions(out=out, **options))
    return manifest, dict(captured)


def iso_or_none(text: str | None) -> dt.date | None:
    """What a DOB override reads as: a date, or None when it is no date at all (``2016-02-30``)."""
    try:
        return None if text is None else dt.date.fromisoformat(text)
    except ValueError:
        return None


def expected_record(pupil: PupilRecord, overrides: dict[str, str | None], fmt: str) -> PupilRecord:
    """The record a correct reader returns for a row the generator wrote from ``pupil``."""
    changes: dict[str, Any] = {}
    for field, text in overrides.items():
        changes[field] = iso_or_none(text) if field == "dob" else text
    if fmt == "ctf":
        changes.update(dict.fromkeys(CTF_ABSENT))
    return dataclasses.replace(pupil, **changes)


def csv_fsm_join(rows: list[tuple[PupilRecord, dict[str, str | None]]]) -> dict[str, tuple[FsmPeriod, ...]]:
    """FSM periods by written UPN, as a join on UPN sees them (rows sharing a UPN share all periods)."""
    by_upn: dict[str, list[FsmPeriod]] = defaultdict(list)
    for pupil, overrides in rows:
        by_upn[overrides.get("upn") or pupil.upn].extend(pupil.fsm_periods)
    return {upn: tuple(periods) for upn, periods in by_upn.items()}


def census_entries(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Manifest entries a reader starts from: XML/CTF files and CSV pupilonroll tables."""
    return [f for f in manifest["files"] if f["table"] in (None, "pupilonroll")]


def assert_same(got: list[ParsedRecord], expected: list[PupilRecord]) -> None:
    """Record-by-record, naming only the row and the field that differ (never a value)."""
    assert len(got) == len(expected)
    for parsed, want in zip(got, expected, strict=True):
        if parsed.record != want:
            diff = [
                f.name
                for f in dataclasses.fields(PupilRecord)
                if getattr(parsed.record, f.name) != getattr(want, f.name)
            ]
            raise AssertionError(f"record {parsed.number}: fields differ: {diff}")
