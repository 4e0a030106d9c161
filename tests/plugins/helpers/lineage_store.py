"""Emptying the lineage store's database between tests (they share one database per backend): the lineage
store's tables, the audit trail's access log beside them and, where the viewer's chain has run, the
viewer's tables."""

from __future__ import annotations

from sqlalchemy import Engine, Table, inspect, text

import censustrace.audit.tables  # noqa: F401  (the access log, on the lineage store's metadata)
from censustrace.lineage.store.tables import metadata
from censustrace.viewer.tables import metadata as viewer_metadata


def empty_store(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        # Dependants first (sessions and api_tokens refer to users); no lineage table refers to them.
        tables: list[Table] = [
            *(t for t in reversed(viewer_metadata.sorted_tables) if t.name in present),
            *reversed(metadata.sorted_tables),
        ]
        if conn.dialect.name == "postgresql":
            names = ", ".join(table.name for table in tables)
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
            for table in tables:
                conn.execute(table.delete())
            for _, sql in triggers:
                conn.execute(text(sql))
