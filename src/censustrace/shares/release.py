"""Step 3 of a share: release it. **No lineage, no share.**

In this order, each step safe to repeat, one process at a time per share (a lock file beside the
staging folder: two runs or a retried task racing on one share release it once):

0. the share is judged again for the day it leaves (``shares.recheck``): refused today -> blocked, nothing
   sent (CT-SHARE-BLOCKED); policy, agreement or recorded objections changed -> rebuilt first, so a stale
   file is never released;
1. the staged file is checked against the sha256 recorded when it was built (CT-SHARE-TAMPERED);
2. it is copied into the recipient's outbox folder under a hidden name (``.<name>.part``): an outbox
   that cannot be written fails here (CT-SHARE-OUTBOX) with nothing visible;
3. the share's lineage event is committed to the lineage store, synchronously: if the store is
   unreachable or refuses it, the hidden copy is removed and the step fails (CT-SHARE-LINEAGE). The
   event's text is kept on the share row first, so a retry sends the very same event (stored once);
4. the manifest, then the file, are renamed into place (atomic): the file appearing is the release;
5. the share is marked ``delivered`` and sealed in the share register's audit chain in one short
   transaction (``censustrace.audit.register``), and the staged copy removed.

A crash after 4 leaves the file visible and the share ``recorded``: the next call finds the file with
the right sha256 and only marks it delivered, so a retry completes a share exactly once.

Outbox: ``CENSUSTRACE_SHARE_OUTBOX`` (default ``$CENSUSTRACE_HOME/shares/outbox``), one folder per
recipient (its name made safe for a file system).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import update

from censustrace.audit.heads import publish_heads
from censustrace.audit.register import digest_of, seal_share
from censustrace.config import Settings
from censustrace.intake.archive import sha256_of
from censustrace.intake.quarantine import safe_file_name
from censustrace.lineage.emit import run_event
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import file_dataset_name
from censustrace.shares.build import manifest_name, staging_dir
from censustrace.shares.errors import STATE, TAMPERED, ShareError, ShareOutboxError
from censustrace.shares.lineage import (
    commit_event,
    keep_lineage_summary,
    release_job_name,
    release_run_id,
    share_inputs,
    share_output,
)
from censustrace.shares.locks import share_lock
from censustrace.shares.recheck import recheck_for_release
from censustrace.shares.register import ShareRow, find_share
from censustrace.shares.tables import BUILT, DELIVERED, RECORDED, shares
from censustrace.warehouse.db import warehouse_engine, write_transaction


def recipient_dir(settings: Settings, recipient: str | None) -> Path:
    """The recipient's folder in the share outbox."""
    return settings.share_outbox_dir.expanduser().resolve() / safe_file_name(recipient or "unknown-recipient")


def relative_file_path(settings: Settings, target: Path) -> str:
    """How the register records a released file: ``<recipient folder>/<file>`` in the share outbox."""
    return target.relative_to(settings.share_outbox_dir.expanduser().resolve()).as_posix()


def outbox_path(settings: Settings, share: ShareRow) -> Path:
    if not share.file_name:
        raise ShareError(f"share {share.share_id} has no file: it was never built", code=STATE)
    return recipient_dir(settings, share.recipient) / share.file_name


def release_lineage(settings: Settings, share: ShareRow) -> StepLineage:
    """The exact warehouse versions read -> the file in the recipient's outbox (version = sha256)."""
    target = file_dataset_name(outbox_path(settings, share))
    return StepLineage(inputs=share_inputs(settings, share), outputs=[share_output(settings, share, target)])


def release_share(share_id: str, settings: Settings, *, lineage: StepLineage | None = None) -> dict[str, Any]:
    """Release a built share (see the module docstring); returns ``censustrace share ID --json``."""
    with share_lock(settings, share_id):
        share = find_share(settings, share_id)
        if share.status not in (BUILT, RECORDED, DELIVERED):
            raise ShareError(
                f"share {share_id} is {share.status}: only a built share can be released", code=STATE
            )
        target = outbox_path(settings, share)
        if share.status != DELIVERED:
            if not target.is_file():  # not out yet: judged again for today, rebuilt if stale
                share = recheck_for_release(settings, share)
                target = outbox_path(settings, share)
            _release(settings, share, target)
            share = find_share(settings, share_id)
    if share.status == DELIVERED and not target.is_file():
        raise ShareError(
            f"share {share_id} is delivered but {target.name} is not in the outbox (see shares verify)",
            code=TAMPERED,
        )
    if lineage is not None:
        lineage.extend(release_lineage(settings, share))
    return share.summary()


def _release(settings: Settings, share: ShareRow, target: Path) -> None:
    staged = staging_dir(settings, share.share_id)
    manifest = target.with_name(manifest_name(target.name))
    visible = target.is_file()
    if visible and sha256_of(target) != share.sha256:
        raise ShareError(
            f"share {share.share_id}: a different file is already in the outbox as {target.name}; "
            "nothing was released",
            code=TAMPERED,
        )
    if not visible:
        source = staged / (share.file_name or "")
        if not source.is_file() or sha256_of(source) != share.sha256:
            raise ShareError(
                f"share {share.share_id}: the staged file {source.name} is missing or no longer matches "
                "the sha256 recorded when it was built; build the share again",
                code=TAMPERED,
            )
        parts = [
            (staged / manifest_name(source.name), _part(manifest)),
            (source, _part(target)),
        ]
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            for origin, part in parts:
                _copy(origin, part)
        except OSError as exc:
            _discard(part for _, part in parts)
            raise ShareOutboxError(
                f"share {share.share_id}: cannot write to the outbox folder {target.parent} "
                f"({exc.strerror or type(exc).__name__}); nothing was released"
            ) from exc
        try:
            _commit_lineage(settings, share)
        except BaseException:
            _discard(part for _, part in parts)
            raise
        os.replace(_part(manifest), manifest)
        os.replace(_part(target), target)  # the release
        _fsync_dir(target.parent)
    else:
        _commit_lineage(settings, share)  # visible already: make sure its event is committed
    now = dt.datetime.now(dt.UTC)
    engine = warehouse_engine(settings.warehouse_db_url)
    digest = digest_of(engine, share.share_id)  # outside the sealing transaction: it reads every row
    with write_transaction(engine) as conn:
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share.share_id, shares.c.status != DELIVERED)
            # Relative to the share outbox: a home moved or restored elsewhere still finds it.
            .values(status=DELIVERED, file_path=relative_file_path(settings, target), delivered_at=now)
        )
        seal_share(conn, share.share_id, digest)  # the audit chain, in the same short transaction
    publish_heads(settings)
    # The pupil data now lives in the outbox only; the manifest stays for the record.
    (staged / (share.file_name or "")).unlink(missing_ok=True)
    keep_lineage_summary(settings, str(target), share.sha256 or "")


def _commit_lineage(settings: Settings, share: ShareRow) -> None:
    """Commit the release event (the same text on every attempt), then mark the share recorded."""
    engine = warehouse_engine(settings.warehouse_db_url)
    payload = share.lineage_event
    if payload is None:
        step = release_lineage(settings, share)
        run_id = release_run_id(share.share_id)
        payload = run_event(settings, release_job_name(share.agreement_id), step, run_id=run_id)
        with write_transaction(engine) as conn:
            conn.execute(
                update(shares)
                .where(shares.c.share_id == share.share_id, shares.c.lineage_event.is_(None))
                .values(lineage_event=payload, lineage_run_id=run_id)
            )
        payload = find_share(settings, share.share_id).lineage_event or payload
    commit_event(settings, payload)
    with write_transaction(engine) as conn:
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share.share_id, shares.c.status == BUILT)
            .values(status=RECORDED, recorded_at=dt.datetime.now(dt.UTC))
        )


def _part(path: Path) -> Path:
    return path.with_name(f".{path.name}.part")


def _copy(source: Path, destination: Path) -> None:
    with source.open("rb") as src, destination.open("wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
        dst.flush()
        os.fsync(dst.fileno())


def _discard(paths: Any) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["outbox_path", "recipient_dir", "release_lineage", "release_share"]
