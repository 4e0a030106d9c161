"""The Airflow plugin (cheap import, viewer under /censustrace) and the users/tokens commands."""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from censustrace.cli import app as cli_app
from censustrace.config import get_settings
from censustrace.lineage.store.db import make_engine
from censustrace.viewer import auth

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "home"
    monkeypatch.setenv("CENSUSTRACE_HOME", str(home))
    monkeypatch.setenv("CENSUSTRACE_PUPIL_KEY_SECRET", "plugin-tests")
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


def load_plugin() -> object:
    spec = importlib.util.spec_from_file_location(
        "censustrace_viewer_plugin", REPO / "plugins" / "censustrace_viewer.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_import_opens_no_database_and_mounts_under_a_prefix(fresh_home: Path) -> None:
    plugin = load_plugin()
    viewer_plugin = plugin.CensustraceViewerPlugin  # type: ignore[attr-defined]
    assert not (fresh_home / "lineage.db").exists()
    [mounted] = viewer_plugin.fastapi_apps
    assert mounted["url_prefix"] == "/censustrace"
    assert {view["href"] for view in viewer_plugin.external_views} == {"/censustrace/", "/censustrace/search"}
    # Mounted as Airflow's API server does it.
    airflow = FastAPI()
    airflow.mount(mounted["url_prefix"], mounted["app"])
    with TestClient(airflow) as client:
        assert client.get("/censustrace/api/v1/health").json()["status"] == "ok"
        login = client.get("/censustrace/", follow_redirects=False)
        assert login.headers["location"].startswith("/censustrace/login?next=%2Fcensustrace%2F")
        page = client.get(login.headers["location"])
        assert 'action="/censustrace/login"' in page.text
        assert 'href="/censustrace/static/viewer.css"' in page.text
        assert "Path=/censustrace/" in page.headers["set-cookie"]
        auth.add_user(
            make_engine(get_settings().lineage_db_url), "clara", "compliance", "a long password 123"
        )
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        done = client.post(
            "/censustrace/login",
            data={
                "username": "clara",
                "password": "a long password 123",
                "csrf_token": token.group(1),
                "next": "/censustrace/search",
            },
            follow_redirects=False,
        )
        assert done.headers["location"] == "/censustrace/search"
        assert 'href="/censustrace/shares"' in client.get("/censustrace/search").text


def test_users_and_tokens_commands(fresh_home: Path) -> None:
    runner = CliRunner()
    typed = runner.invoke(
        cli_app, ["users", "add", "clara", "--role", "compliance", "--json"], input="a long typed password\n"
    )
    assert typed.exit_code == 0, typed.output
    assert json.loads(typed.output) == {"user": "clara", "role": "compliance", "password": None}
    generated = runner.invoke(cli_app, ["users", "add", "ed", "--role", "engineer", "--json"], input="")
    password = json.loads(generated.output)["password"]
    assert len(password) >= 12
    engine = make_engine(get_settings().lineage_db_url)
    assert auth.login(engine, "ed", password, "cli")[1].role == "engineer"
    assert auth.login(engine, "clara", "a long typed password", "cli")[1].role == "compliance"
    bad = runner.invoke(cli_app, ["users", "add", "x", "--role", "admin"])
    assert bad.exit_code != 0
    made = runner.invoke(cli_app, ["tokens", "add", "airflow", "--kind", "producer", "--json"])
    token = json.loads(made.output)["token"]
    assert token.startswith("ctp_")
    assert auth.check_token(engine, token) == auth.Principal("airflow", None, "producer")
    listed = runner.invoke(cli_app, ["tokens", "list"]).output
    assert token[:12] in listed
    assert token not in listed
    assert os.environ["CENSUSTRACE_HOME"] == str(fresh_home)
