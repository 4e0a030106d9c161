"""Fixtures and helpers for share and consent tests (tests/shares, tests/consent/test_objections.py).

Every test runs on SQLite and on PostgreSQL (the warehouse fixtures of tests.warehouse; the lineage store
on the same backend), with its own home, an empty warehouse and lineage store, and a policies folder of
its own: the repository's fields, purposes, rules and schemas, plus the agreements below (so these tests
do not move when the demo agreements do).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine

from censustrace.census.codes import academic_year_bounds, term_containing
from censustrace.config import Settings
from censustrace.consent.clock import release_day
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.lineage.emit import run_event
from censustrace.lineage.store.db import make_engine, upgrade
from censustrace.lineage.store.ingest import store_event
from tests.lineage.conftest import empty_store
from tests.warehouse.fixtures import PUPIL_KEY_SECRET, generated, land, warehouse_url

__all__ = ["generated", "land", "lineage_url", "policies", "sh", "warehouse_url"]

REPO = Path(__file__).resolve().parents[2]
# Shares are judged for today (Europe/London) and nothing else, so these agreements are written relative
# to the academic year that contains today: their outcomes are the same on any date.
AS_OF = release_day()
YEAR_START, YEAR_END = academic_year_bounds(*term_containing(AS_OF))

_TERMS = f"""\
valid_from: {YEAR_START.isoformat()}
valid_to: {YEAR_END.isoformat()}
frequency: termly
format: csv
retention_days: 365
"""
_APPROVAL = (
    'approval: {reference: DS09999, approved_by: "Data Sharing Approvals Panel", '
    f"approved_on: {(YEAR_START - dt.timedelta(days=31)).isoformat()}}}"
)

AGREEMENTS: dict[str, str] = {
    # School nursing: names and special category data, to a health body, under a gateway.
    "t-nursing": f"""\
id: t-nursing
recipient: {{name: "Test NHS Trust", type: health}}
purpose: health.school_nursing
lawful_basis: public_task
special_category_condition: "Art 9(2)(h) health care; DPA 2018 Sch 1 para 2"
legal_gateway: "SI 2013/351 reg 3"
{_APPROVAL}
fields: [upn, forename, surname, dob, sex, postcode, ethnicity, language, nc_year, laestab]
scope: {{la: ["330"]}}
transforms: {{postcode: sector}}
{_TERMS}""",
    # Research: de-identified (pseudonymised UPN, year of birth, district).
    "t-research": f"""\
id: t-research
recipient: {{name: "Test University", type: researcher}}
purpose: research.approved
lawful_basis: public_task
special_category_condition: "Art 9(2)(j) research; DPA 2018 Sch 1 para 4"
legal_gateway: "Education (Individual Pupil Information) (Prescribed Persons) (England) Regulations 2009"
{_APPROVAL}
fields: [upn, dob, postcode, ethnicity, language, sen_provision, nc_year, laestab]
scope: {{la: ["330"]}}
transforms: {{upn: pseudonymise, dob: year, postcode: district}}
{_TERMS}""",
    # A sub-purpose of research.approved (added to purposes.yaml below): its objections cover it.
    "t-research-sub": f"""\
id: t-research-sub
recipient: {{name: "Test Research Service", type: researcher}}
purpose: research.approved.attainment
lawful_basis: public_task
special_category_condition: null
legal_gateway: "Education (Individual Pupil Information) (Prescribed Persons) (England) Regulations 2009"
{_APPROVAL}
fields: [upn, nc_year]
scope: {{la: ["330"]}}
transforms: {{upn: pseudonymise}}
{_TERMS}""",
    # Consent as the lawful basis: only pupils with a recorded consent.
    "t-youth": f"""\
id: t-youth
recipient: {{name: "Test Youth Service", type: local_authority}}
purpose: youth_support.services
lawful_basis: consent
special_category_condition: null
legal_gateway: null
{_APPROVAL}
fields: [upn, nc_year]
scope: {{la: ["330"]}}
transforms: {{upn: pseudonymise}}
{_TERMS}""",
    # Admissions: names and addresses as they are, one school only.
    "t-admissions": f"""\
id: t-admissions
recipient: {{name: "Test Council Admissions", type: local_authority}}
purpose: education.admissions
lawful_basis: public_task
special_category_condition: null
legal_gateway: null
{_APPROVAL}
fields: [upn, forename, surname, dob, address_lines, postcode, nc_year, laestab]
scope: {{la: ["330"]}}
{_TERMS}""",
    # Refused: marketing.
    "t-marketing": f"""\
id: t-marketing
recipient: {{name: "Test Tutoring Ltd", type: other}}
purpose: commercial.marketing
lawful_basis: legitimate_interests
special_category_condition: null
legal_gateway: null
approval: null
fields: [forename, surname, postcode]
scope: {{la: ["330"]}}
{_TERMS}""",
}

_SUB_PURPOSE = """\
  research.approved.attainment:
    description: Approved research on attainment (a test sub-purpose of research.approved).
    compatible_with_collection: false
"""


@pytest.fixture(scope="session")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's policy files with this module's agreements instead of the demo ones."""
    folder = tmp_path_factory.mktemp("policies") / "policies"
    shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("agreements"))
    (folder / "agreements").mkdir()
    for agreement_id, text in AGREEMENTS.items():
        (folder / "agreements" / f"{agreement_id}.yaml").write_text(text, encoding="utf-8")
    purposes = folder / "purposes.yaml"
    purposes.write_text(purposes.read_text(encoding="utf-8").rstrip("\n") + "\n" + _SUB_PURPOSE)
    return folder


@pytest.fixture(scope="session")
def lineage_url(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    """A migrated lineage store on the warehouse's backend."""
    if warehouse_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'lineage.db'}"
    else:
        url = str(request.getfixturevalue("new_postgres_database")())
    upgrade(url)
    return url


@pytest.fixture
def sh(wh: Settings, lineage_url: str, policies: Path) -> Iterator[Settings]:
    """Settings of an isolated instance: own home, empty warehouse and lineage store, test policies."""
    settings = Settings(
        home=wh.home,
        warehouse_url=wh.warehouse_url,
        lineage_url=lineage_url,
        pupil_key_secret=SecretStr(PUPIL_KEY_SECRET),
        policies_dir=policies,
    )
    engine = make_engine(lineage_url)
    try:
        empty_store(engine)
    finally:
        engine.dispose()
    return settings


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


@pytest.fixture
def census(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Census]:
    """``census(**options)``: a generated census (AUT 2026, LA 330 by default), made once per session."""
    return census_factory(tmp_path_factory)
