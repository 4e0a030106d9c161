"""Tables of the audit trail.

Warehouse: ``share_register_chain`` (one chained row per finished share: its register row's digest and
its disclosure rows' digest) and ``audit_heads`` (the last known head of every chain). The same heads
are kept in the lineage store (``censustrace.lineage.store.tables.lineage_audit_heads``) so that
deleting the newest rows of one store, or restoring it from an old backup, is seen from the other. The
access log's own chain columns are on ``censustrace.viewer.tables.access_log``.

Changing a table needs a new Alembic revision in the store it lives in.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, Integer, MetaData, String, Table

from censustrace.shares.tables import SHARE_ID_LENGTH
from censustrace.warehouse.tables import metadata as warehouse_metadata

HASH_LENGTH: Final = 64
#: ``2026-11-28T10:00:00.123456Z``
TIME_LENGTH: Final = 27

share_register_chain = Table(
    "share_register_chain",
    warehouse_metadata,
    # 1, 2, 3, ... without gaps: a gap is a deleted row.
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("share_id", String(SHARE_ID_LENGTH), nullable=False, unique=True),
    Column("status", String(10), nullable=False),
    # sha256 of the share register row's evidence columns (censustrace.audit.register.RECORD_COLUMNS).
    Column("record_sha256", String(HASH_LENGTH), nullable=False),
    # The disclosure rows of the share: how many, and the sha256 of their (extract, record, blank
    # fields) in (extract, record) order. Pupil keys are left out, so `rekey` keeps the digest.
    Column("disclosures", Integer, nullable=False),
    Column("disclosures_sha256", String(HASH_LENGTH), nullable=False),
    Column("sealed_at", String(TIME_LENGTH), nullable=False),
    Column("prev_hash", String(HASH_LENGTH), nullable=False),
    Column("row_hash", String(HASH_LENGTH), nullable=False),
)


def _heads(name: str, metadata: MetaData) -> Table:
    return Table(
        name,
        metadata,
        Column("log", String(32), primary_key=True),
        Column("seq", Integer, nullable=False),
        Column("row_hash", String(HASH_LENGTH), nullable=False),
        Column("at", String(TIME_LENGTH), nullable=False),
    )


audit_heads = _heads("audit_heads", warehouse_metadata)

__all__ = ["audit_heads", "share_register_chain"]
