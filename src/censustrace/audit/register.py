"""The share register's chain: one row per finished share (delivered or blocked), sealed in the same
transaction that finishes it.

The chained row holds the sha256 of the share's register row (:data:`RECORD_COLUMNS`, a fixed list: a
column added later is not covered, so adding one does not break old rows) and the count and sha256 of its
disclosure rows without their pupil keys (so ``censustrace rekey`` keeps them valid): extract id, record
number and the fields sent blank, in (extract, record) order.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from sqlalchemy import Connection, Engine, Text, cast, select

from censustrace.audit import chain
from censustrace.audit.tables import share_register_chain
from censustrace.shares.tables import BLOCKED, DELIVERED, disclosures, shares

#: Share states that are final: a share in one of them is sealed.
FINAL: Final = (BLOCKED, DELIVERED)
RECORD_COLUMNS: Final = (
    "share_id",
    "agreement_id",
    "run_key",
    "status",
    "as_of",
    "agreement_sha256",
    "recipient",
    "recipient_type",
    "purpose",
    "lawful_basis",
    "special_category_condition",
    "legal_gateway",
    "approval",
    "policy_version",
    "flags",
    "reasons",
    "fields",
    "transforms",
    "pupils",
    "excluded",
    "suppressed",
    "source_extracts",
    "consent_files",
    "consent_check",
    "file_name",
    "sha256",
    "size",
    "manifest_sha256",
    "file_path",
    "lineage_run_id",
    "lineage_event",
    "created_at",
    "built_at",
    "recorded_at",
    "delivered_at",
)
HASHED: Final = ("share_id", "status", "record_sha256", "disclosures", "disclosures_sha256", "sealed_at")
_EMPTY_SHA256: Final = hashlib.sha256(b"").hexdigest()
_BATCH: Final = 10_000


def record_sha256(row: Any) -> str:
    """sha256 of a share register row's evidence columns."""
    data = row._mapping if hasattr(row, "_mapping") else row
    return chain.digest({name: data[name] for name in RECORD_COLUMNS})


def disclosures_digest(conn: Connection, share_id: str) -> tuple[int, str]:
    """(count, sha256) of a share's disclosure rows, pupil keys left out: lines of extract id, record
    number and the fields sent blank as the database stores them (JSON text), in (extract, record)
    order. Read as text in batches: a million rows in seconds, not a JSON parse and dump per row."""
    digest = hashlib.sha256()
    count = 0
    # yield_per on the statement, not the connection (that would stay on for the caller's INSERTs).
    result = conn.execute(
        select(disclosures.c.extract_id, disclosures.c.record_number, cast(disclosures.c.blank_fields, Text))
        .where(disclosures.c.share_id == share_id)
        .order_by(disclosures.c.extract_id, disclosures.c.record_number)
        .execution_options(yield_per=_BATCH)
    )
    for batch in result.tuples().partitions():
        digest.update("".join([f"{e}\t{r}\t{b}\n" for e, r, b in batch]).encode())
        count += len(batch)
    return count, digest.hexdigest() if count else _EMPTY_SHA256


def digest_of(engine: Engine, share_id: str) -> tuple[int, str]:
    """:func:`disclosures_digest` in a read of its own: compute it before the sealing transaction, so
    the chain's lock is held only for the append."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # A national share's rows are sorted in memory, not through temporary files.
            conn.exec_driver_sql("SET LOCAL work_mem = '256MB'")
        return disclosures_digest(conn, share_id)


def seal_share(conn: Connection, share_id: str, digest: tuple[int, str] | None = None) -> chain.Head | None:
    """Append the chained row of ``share_id`` in ``conn``'s transaction, if the share is final and not
    sealed yet (idempotent). ``digest``: its disclosures' digest, computed beforehand (a blocked share
    has none)."""
    row = conn.execute(select(shares).where(shares.c.share_id == share_id)).first()
    if row is None or row.status not in FINAL:
        return None
    chain.lock(conn, chain.SHARE_REGISTER)  # before the check: two sealers of one share queue here
    sealed = conn.execute(
        select(share_register_chain.c.seq).where(share_register_chain.c.share_id == share_id)
    ).first()
    if sealed is not None:
        return None
    count, sha = digest if digest is not None else disclosures_digest(conn, share_id)
    from censustrace.audit.heads import stamp as _stamp

    values = {
        "share_id": share_id,
        "status": row.status,
        "record_sha256": record_sha256(row),
        "disclosures": count,
        "disclosures_sha256": sha,
        "sealed_at": _stamp(),
    }
    found = chain.append(conn, share_register_chain, chain.SHARE_REGISTER, [values], HASHED)
    from censustrace.audit.heads import forward
    from censustrace.audit.tables import audit_heads

    forward(conn, audit_heads, {chain.SHARE_REGISTER: found}, values["sealed_at"])
    return found


#: The warehouse revision that brought the share register's chain (a home upgraded across it seals the
#: shares it already had: see :func:`seal_existing`).
CHAIN_REVISION: Final = "0006"


def seal_existing(engine: Engine) -> int:
    """Seal, in register order, the finished shares a release before the audit trail left: run once by
    ``censustrace init`` when it upgrades a warehouse across :data:`CHAIN_REVISION`, so they enter the
    chain at the upgrade (a share finished later and never sealed is still reported as inserted)."""
    from censustrace.warehouse.db import write_transaction

    with engine.connect() as conn:
        found = list(
            conn.execute(
                select(shares.c.share_id).where(shares.c.status.in_(FINAL)).order_by(shares.c.id)
            ).scalars()
        )
    sealed = 0
    for share_id in found:
        digest = digest_of(engine, share_id)
        with write_transaction(engine) as conn:
            sealed += seal_share(conn, share_id, digest) is not None
    return sealed


__all__ = [
    "CHAIN_REVISION",
    "FINAL",
    "HASHED",
    "RECORD_COLUMNS",
    "digest_of",
    "disclosures_digest",
    "record_sha256",
    "seal_existing",
    "seal_share",
]
