"""Hash chains: append rows after a chain's head, and check a whole chain.

Each chained row carries its position ``seq`` (1, 2, 3, ... without gaps), ``prev_hash`` (the previous
row's ``row_hash``; 64 zeros for the first) and ``row_hash``: the sha256 of the canonical JSON (sorted
keys, no spaces) of ``{"log", "seq", "prev_hash", <the row's hashed fields>}``. Editing a row breaks its
hash; deleting one leaves a gap; rewriting the tail changes the head, which is also kept outside the
table (``censustrace.audit.heads``), so that is seen too.

Appending takes the chain's lock only for the appending transaction: a PostgreSQL transaction-level
advisory lock (SQLite writers already hold the database's write lock from ``BEGIN IMMEDIATE``). Callers
keep that transaction short (see ``censustrace.audit.register.seal_share``), so concurrent shares only
queue for the few milliseconds of the append.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Table, insert, select, text

GENESIS: Final = "0" * 64
ACCESS_LOG: Final = "access_log"
SHARE_REGISTER: Final = "share_register"
LOGS: Final = (SHARE_REGISTER, ACCESS_LOG)
# Arbitrary constants: the PostgreSQL advisory lock of each chain.
_LOCK_KEYS: Final = {ACCESS_LOG: 0x43544143, SHARE_REGISTER: 0x43545352}


@dataclass(frozen=True, slots=True)
class Head:
    """The newest row of a chain (``seq`` 0 and the genesis hash when it is empty)."""

    seq: int
    row_hash: str

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.row_hash}


EMPTY: Final = Head(0, GENESIS)


def canonical(value: Any) -> Any:
    """JSON-safe, the same on SQLite and PostgreSQL: dates and datetimes as ISO text."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def digest(value: Any) -> str:
    """sha256 of the canonical JSON of ``value``."""
    text_ = json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text_.encode("utf-8")).hexdigest()


def row_hash(log: str, seq: int, prev_hash: str, fields: Mapping[str, Any]) -> str:
    return digest({**fields, "log": log, "seq": seq, "prev_hash": prev_hash})


def lock(conn: Connection, log: str) -> None:
    """Serialise appends to ``log`` until the caller's transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEYS[log]})


def head(conn: Connection, table: Table) -> Head:
    row = conn.execute(
        select(table.c.seq, table.c.row_hash)
        .where(table.c.seq.is_not(None))
        .order_by(table.c.seq.desc())
        .limit(1)
    ).first()
    return EMPTY if row is None or row.row_hash is None else Head(int(row.seq), str(row.row_hash))


def append(
    conn: Connection, table: Table, log: str, rows: Iterable[Mapping[str, Any]], hashed: Sequence[str]
) -> Head:
    """Insert ``rows`` (column values, without seq and hashes) at the end of the chain, in the caller's
    transaction; ``hashed`` names the columns the hash covers. Returns the new head."""
    lock(conn, log)
    current = head(conn, table)
    values = []
    for row in rows:
        seq, prev = current.seq + 1, current.row_hash
        current = Head(seq, row_hash(log, seq, prev, {name: row.get(name) for name in hashed}))
        values.append({**row, "seq": seq, "prev_hash": prev, "row_hash": current.row_hash})
    if values:
        conn.execute(insert(table), values)
    return current


@dataclass(frozen=True, slots=True)
class Problem:
    log: str
    row: int | None
    kind: str
    message: str
    share_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        found: dict[str, Any] = {"log": self.log, "row": self.row, "kind": self.kind, "message": self.message}
        if self.share_id is not None:
            found["share_id"] = self.share_id
        return found


# Problem kinds (stable; docs/operations.md).
TAMPERED: Final = "tampered"  # a row's content no longer matches its hash (or its link was edited)
DELETED: Final = "deleted"  # a position of the chain is missing (or the row it seals is gone)
INSERTED: Final = "inserted"  # a row the chain does not account for
TRUNCATED: Final = "truncated"  # the chain ends before a head recorded elsewhere: newest rows deleted or
#                                 an older backup restored
REWRITTEN: Final = "rewritten"  # the row at a recorded head's position has another hash


def check_rows(
    log: str, rows: Iterable[Mapping[str, Any]], hashed: Sequence[str]
) -> tuple[Head, list[Problem]]:
    """Check chained rows given in ``seq`` order (each with seq, prev_hash, row_hash and the hashed
    fields); returns the chain's head and the problems found."""
    problems: list[Problem] = []
    expected_seq, previous = 1, GENESIS
    last = EMPTY
    for row in rows:
        seq = int(row["seq"])
        if seq > expected_seq:
            for missing in range(expected_seq, seq):
                problems.append(
                    Problem(log, missing, DELETED, f"{log}: row {missing} of the chain is missing")
                )
        elif row["prev_hash"] != previous:
            problems.append(
                Problem(log, seq, TAMPERED, f"{log}: row {seq} does not link to the row before it")
            )
        fields = {name: row.get(name) for name in hashed}
        if row_hash(log, seq, str(row["prev_hash"]), fields) != row["row_hash"]:
            problems.append(Problem(log, seq, TAMPERED, f"{log}: row {seq} was changed after it was written"))
        expected_seq, previous = seq + 1, str(row["row_hash"])
        last = Head(seq, previous)
    return last, problems


def check_witness(
    log: str, source: str, witness: Head, hashes: Mapping[int, str], end: Head
) -> list[Problem]:
    """A head recorded elsewhere (``source``) against the chain: it must be a row of the chain."""
    if witness.seq == 0:
        return []
    if witness.seq > end.seq:
        return [
            Problem(
                log,
                witness.seq,
                TRUNCATED,
                f"{log}: {source} saw row {witness.seq}, the chain ends at {end.seq} "
                "(newest rows deleted or an older backup restored)",
            )
        ]
    found = hashes.get(witness.seq)
    if found is not None and found != witness.row_hash:
        return [
            Problem(
                log, witness.seq, REWRITTEN, f"{log}: row {witness.seq} is not the row {source} saw there"
            )
        ]
    return []


__all__ = [
    "ACCESS_LOG",
    "EMPTY",
    "GENESIS",
    "LOGS",
    "SHARE_REGISTER",
    "Head",
    "Problem",
    "append",
    "canonical",
    "check_rows",
    "check_witness",
    "digest",
    "head",
    "lock",
    "row_hash",
]
