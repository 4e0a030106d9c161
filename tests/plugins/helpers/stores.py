"""Losing a store, as a restore drill does."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url

from censustrace.warehouse.db import dispose_engines


def wipe_store(url: str) -> None:
    """Lose a store: delete the SQLite file, or drop and recreate the PostgreSQL database."""
    dispose_engines()
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    from sqlalchemy import create_engine, text

    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{parsed.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()
