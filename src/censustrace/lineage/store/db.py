"""Engines and migrations for the lineage store (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: Our own name, so the lineage store can share a database with other Alembic-managed schemas.
VERSION_TABLE: Final = "lineage_alembic_version"
_BEGIN_OPTION: Final = "censustrace_sqlite_begin"
# An arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrade() calls.
_UPGRADE_LOCK_KEY: Final = 0x4C494E45


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for the lineage store at ``url``.

    SQLite: WAL (readers never block the writer), foreign keys on, a 30 s busy timeout, and
    transactions begun explicitly so that :func:`write_transaction` can take the write lock up front.
    PostgreSQL (psycopg2): pre-ping pooled connections."""
    url = make_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        connect_args = {"timeout": 30, "check_same_thread": False, **kwargs.pop("connect_args", {})}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    raise ValueError(f"the lineage store supports SQLite and PostgreSQL, not {backend}")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (the "begin" hook below) issue BEGIN, not the sqlite3 module, which would
        # start a DEFERRED transaction late and fail a lock upgrade instead of waiting for it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that will write: on SQLite it holds the write lock from the start
    (BEGIN IMMEDIATE), so concurrent writers queue on the busy timeout instead of failing."""
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            connection.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with connection.begin():
            yield connection


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration for the package's migrations; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Create or migrate the lineage store at ``url`` to ``revision``. Safe to call at every start."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK_KEY})
            command.upgrade(alembic_config(connection), revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()
