"""Engines and migrations for the lineage store (SQLite or PostgreSQL); the generic parts are in
``censustrace.db``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from censustrace.db import current_revision as _revision
from censustrace.db import make_engine, run_migrations, write_transaction

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: Our own name, so the lineage store can share a database with other Alembic-managed schemas.
VERSION_TABLE: Final = "lineage_alembic_version"
# An arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrade() calls.
_UPGRADE_LOCK_KEY: Final = 0x4C494E45


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Create or migrate the lineage store at ``url`` to ``revision``. Safe to call at every start."""
    run_migrations(url, MIGRATIONS_DIR, _UPGRADE_LOCK_KEY, revision)


_shared: dict[str, Engine] = {}
_shared_lock = threading.Lock()


def shared_engine(url: str) -> Engine:
    """This process's engine on the store at ``url``, migrated once when first asked for (the pipeline's
    bulk lineage and a share's release both write every event through it)."""
    with _shared_lock:
        engine = _shared.get(url)
        if engine is None:
            upgrade(url)
            engine = _shared[url] = make_engine(url)
        return engine


def drop_shared_engine(url: str | None = None) -> None:
    """Forget (and close) the shared engine on ``url``, or every one: after a failure the next use
    connects afresh; before a restore no engine of this process keeps the old store open."""
    with _shared_lock:
        stale = [_shared.pop(url, None)] if url is not None else list(_shared.values())
        if url is None:
            _shared.clear()
    for engine in stale:
        if engine is not None:
            engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, None if it was never migrated."""
    return _revision(engine, VERSION_TABLE)


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "current_revision",
    "drop_shared_engine",
    "make_engine",
    "shared_engine",
    "upgrade",
    "write_transaction",
]
