"""The viewer's own Alembic chain, in the lineage store's database, on SQLite and PostgreSQL: a fresh
database migrated by both chains holds exactly both packages' tables; the tables an older lineage chain
created are adopted untouched."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, MetaData, inspect, select

import censustrace.audit.tables  # noqa: F401  (the access log, on the lineage store's metadata)
from censustrace.db import run_migrations
from censustrace.lineage.store import db as lineage_db
from censustrace.lineage.store.tables import metadata as lineage_metadata
from censustrace.viewer import auth
from censustrace.viewer import db as viewer_db
from censustrace.viewer.tables import metadata as viewer_metadata
from censustrace.viewer.tables import users

VIEWER_TABLES = {"users", "sessions", "api_tokens", "login_attempts"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('viewer-db') / 'lineage.db'}"
    return str(request.getfixturevalue("new_postgres_database")())


@pytest.fixture
def engine(url: str) -> Iterator[Engine]:
    store = lineage_db.make_engine(url)
    yield store
    store.dispose()


def _diff(engine: Engine, metadata: MetaData, version_table: str) -> list[Any]:
    """What autogenerate would change in the database's tables of ``metadata`` (the others are left out)."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "version_table": version_table,
                "compare_type": True,
                "include_name": lambda name, type_, _parents: type_ != "table" or name in metadata.tables,
            },
        )
        return list(compare_metadata(context, metadata))


def _shape(engine: Engine) -> dict[str, Any]:
    """The viewer's tables as the database describes them: columns, keys, constraints and indexes."""
    found = inspect(engine)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in found.get_columns(table)],
            found.get_pk_constraint(table),
            found.get_foreign_keys(table),
            sorted(found.get_unique_constraints(table), key=str),
            sorted(found.get_check_constraints(table), key=str),
            sorted(found.get_indexes(table), key=str),
        )
        for table in sorted(VIEWER_TABLES)
    }


def test_a_fresh_lineage_store_has_none_of_the_viewers_tables(url: str, engine: Engine) -> None:
    lineage_db.upgrade(url)
    assert not VIEWER_TABLES & set(inspect(engine).get_table_names())
    assert viewer_db.current_revision(engine) is None


def test_both_chains_make_exactly_both_packages_tables(url: str, engine: Engine) -> None:
    lineage_db.upgrade(url)
    viewer_db.upgrade(url)
    viewer_db.upgrade(url)  # a second upgrade is a no-op
    assert lineage_db.current_revision(engine) == "0007"
    assert viewer_db.current_revision(engine) == "0001"
    assert set(inspect(engine).get_table_names()) == {
        *lineage_metadata.tables,
        *viewer_metadata.tables,
        lineage_db.VERSION_TABLE,
        viewer_db.VERSION_TABLE,
    }
    assert _diff(engine, lineage_metadata, lineage_db.VERSION_TABLE) == []
    assert _diff(engine, viewer_metadata, viewer_db.VERSION_TABLE) == []
    # The final check: pipeline tokens are allowed.
    auth.add_token(engine, "airflow-workers", "pipeline")


def test_tables_an_older_lineage_chain_made_are_adopted_untouched(url: str, engine: Engine) -> None:
    lineage_db.upgrade(url)
    # What the lineage chain's revisions 0002 and 0004 used to create (same names, same constraints).
    viewer_metadata.create_all(engine)
    auth.add_user(engine, "clara", "compliance", "correct horse battery staple")
    before = _shape(engine)

    viewer_db.upgrade(url)

    assert viewer_db.current_revision(engine) == "0001"
    assert _shape(engine) == before
    assert _diff(engine, viewer_metadata, viewer_db.VERSION_TABLE) == []
    with engine.connect() as conn:
        assert conn.execute(select(users.c.name)).scalars().all() == ["clara"]


def test_the_chains_go_down_and_up_again(url: str, engine: Engine) -> None:
    lineage_db.upgrade(url)
    viewer_db.upgrade(url)
    _down(url, viewer_db.MIGRATIONS_DIR)
    assert not VIEWER_TABLES & set(inspect(engine).get_table_names())
    assert lineage_db.current_revision(engine) == "0007"
    _down(url, lineage_db.MIGRATIONS_DIR)  # revision 0004 finds no api_tokens to alter
    assert set(inspect(engine).get_table_names()) == {lineage_db.VERSION_TABLE, viewer_db.VERSION_TABLE}
    lineage_db.upgrade(url)
    viewer_db.upgrade(url)
    assert _diff(engine, lineage_metadata, lineage_db.VERSION_TABLE) == []
    assert _diff(engine, viewer_metadata, viewer_db.VERSION_TABLE) == []


def _down(url: str, migrations: Path) -> None:
    run_migrations(url, migrations, 0, "base", downgrade=True)
