"""A durable outbox for lineage events that could not be delivered yet.

One folder per destination under ``$CENSUSTRACE_HOME/outbox``. An event that a destination could not
take is written there (atomically) with a small metadata file; ``drain`` retries it later. A destination
that *rejects* an event (it is malformed for that backend) moves it to ``failed/`` so it is not retried
forever, but it is still kept and shown by ``censustrace lineage status``: nothing is dropped silently.

Several processes drain the same outbox (every Airflow worker, the viewer, ``lineage flush``). Each entry
is claimed with an exclusive, non-blocking ``flock`` on its file before it is read: a drainer skips an
entry another one holds, and one whose file was removed (delivered) since it was listed. The file is
removed only after its destination took it, while the lock is held, so an event is never both gone and
undelivered; a drainer that dies releases its locks with its process.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

FAILED = "failed"


class DeliveryRejected(Exception):
    """The destination answered and refused the event: retrying the same bytes will not help."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    destination: str
    path: Path
    attempts: int
    last_error: str
    first_failed_at: str
    failed: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "destination": self.destination,
            "file": self.path.name,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "first_failed_at": self.first_failed_at,
            "state": "failed" if self.failed else "pending",
        }


def _write_atomic(path: Path, data: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Outbox:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _folder(self, destination: str, failed: bool = False) -> Path:
        folder = self.root / destination
        return folder / FAILED if failed else folder

    def enqueue(self, destination: str, payload: str, error: str, *, failed: bool = False) -> Path:
        """Keep ``payload`` for ``destination`` (to retry, or as rejected); kept once if enqueued twice."""
        folder = self._folder(destination, failed)
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        existing = sorted(folder.glob(f"*-{key}.json"))
        path = existing[0] if existing else folder / f"{stamp}-{key}.json"
        if not existing:
            _write_atomic(path, payload)
        self._record_attempt(path, error)
        return path

    def _meta_path(self, path: Path) -> Path:
        return path.with_suffix(".meta")

    def _read_meta(self, path: Path) -> dict[str, Any]:
        # Another drainer may remove it (delivered) between listing and reading.
        try:
            meta = json.loads(self._meta_path(path).read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}

    def _record_attempt(self, path: Path, error: str) -> None:
        meta_path = self._meta_path(path)
        meta = self._read_meta(path)
        meta["attempts"] = int(meta.get("attempts", 0)) + 1
        meta["last_error"] = error[:500]
        meta.setdefault("first_failed_at", datetime.now(UTC).isoformat())
        _write_atomic(meta_path, json.dumps(meta))

    def entries(self, destination: str | None = None) -> list[OutboxEntry]:
        if not self.root.is_dir():
            return []
        names = [destination] if destination else sorted(p.name for p in self.root.iterdir() if p.is_dir())
        out = []
        for name in names:
            for failed in (False, True):
                for path in sorted(self._folder(name, failed).glob("*.json")):
                    meta = self._read_meta(path)
                    out.append(
                        OutboxEntry(
                            destination=name,
                            path=path,
                            attempts=int(meta.get("attempts", 0)),
                            last_error=str(meta.get("last_error", "")),
                            first_failed_at=str(meta.get("first_failed_at", "")),
                            failed=failed,
                        )
                    )
        return out

    def drain(
        self, destination: str, deliver: Callable[[str], None], limit: int | None = None
    ) -> dict[str, int]:
        """Retry pending events for one destination, oldest first; stop at the first transient failure.
        Entries another drainer holds are left to it (see the module docstring)."""
        delivered = rejected = 0
        pending = [e for e in self.entries(destination) if not e.failed]
        for entry in pending[:limit]:
            claimed = _claim(entry.path)
            if claimed is None:
                continue  # being delivered by another drainer, or already delivered
            with claimed as fh:
                payload = fh.read()
                try:
                    deliver(payload)
                except DeliveryRejected as exc:
                    self.enqueue(destination, payload, str(exc), failed=True)
                    self._remove(entry.path)
                    rejected += 1
                    continue
                except Exception as exc:
                    # Still unreachable: keep order, try again next time.
                    self._record_attempt(entry.path, f"{type(exc).__name__}: {exc}")
                    break
                self._remove(entry.path)
                delivered += 1
        remaining = sum(1 for e in self.entries(destination) if not e.failed)
        return {"delivered": delivered, "rejected": rejected, "pending": remaining}

    def _remove(self, path: Path) -> None:
        """Remove a delivered entry (its lock still held by the caller)."""
        path.unlink(missing_ok=True)
        self._meta_path(path).unlink(missing_ok=True)


def _claim(path: Path) -> TextIO | None:
    """The entry's file, open and exclusively locked, or None if another drainer holds it or it was
    removed since it was listed."""
    try:
        fh = path.open(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        return None
    if os.fstat(fh.fileno()).st_nlink == 0:  # delivered and removed before we got the lock
        fh.close()
        return None
    return fh
