"""Checking a database URL setting before anything connects with it.

A wrong URL, an unknown database, a driver that is not installed or an asyncio driver (censustrace's
engines are synchronous) each stop start-up with one line and a stable code, instead of a traceback at
first use. A PostgreSQL URL that names no driver (``postgresql://``) means the driver censustrace ships,
psycopg2: SQLAlchemy 2.1's own default, psycopg 3, is not installed.
"""

from __future__ import annotations

from typing import Final

from censustrace.errors import CensustraceError

URL_INVALID: Final = "CT-DB-URL"
DRIVER_MISSING: Final = "CT-DB-DRIVER"
DEFAULT_POSTGRES_DRIVER: Final = "psycopg2"
BACKENDS: Final = ("sqlite", "postgresql")


class DatabaseUrlError(CensustraceError):
    """A database URL setting that cannot work on this install (exit code 2: fix the setting)."""

    code = URL_INVALID
    exit_code = 2


def check_database_url(url: str) -> str:
    """``url`` made explicit (``postgresql://`` gets ``+psycopg2``), or :class:`DatabaseUrlError`. The
    message never shows the password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(
            "not a database URL (expected sqlite:///PATH or postgresql+psycopg2://USER@HOST:PORT/DB)"
        ) from None
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend == "postgres":  # Heroku-style alias SQLAlchemy no longer accepts
        parsed, backend = parsed.set(drivername="postgresql"), "postgresql"
    if backend not in BACKENDS:
        raise DatabaseUrlError(f"{shown}: censustrace runs on SQLite or PostgreSQL, not {backend}")
    if backend == "postgresql" and "+" not in parsed.drivername:
        parsed = parsed.set(drivername=f"postgresql+{DEFAULT_POSTGRES_DRIVER}")
        shown = parsed.render_as_string(hide_password=True)
    try:
        dialect = parsed.get_dialect()
        if getattr(dialect, "is_async", False):
            raise DatabaseUrlError(
                f"{shown}: {parsed.get_driver_name()} is an asyncio driver; use "
                f"{backend}+{DEFAULT_POSTGRES_DRIVER if backend == 'postgresql' else 'pysqlite'}://",
                code=DRIVER_MISSING,
            )
        dialect.import_dbapi()
    except (NoSuchModuleError, ImportError) as exc:
        raise DatabaseUrlError(
            f"{shown}: database driver {parsed.get_driver_name()!r} is not installed ({exc}); "
            f"use postgresql+{DEFAULT_POSTGRES_DRIVER}:// or sqlite:///",
            code=DRIVER_MISSING,
        ) from None
    if backend == "postgresql" and not parsed.database:
        raise DatabaseUrlError(f"{shown}: names no database (…/DATABASE at the end)")
    return parsed.render_as_string(hide_password=False)


def check_http_url(url: str) -> str:
    """An http(s) URL with a host, or :class:`DatabaseUrlError`-like error with code ``CT-URL``."""
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CensustraceError(f"{url[:80]!r} is not an http(s) URL with a host", code="CT-URL")
    return url.strip()
