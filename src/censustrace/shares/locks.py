"""One process at a time per share: an exclusive lock file per share id (``shares/locks/<id>.lock``).

Two runs of one share DAG, or a task retried while its first attempt still runs, may build or release
the same share at once; the lock makes them take turns, and the second finds the work done. Re-entrant
within a thread (the release step rebuilds a stale share while it holds the lock). The lock is an
``flock`` on the shared home: one host, or a file system with working ``flock`` (docs/shares.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator

from censustrace.config import Settings

_held = threading.local()


@contextlib.contextmanager
def share_lock(settings: Settings, share_id: str) -> Iterator[None]:
    held: set[str] = getattr(_held, "ids", set())
    _held.ids = held
    if share_id in held:
        yield
        return
    folder = settings.shares_dir / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{share_id}.lock").open("a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        held.add(share_id)
        try:
            yield
        finally:
            held.discard(share_id)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


__all__ = ["share_lock"]
