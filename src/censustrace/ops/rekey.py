"""Rotate the pupil-key secret: every stored pupil key re-computed under the new secret, in one
warehouse transaction, so past disclosures and recorded objections stay findable by UPN.

Pupil keys live in ``pupil`` / ``staged_pupil`` (beside the UPN they were made from), in the consent
decisions and in the disclosure log (without the UPN). The map old key -> new key comes from the pupil
rows: each is checked against the current secret first (a wrong current secret changes nothing). A
decision whose key no pupil row explains (an objection for a pupil not seen yet, or one made under a
former UPN) is re-keyed from the UPN in its archived consent file. A key in the disclosure log or the
consent decisions that neither explains stops the rotation (it would become unfindable). The access log's
pupil keys (lookups) are re-keyed too, and a chained ``rekey`` record appended; pupil keys are outside
every audit hash, so both chains stay valid (a lookup of a UPN no pupil row holds keeps its old key). See
docs/operations.md for the procedure.

What a new secret does NOT change: files already sent. Pseudonyms in research shares are keyed by the
secret too, so shares after the rotation carry new pseudonyms (a recipient cannot link them to earlier
files: tell recipients who link across deliveries before rotating).
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, Table, bindparam, func, select, update

from censustrace.audit.heads import publish_heads, store_engine
from censustrace.audit.log import append_access, os_actor
from censustrace.audit.tables import access_log
from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.warehouse.db import warehouse_engine, write_transaction

SECRET_FILE: Final = "pupil-key.secret"  # noqa: S105 (a file name, not a secret)
PENDING_SUFFIX: Final = ".new"
_BATCH: Final = 1000


class RekeyError(CensustraceError):
    code = "CT-REKEY"


def _key(secret: bytes, upn: str) -> str:
    return hmac.digest(secret, upn.encode(), "sha256").hex()


def _keyed_tables() -> tuple[tuple[Table, bool], ...]:
    """Tables holding pupil keys: (table, has the UPN beside the key)."""
    from censustrace.compliance.tables import article19_notices, subject_lookups
    from censustrace.consent.tables import consent_decisions
    from censustrace.shares.tables import disclosures
    from censustrace.warehouse.tables import pupil, staged_pupil

    return (
        (pupil, True),
        (staged_pupil, True),
        (consent_decisions, False),
        (disclosures, False),
        (subject_lookups, False),
        (article19_notices, False),
    )


def rekey(settings: Settings, new_secret: bytes) -> dict[str, Any]:
    """Re-key every stored pupil key from the current secret to ``new_secret``; returns counts.

    With a generated secret (``$CENSUSTRACE_HOME/pupil-key.secret``) the new one is written there; with
    ``CENSUSTRACE_PUPIL_KEY_SECRET`` set, the caller must set it to the new value before the next run."""
    old_secret = settings.pupil_key_secret_value()
    new_secret = new_secret.strip()
    if hmac.compare_digest(old_secret, new_secret):
        raise RekeyError("the new secret is the current one: nothing to rotate")
    if len(new_secret) < 32:
        raise RekeyError("the new secret is too short: use at least 32 characters (e.g. 64 hex digits)")
    from_env = settings.pupil_key_secret is not None
    secret_file = settings.home / SECRET_FILE
    pending = secret_file.with_name(SECRET_FILE + PENDING_SUFFIX)
    if not from_env:
        if pending.exists():
            raise RekeyError(
                f"{pending} exists: an earlier rotation stopped after its commit; see docs/operations.md"
            )
        _write_private(pending, new_secret)
    engine = warehouse_engine(settings.warehouse_db_url)
    try:
        # The access log (lineage store) is re-keyed in a transaction that commits right after the
        # warehouse's, with a chained "rekey" record: a failed warehouse commit rolls both back.
        with write_transaction(store_engine(settings)) as log_conn, write_transaction(engine) as conn:
            mapping = _mapping(conn, old_secret, new_secret)
            rekeyed = _pending_decisions(conn, settings, old_secret, new_secret, mapping)
            counts = {table.name: _apply(conn, table, mapping) for table, _ in _keyed_tables()}
            logged = {k for (k,) in log_conn.execute(select(access_log.c.pupil_key).distinct()) if k}
            counts[access_log.name] = _apply(
                log_conn, access_log, {k: mapping[k] for k in logged & set(mapping)}
            )
            append_access(
                log_conn,
                os_actor(),
                "rekey",
                f"pupil keys rotated: {len(mapping)} pupils",
                result_counts=[len(mapping)],
            )
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    publish_heads(settings)
    if not from_env:
        os.replace(pending, secret_file)
    return {
        "pupils": len(mapping) - rekeyed,
        "pending_keys": rekeyed,  # decisions' keys of pupils not seen (or former UPNs), from the archive
        "rows": counts,
        "secret": "CENSUSTRACE_PUPIL_KEY_SECRET: set it to the new value now"
        if from_env
        else str(secret_file),
    }


def _mapping(conn: Connection, old: bytes, new: bytes) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for table, has_upn in _keyed_tables():
        if not has_upn:
            continue
        rows = conn.execute(
            select(table.c.pupil_key, table.c.upn).where(table.c.pupil_key.is_not(None)).distinct()
        )
        for key, upn in rows:
            if key != _key(old, upn):
                raise RekeyError(
                    f"a pupil key in {table.name} was not made with the current secret: check "
                    "CENSUSTRACE_PUPIL_KEY_SECRET / pupil-key.secret; nothing changed"
                )
            mapping[key] = _key(new, upn)
    return mapping


def _pending_decisions(
    conn: Connection, settings: Settings, old: bytes, new: bytes, mapping: dict[str, str]
) -> int:
    """Add the keys of decisions no pupil row explains, from their archived consent files; then refuse
    if any stored key is still unexplained."""
    from censustrace.consent.objections import decision_upns
    from censustrace.consent.tables import consent_decisions as d

    rows = [
        (file_id, number, key)
        for file_id, number, key in conn.execute(select(d.c.consent_file_id, d.c.row_number, d.c.pupil_key))
        if key not in mapping
    ]
    upns = decision_upns(conn, settings.archive_dir, [(f, n) for f, n, _ in rows])
    added = 0
    for file_id, number, key in rows:
        upn = upns.get((file_id, number))
        if upn is not None and _key(old, upn) == key and key not in mapping:
            mapping[key] = _key(new, upn)
            added += 1
    for table, has_upn in _keyed_tables():
        if has_upn:
            continue
        unknown = 0
        for (key,) in conn.execute(select(table.c.pupil_key).distinct()):
            unknown += key not in mapping
        if unknown:
            raise RekeyError(
                f"{unknown} pupil keys in {table.name} match no pupil row: they would become unfindable; "
                "nothing changed"
            )
    return added


def _apply(conn: Connection, table: Table, mapping: dict[str, str]) -> int:
    present = conn.execute(select(func.count()).select_from(table).where(table.c.pupil_key.is_not(None)))
    statement = (
        update(table)
        .where(table.c.pupil_key == bindparam("b_old"))
        .values(pupil_key=bindparam("b_new"))
        .execution_options(synchronize_session=False)
    )
    params = [{"b_old": old, "b_new": new} for old, new in mapping.items()]
    # Old and new keys never collide (different HMAC secrets), so the order of updates is free.
    for start in range(0, len(params), _BATCH):
        conn.execute(statement, params[start : start + _BATCH])
    return int(present.scalar_one())


def _write_private(path: Path, secret: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(secret)
        fh.flush()
        os.fsync(fh.fileno())
