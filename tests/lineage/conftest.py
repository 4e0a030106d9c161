"""Lineage store fixtures: every store test runs on SQLite (a temp file) and on PostgreSQL.

PostgreSQL: a fresh database ``censustrace_test_<random>`` is created on the server at
``$CENSUSTRACE_TEST_POSTGRES_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
for the session and dropped at the end. If the server is unreachable the postgres tests are skipped
with the reason shown, or fail when ``CI=true``.

Only the lineage tests use these fixtures; ``empty_store`` is shared with the share fixtures.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from censustrace.lineage.store.db import make_engine, upgrade
from tests.plugins.helpers.lineage_store import empty_store


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated, session-wide lineage store: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('lineage') / 'lineage.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    upgrade(url)
    return str(url)


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
