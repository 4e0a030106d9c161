"""``censustrace audit verify``: check both audit chains and every head recorded outside them.

Returns ``{"ok", "problems": [{log, row, kind, message[, share_id]}], "chains": {log: {rows, head}}}``.
``kind`` is one of ``censustrace.audit.chain``'s kinds: ``tampered``, ``deleted``, ``inserted``,
``truncated``, ``rewritten``.

* the access log: every row chained (``inserted`` if not), hashes and links, no gaps;
* the share register: the chain itself, then each sealed share against its register row and disclosure
  rows as they are now, and every finished share sealed;
* heads: the warehouse's ``audit_heads``, the lineage store's ``lineage_audit_heads`` and the ``audit``
  entry of every share manifest in the outbox must each name a row of the chain, with that row's hash.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from censustrace.audit import chain, log, register
from censustrace.audit.heads import recorded_heads, store_engine, warehouse
from censustrace.audit.tables import access_log, audit_heads, share_register_chain
from censustrace.errors import CensustraceError
from censustrace.lineage.store.tables import lineage_audit_heads
from censustrace.shares.tables import shares

if TYPE_CHECKING:
    from censustrace.config import Settings


class AuditUnreadable(CensustraceError):
    code = "CT-AUDIT-UNREADABLE"


def verify_audit(settings: Settings) -> dict[str, Any]:
    try:
        return _verify(settings)
    except SQLAlchemyError as exc:
        shown = [
            make_url(u).render_as_string(hide_password=True)
            for u in (settings.warehouse_db_url, settings.lineage_db_url)
        ]
        raise AuditUnreadable(
            f"cannot read the audit trail in {' / '.join(shown)} ({type(exc).__name__})"
        ) from exc


def _verify(settings: Settings) -> dict[str, Any]:
    problems: list[chain.Problem] = []
    ends: dict[str, chain.Head] = {}
    hashes: dict[str, dict[int, str]] = {}
    counts: dict[str, int] = {}

    with store_engine(settings).connect() as conn:
        rows = [
            dict(r._mapping)
            for r in conn.execute(select(access_log).order_by(access_log.c.seq, access_log.c.id))
        ]
        lineage_witness = recorded_heads(conn, lineage_audit_heads)
    chained = [r for r in rows if r["seq"] is not None and r["row_hash"] is not None]
    for r in rows:
        if r["seq"] is None or r["row_hash"] is None:
            problems.append(
                chain.Problem(
                    chain.ACCESS_LOG,
                    None,
                    chain.INSERTED,
                    f"access_log: row id {r['id']} is not in the chain",
                )
            )
    ends[chain.ACCESS_LOG], found = chain.check_rows(chain.ACCESS_LOG, chained, log.HASHED)
    problems += found
    hashes[chain.ACCESS_LOG] = {int(r["seq"]): str(r["row_hash"]) for r in chained}
    counts[chain.ACCESS_LOG] = len(rows)

    with warehouse(settings).connect() as conn:
        sealed = [
            dict(r._mapping)
            for r in conn.execute(select(share_register_chain).order_by(share_register_chain.c.seq))
        ]
        ends[chain.SHARE_REGISTER], found = chain.check_rows(chain.SHARE_REGISTER, sealed, register.HASHED)
        problems += found
        hashes[chain.SHARE_REGISTER] = {int(r["seq"]): str(r["row_hash"]) for r in sealed}
        counts[chain.SHARE_REGISTER] = len(sealed)
        problems += _check_shares(conn, sealed)
        warehouse_witness = recorded_heads(conn, audit_heads)
        known = {str(s) for (s,) in conn.execute(select(shares.c.share_id))}

    manifests = _manifests(settings)
    for path, share_id, _heads in manifests:
        if share_id and share_id not in known:
            problems.append(
                chain.Problem(
                    chain.SHARE_REGISTER,
                    None,
                    chain.DELETED,
                    f"{path.name} in the outbox was sent by share {share_id}, which is not in the register "
                    "(deleted, or an older backup restored)",
                    share_id,
                )
            )

    witnesses: list[tuple[str, dict[str, chain.Head]]] = [
        ("the warehouse's audit_heads", warehouse_witness),
        ("the lineage store's lineage_audit_heads", lineage_witness),
        *((f"manifest {path.name}", heads) for path, _, heads in manifests),
    ]
    for source, heads in witnesses:
        for name, witness in heads.items():
            if name in ends:
                problems += chain.check_witness(name, source, witness, hashes[name], ends[name])
    unique = list({(p.log, p.row, p.kind, p.share_id): p for p in problems}.values())
    return {
        "ok": not unique,
        "problems": [p.as_dict() for p in unique],
        "chains": {name: {"rows": counts[name], "head": ends[name].as_dict()} for name in chain.LOGS},
    }


def _check_shares(conn: Any, sealed: list[dict[str, Any]]) -> list[chain.Problem]:
    name = chain.SHARE_REGISTER
    problems: list[chain.Problem] = []
    current = {row.share_id: row for row in conn.execute(select(shares))}
    for seal in sealed:
        sid, seq = seal["share_id"], int(seal["seq"])
        row = current.get(sid)
        if row is None:
            problems.append(
                chain.Problem(name, seq, chain.DELETED, f"share {sid} is gone from the register", sid)
            )
            continue
        if register.record_sha256(row) != seal["record_sha256"]:
            problems.append(
                chain.Problem(name, seq, chain.TAMPERED, f"share {sid}: its register row was changed", sid)
            )
        count, sha = register.disclosures_digest(conn, sid)
        if count != seal["disclosures"] or sha != seal["disclosures_sha256"]:
            kind = (
                chain.INSERTED
                if count > seal["disclosures"]
                else chain.DELETED
                if count < seal["disclosures"]
                else chain.TAMPERED
            )
            problems.append(
                chain.Problem(
                    name,
                    seq,
                    kind,
                    f"share {sid}: {count} disclosure rows now, {seal['disclosures']} when sealed"
                    + ("" if count != seal["disclosures"] else " (their content changed)"),
                    sid,
                )
            )
    sealed_ids = {seal["share_id"] for seal in sealed}
    for sid, row in current.items():
        if row.status in register.FINAL and sid not in sealed_ids:
            problems.append(
                chain.Problem(
                    name,
                    None,
                    chain.INSERTED,
                    f"share {sid} is {row.status} but was never sealed in the chain",
                    sid,
                )
            )
    return problems


def _manifests(settings: Settings) -> list[tuple[Path, str | None, dict[str, chain.Head]]]:
    """(path, share id, ``audit`` heads) of every share manifest in the outbox."""
    root = settings.share_outbox_dir
    found: list[tuple[Path, str | None, dict[str, chain.Head]]] = []
    for path in sorted(root.rglob("*.manifest.json")) if root.is_dir() else []:
        if path.name.startswith("."):
            continue  # a part file of an unfinished release
        try:
            manifest = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # shares verify reports a damaged manifest
        if not isinstance(manifest, dict):
            continue
        entry = manifest.get("audit")
        heads = {
            str(name): chain.Head(int(head["seq"]), str(head["hash"]))
            for name, head in (entry.items() if isinstance(entry, dict) else ())
            if isinstance(head, dict)
            and isinstance(head.get("seq"), int)
            and isinstance(head.get("hash"), str)
        }
        share_id = manifest.get("share_id")
        found.append((path, share_id if isinstance(share_id, str) else None, heads))
    return found


__all__ = ["AuditUnreadable", "verify_audit"]
