"""The chained access log: who looked a pupil up, exported pupil data, or changed users, roles and tokens.

Call :func:`append_access` inside a transaction on the lineage store (so the logged change and its log
row commit together), or :func:`record` from a face that has the settings (it also publishes the chain
heads to the warehouse, see ``censustrace.audit.heads``). A lookup is logged one row per pupil, by pupil
key (``pupil_key``), never by UPN; ``what`` is a kind (``subject_access.pdf``, ``user alice``), never a
pupil's value.
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, Engine, func, select

from censustrace.audit import chain
from censustrace.audit.heads import forward, publish_heads, stamp, store_engine
from censustrace.audit.tables import access_log
from censustrace.db import write_transaction
from censustrace.lineage.store.tables import lineage_audit_heads

if TYPE_CHECKING:
    from censustrace.config import Settings

#: The access log columns the chain's hash covers: all but ``id`` (a database sequence) and ``pupil_key``
#: (rewritten by ``censustrace rekey``).
HASHED: Final = ("at", "user_name", "role", "action", "what", "result_count", "outcome", "via")


@dataclass(frozen=True, slots=True)
class Actor:
    """Who did it: a viewer user (``via`` session/token), a producer, or an operating-system user (cli)."""

    name: str
    role: str = "-"
    via: str = "cli"


def os_actor() -> Actor:
    """The operating-system user running this command (``censustrace disclosures``, ``users add``, ...)."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = f"uid-{os.getuid()}"
    return Actor(f"os:{name}"[:64], "-", "cli")


def append_access(
    conn: Connection,
    actor: Actor,
    action: str,
    what: str,
    *,
    pupil_keys: Sequence[str | None] = (None,),
    result_counts: Sequence[int | None] | None = None,
    outcome: str = "ok",
) -> chain.Head:
    """Append one chained row per pupil key (one row without a pupil when none), in ``conn``'s
    transaction on the lineage store. Returns the chain's new head."""
    at = stamp()
    counts = list(result_counts) if result_counts is not None else [None] * len(pupil_keys)
    rows: list[dict[str, Any]] = [
        {
            "at": at,
            "user_name": actor.name[:64],
            "role": (actor.role or "-")[:16],
            "action": action[:32],
            "what": what[:128],
            "result_count": count,
            "outcome": outcome[:16],
            "via": actor.via[:8],
            "pupil_key": key,
        }
        for key, count in zip(pupil_keys, counts, strict=True)
    ]
    found = chain.append(conn, access_log, chain.ACCESS_LOG, rows, HASHED)
    # The head in this store's head table at once (the lock is held); the warehouse's copy follows
    # with publish_heads.
    forward(conn, lineage_audit_heads, {chain.ACCESS_LOG: found}, at)
    return found


def record_access(engine: Engine, actor: Actor, action: str, what: str, **kwargs: Any) -> chain.Head:
    """:func:`append_access` in a transaction of its own."""
    with write_transaction(engine) as conn:
        return append_access(conn, actor, action, what, **kwargs)


def record(settings: Settings, actor: Actor, action: str, what: str, **kwargs: Any) -> chain.Head:
    """Append to the access log of ``settings``' lineage store and publish the chain heads."""
    found = record_access(store_engine(settings), actor, action, what, **kwargs)
    publish_heads(settings)
    return found


def lookups_of(engine: Engine, pupil_key: str) -> list[dict[str, Any]]:
    """Who looked up (or exported the data of) the pupil with ``pupil_key``, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                access_log.c.at,
                access_log.c.user_name,
                access_log.c.role,
                access_log.c.action,
                access_log.c.what,
                access_log.c.result_count,
                access_log.c.outcome,
                access_log.c.via,
                access_log.c.seq,
            )
            .where(access_log.c.pupil_key == pupil_key)
            .order_by(access_log.c.id)
        ).all()
    return [dict(row._mapping) for row in rows]


def count_rows(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(access_log)).scalar_one())


__all__ = ["HASHED", "Actor", "append_access", "lookups_of", "os_actor", "record", "record_access"]
