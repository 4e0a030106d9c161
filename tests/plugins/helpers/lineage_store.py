"""Emptying the lineage store's database between tests (they share one database per backend): the lineage
store's tables, the audit trail's access log beside them and, where the viewer's chain has run, the
viewer's tables."""

from __future__ import annotations

from sqlalchemy import Engine, Table, inspect

import censustrace.audit.tables  # noqa: F401  (the access log, on the lineage store's metadata)
from censustrace.lineage.store.tables import metadata
from censustrace.viewer.tables import metadata as viewer_metadata
from tests.plugins.helpers.databases import delete_every_row


def empty_store(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        present = set(inspect(conn).get_table_names())
        # Dependants first (sessions and api_tokens refer to users); no lineage table refers to them.
        tables: list[Table] = [
            *(t for t in reversed(viewer_metadata.sorted_tables) if t.name in present),
            *reversed(metadata.sorted_tables),
        ]
        delete_every_row(conn, tables)
