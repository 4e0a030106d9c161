"""Migrations of the viewer's tables, kept in the lineage store's database (``settings.lineage_db_url``)
beside the lineage store's own, under their own Alembic chain and version table."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from censustrace.db import current_revision as _revision
from censustrace.db import run_migrations

MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
#: Our own name: the lineage store's chain keeps its revision in ``lineage_alembic_version``.
VERSION_TABLE: Final = "viewer_alembic_version"
# An arbitrary constant: the PostgreSQL advisory lock that serialises concurrent upgrade() calls.
_UPGRADE_LOCK_KEY: Final = 0x56494557


def upgrade(url: str | URL, revision: str = "head") -> None:
    """Create or migrate the viewer's tables in the database at ``url`` to ``revision``. Safe to call at
    every start; run it after the lineage store's ``upgrade`` on the same URL."""
    run_migrations(url, MIGRATIONS_DIR, _UPGRADE_LOCK_KEY, revision)


def current_revision(engine: Engine) -> str | None:
    """The viewer chain's Alembic revision, None if it never ran."""
    return _revision(engine, VERSION_TABLE)


__all__ = ["MIGRATIONS_DIR", "VERSION_TABLE", "current_revision", "upgrade"]
