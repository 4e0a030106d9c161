"""Warehouse fixtures and helpers, shared by tests/warehouse and the intake tests (which import them).

Every warehouse test runs on SQLite (a temp file) and on PostgreSQL (a database created for the session
by the top-level ``new_postgres_database`` fixture: skipped with the reason if the server is unreachable,
failed when ``CI=true``). Each test gets an empty warehouse and its own ``CENSUSTRACE_HOME``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select, text

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.warehouse.db import upgrade, warehouse_engine
from censustrace.warehouse.tables import metadata

__all__ = ["generated", "land", "rows_of", "warehouse_url", "wh"]

PUPIL_KEY_SECRET = "test-pupil-key-secret"


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, session-wide warehouse: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('warehouse') / 'warehouse.db'}"
    else:
        url = str(request.getfixturevalue("new_postgres_database")())
    upgrade(url)
    return url


def empty_warehouse(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(table.name for table in metadata.sorted_tables)
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            # The evidence tables refuse TRUNCATE (and the access log DELETE): tests clear them as a
            # replica would, with triggers off.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            # The evidence tables' triggers refuse DELETE: set them aside while clearing.
            triggers = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
            for name, _ in triggers:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            for _, sql in triggers:
                conn.execute(text(sql))


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


_GENERATED: dict[tuple[Any, ...], tuple[Path, dict[str, Any]]] = {}


def generated(tmp_path_factory: pytest.TempPathFactory, **options: Any) -> tuple[Path, dict[str, Any]]:
    """A generated census folder and its manifest, made once per session for the same options."""
    key = tuple(sorted(options.items()))
    if key not in _GENERATED:
        out = tmp_path_factory.mktemp("census")
        _GENERATED[key] = out, generate(GeneratorOptions(out=out, **options))
    return _GENERATED[key]


def land(settings: Settings, source: Path, name: str | None = None) -> Path:
    """Deliver a copy of ``source`` into the landing folder (under ``name`` if given)."""
    target = settings.landing_dir / (name or source.name)
    shutil.copyfile(source, target)
    return target


def rows_of(settings: Settings, table: Any, extract_id: str | None = None) -> int:
    """Rows of a table (of one extract)."""
    query = select(func.count()).select_from(table)
    if extract_id is not None:
        query = query.where(table.c.extract_id == extract_id)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return int(conn.execute(query).scalar_one())
