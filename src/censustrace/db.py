"""Engines, write transactions and Alembic migrations shared by censustrace's databases.

Both stores (the warehouse and the lineage store) run on SQLite or PostgreSQL the same way: SQLite in
WAL mode with explicit ``BEGIN IMMEDIATE`` for writers; Alembic run programmatically against one
connection, with a version table of each store's own, under a PostgreSQL advisory lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, MetaData, create_engine, event, text
from sqlalchemy.engine import URL, Connection, ExceptionContext, make_url

# How long a SQLite writer waits for the write lock. Staging a large extract is one transaction that
# holds it for seconds, so other writers (another file's registration, lineage events) must be patient.
SQLITE_BUSY_TIMEOUT_S: Final = 120
_BEGIN_OPTION: Final = "censustrace_sqlite_begin"


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for a censustrace database at ``url``.

    SQLite: WAL (readers never block the writer), foreign keys on, a long busy timeout, and transactions
    begun explicitly so that :func:`write_transaction` can take the write lock up front. PostgreSQL
    (psycopg2): pre-ping pooled connections. Both: statement parameters never appear in errors."""
    url = make_url(url)
    backend = url.get_backend_name()
    # A failed statement's parameters are pupil data (names, UPNs, dates of birth): SQLAlchemy would put
    # them into the exception text, and so into task logs and error messages.
    kwargs.setdefault("hide_parameters", True)
    if backend == "sqlite":
        connect_args = {
            "timeout": SQLITE_BUSY_TIMEOUT_S,
            "check_same_thread": False,
            **kwargs.pop("connect_args", {}),
        }
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        _configure_sqlite(engine)
        return engine
    if backend == "postgresql":
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
        event.listen(engine, "handle_error", _without_row_values)
        return engine
    raise ValueError(f"censustrace databases are SQLite or PostgreSQL, not {backend}")


def _without_row_values(context: ExceptionContext) -> None:
    """PostgreSQL's message DETAIL names the values of a failing row or key ("Failing row contains (...)"):
    keep the message's first part only (the constraint, table and column names), so the error text
    carries no pupil data; the driver's ``diag`` still has the detail for code that needs it."""
    original, wrapped = context.original_exception, context.sqlalchemy_exception
    message = str(original)
    if "DETAIL:" not in message:
        return
    original.args = (message.split("DETAIL:", 1)[0].rstrip(),)
    if wrapped is not None and wrapped.args and isinstance(wrapped.args[0], str):
        # The wrapper formatted its text from the driver's before this hook ran.
        wrapped.args = (wrapped.args[0].split("\nDETAIL:", 1)[0].rstrip(), *wrapped.args[1:])


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy (the "begin" hook below) issues BEGIN, not the sqlite3 module, which would start a
        # DEFERRED transaction late and fail a lock upgrade instead of waiting for it.
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


def alembic_config(migrations_dir: Path, connection: Connection | None = None) -> Config:
    """Alembic configuration for a package's migrations folder; no alembic.ini needed."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def run_migrations(
    url: str | URL, migrations_dir: Path, lock_key: int, revision: str = "head", *, downgrade: bool = False
) -> None:
    """Migrate the database at ``url`` up (or down) to ``revision`` with the Alembic scripts in
    ``migrations_dir``, in one transaction, serialised on PostgreSQL by the advisory lock ``lock_key``."""
    url = make_url(url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url)
    try:
        with write_transaction(engine) as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": lock_key})
            config = alembic_config(migrations_dir, connection)
            if downgrade:
                command.downgrade(config, revision)
            else:
                command.upgrade(config, revision)
    finally:
        engine.dispose()


def current_revision(engine: Engine, version_table: str) -> str | None:
    """A store's Alembic revision, None if it was never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": version_table})
        return context.get_current_revision()


def run_alembic_env(metadata: MetaData, version_table: str, what: str) -> None:
    """The body of a store's Alembic ``env.py``: migrate the connection handed over by
    :func:`run_migrations` (or ``sqlalchemy.url``); offline mode renders SQL."""
    from alembic import context

    def known(name: str | None, type_: str, _parents: Any) -> bool:
        # Another package's tables may share the database (the viewer's beside the lineage store's): a
        # store's autogenerate compares only the tables of its own metadata, never proposing to drop those.
        return type_ != "table" or name in metadata.tables

    def configure(**kwargs: Any) -> None:
        context.configure(
            target_metadata=metadata,
            version_table=version_table,
            include_name=known,
            # SQLite cannot ALTER most things in place; batch mode copies the table instead.
            render_as_batch=True,
            compare_type=True,
            **kwargs,
        )

    def run(connection: Connection) -> None:
        configure(connection=connection)
        with context.begin_transaction():
            context.run_migrations()

    if context.is_offline_mode():
        configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError(f"no connection or sqlalchemy.url given to the {what} migrations")
    engine = make_engine(url)
    try:
        with write_transaction(engine) as new_connection:
            run(new_connection)
    finally:
        engine.dispose()


def create_postgres_database(url: str | URL) -> bool:
    """Create the database a PostgreSQL URL names if it does not exist (connecting to the server's
    ``postgres`` database with the same credentials); True if it was created. SQLite URLs: nothing."""
    url = make_url(url)
    if url.get_backend_name() != "postgresql" or not url.database:
        return False
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": url.database}
            ).first()
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(url.database)
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    finally:
        admin.dispose()
