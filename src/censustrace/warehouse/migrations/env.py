"""Alembic environment: migrates the connection handed over by ``db.upgrade`` (or ``sqlalchemy.url``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from censustrace.warehouse.db import VERSION_TABLE, make_engine, write_transaction
from censustrace.warehouse.tables import metadata


def _configure(**kwargs: object) -> None:
    context.configure(
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things in place; batch mode copies the table instead.
        render_as_batch=True,
        compare_type=True,
        **kwargs,  # type: ignore[arg-type]
    )


def _run(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        _configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection or sqlalchemy.url given to the warehouse migrations")
    engine = make_engine(url)
    try:
        with write_transaction(engine) as new_connection:
            _run(new_connection)
    finally:
        engine.dispose()


main()
