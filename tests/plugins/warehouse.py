"""Warehouse fixtures, for every test that needs a warehouse (intake, quality, shares, consent, ...).

Every warehouse test runs on SQLite (a temp file) and on PostgreSQL (a database created for the session
by the ``new_postgres_database`` fixture: skipped with the reason if the server is unreachable, failed
when ``CI=true``). Each test gets an empty warehouse and its own ``CENSUSTRACE_HOME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from censustrace.config import Settings
from censustrace.warehouse.db import upgrade, warehouse_engine
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET, empty_warehouse


# One per test package (tests/<dir>/), as when each directory's conftest held its own copy: the ops and
# audit tests lose and restore their stores, which no other package's tests must share.
@pytest.fixture(scope="package", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated warehouse for a test package: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
    else:
        url = str(request.getfixturevalue("new_postgres_database")())
    upgrade(url)
    return url


@pytest.fixture
def wh(warehouse_url: str, tmp_path: Path) -> Iterator[Settings]:
    """Settings of an isolated instance (own home) on an empty warehouse."""
    settings = Settings(
        home=tmp_path / "home", warehouse_url=warehouse_url, pupil_key_secret=SecretStr(PUPIL_KEY_SECRET)
    )
    settings.ensure_dirs()
    empty_warehouse(warehouse_engine(warehouse_url))
    yield settings
    for path in settings.home.rglob("*"):  # archive and quarantine copies are read-only
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)
