"""Engines and migrations for the warehouse (SQLite or PostgreSQL); the generic parts are in
``censustrace.db``."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.engine import URL, make_url

from censustrace.db import current_revision as _revision
from censustrace.db import make_engine, run_migrations, write_transaction

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: Our own name, so the warehouse can share a database with other Alembic-managed schemas.
VERSION_TABLE: Final = "warehouse_alembic_version"
# An arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrade() calls.
UPGRADE_LOCK_KEY: Final = 0x57484F55


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Create or migrate the warehouse at ``url`` to ``revision``. Safe to call at every start."""
    run_migrations(url, MIGRATIONS_DIR, UPGRADE_LOCK_KEY, revision)


def downgrade(url: str | URL, revision: str) -> None:
    """Migrate the warehouse at ``url`` down to ``revision`` (``"base"``: drop everything)."""
    run_migrations(url, MIGRATIONS_DIR, UPGRADE_LOCK_KEY, revision, downgrade=True)


def current_revision(engine: Engine) -> str | None:
    """The warehouse's Alembic revision, None if it was never migrated."""
    return _revision(engine, VERSION_TABLE)


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def warehouse_engine(url: str | URL) -> Engine:
    """The process-wide engine for the warehouse at ``url``, migrated to head on first use.

    Use cases call this for every file, so the migration check runs once per process, not per file."""
    key = make_url(url).render_as_string(hide_password=False)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            upgrade(key)
            engine = _engines[key] = make_engine(key)
        return engine


def sqlite_staging_engine(url: str) -> Engine:
    """SQLite only: the staging connection of this process, always the same DBAPI connection
    (StaticPool), so that a spool attached to it is still there when its write transaction begins."""
    import os

    from sqlalchemy.pool import StaticPool

    key = f"staging:{os.getpid()}:{url}"  # a forked process opens its own
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _engines[key] = make_engine(url, poolclass=StaticPool)
        return engine


def dispose_engines() -> None:
    """Close every cached engine, staging connections included (tests; a restore; before a fork)."""
    with _engines_lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "current_revision",
    "dispose_engines",
    "downgrade",
    "make_engine",
    "upgrade",
    "warehouse_engine",
    "write_transaction",
]
