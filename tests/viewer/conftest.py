"""Viewer fixtures: a home filled by the real pipeline code, users of each role, an in-process client
(TestClient) and a real server (uvicorn on a free port) for the browser tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from censustrace.config import Settings
from censustrace.viewer import auth
from censustrace.viewer.app import create_viewer_app
from tests.plugins.helpers.viewer import PASSWORD, USERS, Home, Server, log_in
from tests.viewer.pipeline import fill_home, make_shares


@pytest.fixture(scope="session")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    """One home for the viewer tests (SQLite stores): 3 schools' census ingested, lineage in the store,
    a user per role."""
    root = tmp_path_factory.mktemp("viewer-home")
    settings = Settings(home=root / "home", pupil_key_secret="viewer-tests")  # type: ignore[arg-type]
    filled = fill_home(settings, root / "sample", pupils=30)
    filled.shares = make_shares(settings)
    app = create_viewer_app(settings)
    engine = app.state.viewer.engine()
    for name, role in USERS.items():
        auth.add_user(engine, name, role, PASSWORD)
    return Home(settings, filled, app)


@pytest.fixture
def client(home: Home) -> Iterator[TestClient]:
    """A fresh (cookie-less) browser-like client on the viewer."""
    with TestClient(home.app) as test_client:
        yield test_client


@pytest.fixture
def as_user(home: Home) -> Iterator[Callable[[str], TestClient]]:
    """``as_user("clara")``: a client logged in as that user."""
    opened: list[TestClient] = []

    def make(name: str) -> TestClient:
        test_client = TestClient(home.app)
        opened.append(test_client)
        response = log_in(test_client, name)
        assert response.status_code == 303, response.text
        return test_client

    yield make
    for test_client in opened:
        test_client.close()


@pytest.fixture(scope="session")
def server(home: Home) -> Iterator[Server]:
    """The viewer served by a real uvicorn on 127.0.0.1 (a free port)."""
    import uvicorn

    config = uvicorn.Config(
        create_viewer_app(home.settings), host="127.0.0.1", port=0, log_level="warning", access_log=False
    )
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, name="viewer", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the viewer did not start")
        time.sleep(0.01)
    port = uv.servers[0].sockets[0].getsockname()[1]
    yield Server(f"http://127.0.0.1:{port}", home)
    uv.should_exit = True
    thread.join(timeout=10)
