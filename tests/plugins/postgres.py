"""PostgreSQL for the tests: the server (or a skip, or a failure on CI) and fresh databases on it.

PostgreSQL: a fresh database ``censustrace_test_<random>`` is created on the server at
``$CENSUSTRACE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
per call of ``new_postgres_database``, and every one is dropped at the end of the session.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

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
