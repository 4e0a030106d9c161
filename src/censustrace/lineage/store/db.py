"""Engines and migrations for the lineage store (SQLite or PostgreSQL); the generic parts are in
``censustrace.db``."""

from __future__ import annotations

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


def current_revision(engine: Engine) -> str | None:
    """The store's Alembic revision, None if it was never migrated."""
    return _revision(engine, VERSION_TABLE)


__all__ = [
    "MIGRATIONS_DIR",
    "VERSION_TABLE",
    "current_revision",
    "make_engine",
    "upgrade",
    "write_transaction",
]
