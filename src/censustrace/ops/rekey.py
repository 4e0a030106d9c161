"""Rotate the pupil-key secret: every stored pupil key re-computed under the new secret, in one
warehouse transaction, so past disclosures and recorded objections stay findable by UPN.

Pupil keys live in ``pupil`` / ``staged_pupil`` (beside the UPN they were made from), in the consent
decisions and in the disclosure log (without the UPN). The map old key -> new key comes from the pupil
rows: each is checked against the current secret first (a wrong current secret changes nothing), and a
key in the disclosure log or the consent decisions that no pupil row explains stops the rotation (it
would become unfindable). See docs/operations.md for the procedure.

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
    old_secret = settings.pupil_key()
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
        with write_transaction(engine) as conn:
            mapping = _mapping(conn, old_secret, new_secret)
            counts = {table.name: _apply(conn, table, mapping) for table, _ in _keyed_tables()}
    except BaseException:
        pending.unlink(missing_ok=True)
        raise
    if not from_env:
        os.replace(pending, secret_file)
    return {
        "pupils": len(mapping),
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
    return mapping


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
