"""Tables of the audit trail.

Warehouse: ``share_register_chain`` (one chained row per finished share: its register row's digest and
its disclosure rows' digest) and ``audit_heads`` (the last known head of every chain). The same heads
are kept in the lineage store (``censustrace.lineage.store.tables.lineage_audit_heads``) so that
deleting the newest rows of one store, or restoring it from an old backup, is seen from the other.
Lineage store: ``access_log``, the chained log of who looked up or exported pupil data (beside the
viewer's users and tokens, ``censustrace.viewer.tables``).

Changing a table needs a new Alembic revision in the store it lives in.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Column, Index, Integer, MetaData, String, Table

from censustrace.lineage.store.tables import metadata as lineage_metadata
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

#: Append-only (triggers refuse UPDATE and DELETE, except of ``pupil_key`` by ``rekey``; PostgreSQL refuses
#: TRUNCATE) and hash-chained (``censustrace.audit.chain``): who looked up or exported pupil data, when,
#: what kind and how many results, and who changed users, roles and tokens. Never the UPN or any other
#: pupil identifier: a lookup names the pupil by pupil key (left out of the hash, so ``rekey`` keeps the
#: chain valid).
access_log = Table(
    "access_log",
    lineage_metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(TIME_LENGTH), nullable=False, index=True),
    Column("user_name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    # "subject_access", "export", ...
    Column("action", String(32), nullable=False),
    # What was looked up or exported: a page or file kind, e.g. "share_register.csv".
    Column("what", String(128), nullable=False),
    Column("result_count", Integer),
    # "ok", "denied" (role), "rejected" (bad input: the value itself is never logged).
    Column("outcome", String(16), nullable=False),
    Column("via", String(8), nullable=False),
    # The pupil looked up (keyed pseudonym), or NULL.
    Column("pupil_key", String(64), index=True),
    # Chain position (1, 2, 3, ... without gaps), the previous row's hash and this row's hash; NULL in a
    # row written behind the chain's back (reported by `censustrace audit verify`).
    Column("seq", Integer),
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
    Index("uq_access_log_seq", "seq", unique=True),
)

__all__ = ["access_log", "audit_heads", "share_register_chain"]
