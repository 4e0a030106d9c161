"""The lineage store: every OpenLineage event kept verbatim plus a normalised index for graph, version,
run and trace queries. SQLite or PostgreSQL, migrated with Alembic (``upgrade(url)``)."""

from censustrace.lineage.store.db import make_engine, upgrade, write_transaction
from censustrace.lineage.store.ingest import export_raw_events, store_event, store_events
from censustrace.lineage.store.parse import LineageEventInvalid, LineageEventMalformed, parse_event
from censustrace.lineage.store.queries import LineageNotFound
from censustrace.lineage.store.trace import DatasetVersionRef, TraceResult, TraceSource, trace_upstream
from censustrace.lineage.store.writer import LineageConflict, StoreResult

__all__ = [
    "DatasetVersionRef",
    "LineageConflict",
    "LineageEventInvalid",
    "LineageEventMalformed",
    "LineageNotFound",
    "StoreResult",
    "TraceResult",
    "TraceSource",
    "export_raw_events",
    "make_engine",
    "parse_event",
    "store_event",
    "store_events",
    "trace_upstream",
    "upgrade",
    "write_transaction",
]
