"""Test-wide isolation: one throwaway CENSUSTRACE_HOME (and so one embedded Airflow) per test session.

Airflow reads its configuration when first imported, so the environment is set here, at import time,
before any test module imports Airflow.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

_HOME = Path(tempfile.mkdtemp(prefix="censustrace-test-"))
os.environ["CENSUSTRACE_HOME"] = str(_HOME)
for _var in [v for v in os.environ if v.startswith("AIRFLOW__") or v == "AIRFLOW_HOME"]:
    del os.environ[_var]

from censustrace.config import Settings, get_settings  # noqa: E402
from censustrace.consent.clock import release_day  # noqa: E402
from censustrace.consent.demo import render_demo_policies  # noqa: E402

# The demo agreements dated onto the academic year containing today, as `censustrace pipeline` writes
# them: tests that run the demo's shares (share DAGs, viewer) get the same outcomes on any date.
_DEMO_POLICIES = render_demo_policies(
    Path(__file__).resolve().parents[1] / "policies", _HOME / "policies", release_day()
)
os.environ["CENSUSTRACE_POLICIES_DIR"] = str(_DEMO_POLICIES)
get_settings.cache_clear()
os.environ.update(get_settings().airflow_env())

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


POSTGRES_URL_ENV = "CENSUSTRACE_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_server() -> Engine:
    """An AUTOCOMMIT engine on the PostgreSQL maintenance database, or skip (fail on CI)."""
    url = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_URL))
    engine = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        reason = f"PostgreSQL at {url.render_as_string(hide_password=True)} unreachable: {exc.orig}".strip()
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)", pytrace=False)
        pytest.skip(f"{reason}; set {POSTGRES_URL_ENV}")
    return engine


@pytest.fixture(scope="session")
def new_postgres_database(postgres_server: Engine) -> Iterator[Callable[[], str]]:
    """Creates a fresh database per call (one per store, so their schemas never meet); all are
    dropped at the end of the session."""
    created: list[str] = []

    def create() -> str:
        name = f"censustrace_test_{secrets.token_hex(6)}"
        with postgres_server.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return postgres_server.url.set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        with postgres_server.connect() as conn:
            for name in created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        postgres_server.dispose()


@pytest.fixture(scope="session")
def postgres_url(new_postgres_database: Callable[[], str]) -> str:
    """URL of a database created for this test session (the lineage store's)."""
    return new_postgres_database()


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = get_settings()
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def airflow_db(settings: Settings) -> Settings:
    """Airflow's metadata DB and the lineage store for this session's home, migrated once."""
    from censustrace.lineage.store.db import upgrade

    upgrade(settings.lineage_db_url)
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    return settings


@pytest.fixture
def clean_state(settings: Settings) -> Settings:
    """Empty landing, archive and receipts around a test that runs the pipeline."""
    for folder in (settings.landing_dir, settings.archive_dir, settings.quarantine_dir):
        if folder.exists():
            for p in folder.rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    (settings.home / "receipts.jsonl").unlink(missing_ok=True)
    return settings


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CENSUSTRACE_KEEP_TEST_HOME") != "1":
        for p in _HOME.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(_HOME, ignore_errors=True)
