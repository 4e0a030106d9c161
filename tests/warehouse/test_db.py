"""Warehouse schema: migrations match tables.py on both backends, own version table, views exist."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from censustrace.config import Settings
from censustrace.warehouse.db import (
    VERSION_TABLE,
    current_revision,
    downgrade,
    make_engine,
    upgrade,
    warehouse_engine,
)
from censustrace.warehouse.tables import CURRENT_VIEWS
from censustrace.warehouse_schema import metadata


def _head() -> str | None:
    from alembic.script import ScriptDirectory

    from censustrace.warehouse.db import MIGRATIONS_DIR

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


def test_migrations_match_the_tables(wh: Settings) -> None:
    engine = warehouse_engine(wh.warehouse_db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, metadata) if not _is_version_table(d)]
    assert diff == []
    assert current_revision(engine) == _head() == "0011"


def _is_version_table(diff: object) -> bool:
    return isinstance(diff, tuple) and diff[0] == "remove_table" and diff[1].name == VERSION_TABLE


def test_own_version_table_and_views(wh: Settings) -> None:
    upgrade(wh.warehouse_db_url)  # idempotent: a second run changes nothing
    inspector = inspect(warehouse_engine(wh.warehouse_db_url))
    tables = set(inspector.get_table_names())
    assert VERSION_TABLE in tables
    assert "alembic_version" not in tables  # can share a database with other Alembic-managed schemas
    assert {t.name for t in metadata.sorted_tables} <= tables
    assert set(CURRENT_VIEWS.values()) <= set(inspector.get_view_names())


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/w.db"
    upgrade(url)
    downgrade(url, "base")
    engine = make_engine(url)
    try:
        assert set(inspect(engine).get_table_names()) == {VERSION_TABLE}
        upgrade(url)
        assert current_revision(engine) == _head() == "0011"
    finally:
        engine.dispose()
