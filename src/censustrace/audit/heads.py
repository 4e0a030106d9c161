"""Chain heads kept outside their tables: in ``audit_heads`` (warehouse) and ``lineage_audit_heads``
(lineage store), each holding the head of both chains, and in every share manifest (``audit``). A head
only moves forward (a smaller ``seq`` never replaces a larger one), so after the newest rows of a chain
are deleted, or one store is restored from an old backup, the other store still remembers the lost head
and ``censustrace audit verify`` reports it (``truncated`` or ``rewritten``).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, Table, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from censustrace.audit import chain
from censustrace.audit.tables import access_log, audit_heads, share_register_chain
from censustrace.db import write_transaction
from censustrace.lineage.store.tables import lineage_audit_heads

if TYPE_CHECKING:
    from censustrace.config import Settings

log = logging.getLogger(__name__)


def store_engine(settings: Settings) -> Engine:
    """The lineage store's engine (this process's shared one, migrated once)."""
    from censustrace.lineage.store.db import shared_engine

    return shared_engine(settings.lineage_db_url)


def dispose_stores() -> None:
    """Close this process's lineage store engines (tests; before a restore)."""
    from censustrace.lineage.store.db import drop_shared_engine

    drop_shared_engine()


def warehouse(settings: Settings) -> Engine:
    from censustrace.warehouse.db import warehouse_engine

    return warehouse_engine(settings.warehouse_db_url)


def current_heads(settings: Settings) -> dict[str, chain.Head]:
    """The head of each chain, read from its own table."""
    with warehouse(settings).connect() as conn:
        register = chain.head(conn, share_register_chain)
    with store_engine(settings).connect() as conn:
        accesses = chain.head(conn, access_log)
    return {chain.SHARE_REGISTER: register, chain.ACCESS_LOG: accesses}


def manifest_heads(settings: Settings) -> dict[str, Any]:
    """The ``audit`` entry of a share manifest: both chain heads when the share was built (the access
    log's left out if the lineage store cannot be read now: the release will then refuse anyway)."""
    with warehouse(settings).connect() as conn:
        heads = {chain.SHARE_REGISTER: chain.head(conn, share_register_chain).as_dict()}
    try:
        with store_engine(settings).connect() as conn:
            heads[chain.ACCESS_LOG] = chain.head(conn, access_log).as_dict()
    except (SQLAlchemyError, OSError) as exc:
        log.warning("share manifest without the access log head (%s)", type(exc).__name__)
    return heads


def stamp() -> str:
    """Now, as the audit tables keep times (``2026-11-28T10:00:00.123456Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def forward(conn: Connection, table: Table, heads: dict[str, chain.Head], at: str) -> None:
    """Move the recorded heads of ``table`` forward to ``heads`` (never back)."""
    known = {row.log: int(row.seq) for row in conn.execute(select(table.c.log, table.c.seq))}
    for name, found in heads.items():
        if found.seq == 0:
            continue
        values = {"seq": found.seq, "row_hash": found.row_hash, "at": at}
        if name not in known:
            conn.execute(insert(table).values(log=name, **values))
        elif known[name] < found.seq:
            conn.execute(update(table).where(table.c.log == name, table.c.seq < found.seq).values(**values))


def publish_heads(settings: Settings) -> dict[str, chain.Head]:
    """Copy both chain heads into both stores' head tables (forward only). Best effort: a store that
    cannot be written now is caught up by the next publish (a lagging head hides nothing older)."""
    try:
        heads = current_heads(settings)
        at = stamp()
        with write_transaction(warehouse(settings)) as conn:
            forward(conn, audit_heads, heads, at)
        with write_transaction(store_engine(settings)) as conn:
            forward(conn, lineage_audit_heads, heads, at)
    except (SQLAlchemyError, OSError) as exc:
        log.error("audit chain heads not published (%s); the next append will", type(exc).__name__)
        return {}
    return heads


def recorded_heads(conn: Connection, table: Table) -> dict[str, chain.Head]:
    return {
        str(row.log): chain.Head(int(row.seq), str(row.row_hash))
        for row in conn.execute(select(table.c.log, table.c.seq, table.c.row_hash))
    }


__all__ = [
    "current_heads",
    "dispose_stores",
    "forward",
    "manifest_heads",
    "publish_heads",
    "recorded_heads",
    "stamp",
    "store_engine",
]
