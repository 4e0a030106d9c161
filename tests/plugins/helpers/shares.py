"""Share helpers: ingesting a generated census with its lineage, consent files, the day shares are
judged for. The fixtures (``policies``, ``lineage_url``, ``sh``, ``census``) are in ``tests.plugins.shares``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from censustrace.census.codes import academic_year_bounds, term_containing
from censustrace.config import Settings
from censustrace.consent.clock import release_day
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.lineage.emit import run_event
from censustrace.lineage.store.db import make_engine
from censustrace.lineage.store.ingest import store_event
from tests.plugins.helpers.warehouse import generated, land

# Shares are judged for today (Europe/London) and nothing else, so the test agreements (tests.plugins.shares)
# are written relative to the academic year that contains today: their outcomes are the same on any date.
AS_OF = release_day()
YEAR_START, YEAR_END = academic_year_bounds(*term_containing(AS_OF))


def lineage_engine(settings: Settings) -> Engine:
    return make_engine(settings.lineage_db_url)


def emit_ingest(settings: Settings, outcome: IngestOutcome) -> None:
    """Store an ingest's step events in the lineage store, as the Airflow provider would."""
    engine = lineage_engine(settings)
    try:
        for name, step in outcome.steps:
            store_event(engine, run_event(settings, f"census_ingest.{name}", step))
    finally:
        engine.dispose()


Census = tuple[Path, dict[str, Any]]


def ingest_census(settings: Settings, census: Census, *, emit: bool = True) -> list[IngestOutcome]:
    """Ingest every census file of a generated folder (and record its lineage)."""
    folder, manifest = census
    outcomes = []
    for entry in manifest["files"]:
        outcome = ingest_file(land(settings, folder / entry["file"]), settings)
        assert outcome.status in ("loaded", "received"), outcome.errors
        if emit:
            emit_ingest(settings, outcome)
        outcomes.append(outcome)
    return outcomes


def consent_files(census: Census) -> list[Path]:
    folder, manifest = census
    return [folder / entry["file"] for entry in manifest["consents"]]


def census_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Census]:
    def make(**options: Any) -> Census:
        defaults: dict[str, Any] = {"schools": 3, "pupils_per_school": 40, "fmt": "xml", "seed": 21}
        return generated(tmp_path_factory, **{**defaults, **options})

    return make
