"""A durable outbox for lineage events that could not be delivered yet.

One folder per destination under ``$CENSUSTRACE_HOME/outbox``. An event that a destination could not
take is written there (atomically) with a small metadata file; ``drain`` retries it later. A destination
that *rejects* an event (it is malformed for that backend) moves it to ``failed/`` so it is not retried
forever, but it is still kept and shown by ``censustrace lineage status``: nothing is dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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

    def _record_attempt(self, path: Path, error: str) -> None:
        meta_path = self._meta_path(path)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
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
                    meta_path = self._meta_path(path)
                    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
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
        """Retry pending events for one destination, oldest first; stop at the first transient failure."""
        delivered = rejected = 0
        pending = [e for e in self.entries(destination) if not e.failed]
        for entry in pending[:limit]:
            payload = entry.path.read_text(encoding="utf-8")
            try:
                deliver(payload)
            except DeliveryRejected as exc:
                self.enqueue(destination, payload, str(exc), failed=True)
                entry.path.unlink()
                self._meta_path(entry.path).unlink(missing_ok=True)
                rejected += 1
                continue
            except Exception as exc:
                # Still unreachable: keep order, try again next time.
                self._record_attempt(entry.path, f"{type(exc).__name__}: {exc}")
                break
            entry.path.unlink()
            self._meta_path(entry.path).unlink(missing_ok=True)
            delivered += 1
        remaining = sum(1 for e in self.entries(destination) if not e.failed)
        return {"delivered": delivered, "rejected": rejected, "pending": remaining}
