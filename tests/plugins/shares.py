"""Share and consent fixtures: a policies folder of the tests' own agreements, a lineage store on the
warehouse's backend, an isolated instance (``sh``) and generated censuses (``census``).

Every test runs on SQLite and on PostgreSQL (the warehouse fixtures of tests.plugins.warehouse; the
lineage store on the same backend), with its own home, an empty warehouse and lineage store, and a
policies folder of its own: the repository's fields, purposes, rules and schemas, plus the agreements
below (so these tests do not move when the demo agreements do).
"""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from censustrace.config import Settings
from censustrace.lineage.store.db import make_engine, upgrade
from censustrace.viewer.db import upgrade as upgrade_viewer
from tests.plugins.helpers.lineage_store import empty_store
from tests.plugins.helpers.shares import YEAR_END, YEAR_START, Census, census_factory, ingest_census
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET

REPO = Path(__file__).resolve().parents[2]

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


@pytest.fixture(scope="package")
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


@pytest.fixture(scope="package")  # per test package, like ``warehouse_url``
def lineage_url(
    warehouse_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> str:
    """A migrated lineage store on the warehouse's backend, with the viewer's tables (as ``init`` makes)."""
    if warehouse_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'lineage.db'}"
    else:
        url = str(request.getfixturevalue("new_postgres_database")())
    upgrade(url)
    upgrade_viewer(url)
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


@pytest.fixture
def census(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Census]:
    """``census(**options)``: a generated census (AUT 2026, LA 330 by default), made once per session."""
    return census_factory(tmp_path_factory)


@pytest.fixture
def cli_home(tmp_path: Path, policies: Path, census: Callable[..., Census]) -> tuple[Settings, Census]:
    """A SQLite instance with a census and its consent files loaded, for the CLI run by
    ``tests.plugins.helpers.cli.run`` (addressed by environment only)."""
    settings = Settings(
        home=tmp_path / "home",
        warehouse_url=f"sqlite:///{tmp_path / 'warehouse.db'}",
        lineage_url=f"sqlite:///{tmp_path / 'lineage.db'}",
        pupil_key_secret=SecretStr(PUPIL_KEY_SECRET),
        policies_dir=policies,
    )
    settings.ensure_dirs()
    upgrade(settings.lineage_db_url)
    generated = census(consents=True)
    ingest_census(settings, generated)
    return settings, generated
