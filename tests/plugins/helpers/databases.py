"""Emptying a test database between tests (tests share one database per backend and store)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, Table, text


def delete_every_row(conn: Connection, tables: Sequence[Table]) -> None:
    """Delete every row of ``tables`` (dependants first), evidence tables included."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(table.name for table in tables)
        # A connection a test forgot to close would make TRUNCATE wait forever: fail instead.
        conn.execute(text("SET LOCAL lock_timeout = '10s'"))
        # The evidence tables refuse TRUNCATE (and the access log DELETE): tests clear them as a replica
        # would, with triggers off.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        return
    # The evidence tables' triggers refuse DELETE: set them aside while clearing.
    triggers = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
    for name, _ in triggers:
        conn.execute(text(f'DROP TRIGGER "{name}"'))
    for table in tables:
        conn.execute(table.delete())
    for _, sql in triggers:
        conn.execute(text(sql))
