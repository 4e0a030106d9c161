"""Emptying the lineage store between tests (they share one database per backend)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from censustrace.lineage.store.tables import metadata


def empty_store(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(table.name for table in metadata.sorted_tables)
            # A connection a test forgot to close would make TRUNCATE wait forever: fail instead.
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
