"""Warehouse helpers: a test's census files, landing them, counting rows, emptying the warehouse.

The fixtures on top of them (``warehouse_url``, ``wh``) are in ``tests.plugins.warehouse``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, func, select

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.warehouse.db import upgrade, warehouse_engine
from censustrace.warehouse.tables import metadata
from tests.plugins.helpers.databases import delete_every_row

PUPIL_KEY_SECRET = "test-pupil-key-secret"


def empty_warehouse(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        delete_every_row(conn, list(reversed(metadata.sorted_tables)))


def sqlite_home(tmp_path: Path, name: str) -> Settings:
    """Settings of a home of its own on a new SQLite warehouse at ``tmp_path/name`` (two homes side by
    side: the same files ingested two ways)."""
    (tmp_path / name).mkdir()
    url = f"sqlite:///{tmp_path / name / 'warehouse.db'}"
    upgrade(url)
    settings = Settings(
        home=tmp_path / name / "home", warehouse_url=url, pupil_key_secret=SecretStr(PUPIL_KEY_SECRET)
    )
    settings.ensure_dirs()
    return settings


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
