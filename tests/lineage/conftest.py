"""Lineage store fixtures: every store test runs on SQLite (a temp file) and on PostgreSQL.

PostgreSQL: a fresh database ``censustrace_test_<random>`` is created on the server at
``$CENSUSTRACE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
for the session and dropped at the end. If the server is unreachable the postgres tests are skipped
with the reason shown, or fail when ``CI=true``.

Self-contained (only ``censustrace`` and ``pytest``), so it can move to the top-level conftest as it is.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

# The viewer's tables live in the lineage store's database and metadata: cleared and compared with it.
import censustrace.viewer.tables  # noqa: F401
from censustrace.lineage.store.db import make_engine, upgrade
from censustrace.lineage.store.tables import metadata


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, session-wide lineage store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'lineage.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return str(url)


def empty_store(engine: Engine) -> None:
    """Delete every row (tests share one database per backend)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(table.name for table in metadata.sorted_tables)
            # A connection a test forgot to close would make TRUNCATE wait forever: fail instead.
            conn.execute(text("SET LOCAL lock_timeout = '10s'"))
            # The evidence tables refuse TRUNCATE (and the access log DELETE): tests clear them as a
            # replica would, with triggers off.
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            # The evidence tables' triggers refuse DELETE: set them aside while clearing.
            triggers = conn.execute(text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'")).all()
            for name, _ in triggers:
                conn.execute(text(f'DROP TRIGGER "{name}"'))
            for table in reversed(metadata.sorted_tables):
                conn.execute(table.delete())
            for _, sql in triggers:
                conn.execute(text(sql))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on an empty lineage store."""
    store = make_engine(db_url)
    empty_store(store)
    yield store
    store.dispose()


@pytest.fixture(scope="session")
def api_url(db_url: str) -> Iterator[str]:
    """Base URL of the lineage API served by a real uvicorn on 127.0.0.1 (a free port) over ``db_url``."""
    import uvicorn

    from censustrace.config import Settings
    from censustrace.viewer.lineage_api import create_app

    app = create_app(Settings(lineage_url=db_url), migrate=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="lineage-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the lineage API did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)
