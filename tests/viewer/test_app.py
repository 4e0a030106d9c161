"""The viewer over HTTP (in-process): login, sessions, CSRF, roles, tokens, escaping, 404s, Data Docs,
and the lineage API behind tokens."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import timedelta
from html import escape
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape as markup_escape
from sqlalchemy import update
from starlette.routing import Mount, Route

from censustrace.viewer import auth
from censustrace.viewer.tables import sessions
from tests.plugins.helpers.viewer import PASSWORD, Home, csrf_of, loaded_pupil_table, log_in

from .pipeline import ALLOWED, BLOCKED

UserClient = Callable[[str], TestClient]


# No answers without login --------------------------------------------------------------------------------
OPEN = {"/api/v1/health", "/login", "/static"}


def test_nothing_but_health_login_and_static_files_answers_without_login(client: TestClient) -> None:
    checked = 0
    for route in client.app.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount):
            assert route.path in OPEN
            continue
        assert isinstance(route, Route)
        path = re.sub(r"\{[^}]+\}", "x", route.path)
        for method in sorted((route.methods or set()) - {"HEAD"}):
            response = client.request(method, path, follow_redirects=False)
            checked += 1
            if route.path in OPEN:
                assert response.status_code < 400 or method == "POST", (method, path)
                continue
            if path.startswith("/api/") or path == "/openapi.json":
                assert response.status_code == 401, (method, path, response.status_code)
            else:
                # Pages send the visitor to the login page; POST forms are refused first by CSRF/login.
                assert response.status_code in (303, 401, 403), (method, path, response.status_code)
                if response.status_code == 303:
                    assert urlsplit(response.headers["location"]).path == "/login"
    assert checked > 15
    assert client.get("/api/v1/health").json() == {"status": "ok", "database": "ok"}


# Login ----------------------------------------------------------------------------------------------
def test_login_page_is_labelled_and_sets_a_safe_session_cookie(home: Home) -> None:
    with TestClient(home.app, base_url="https://viewer.example") as secure:
        page = secure.get("/login")
        assert '<label for="username">' in page.text
        assert '<label for="password">' in page.text
        response = log_in(secure, "clara")
        assert response.status_code == 303
        cookie = response.headers["set-cookie"].lower()
        assert "ct_session=" in cookie
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        assert "secure" in cookie
    with TestClient(home.app) as plain:
        cookie = log_in(plain, "clara").headers["set-cookie"].lower()
        assert "httponly" in cookie
        assert "secure" not in cookie.split("ct_login_csrf")[0]


def test_wrong_password_and_unknown_user_look_the_same(client: TestClient) -> None:
    wrong = log_in(client, "clara", "wrong password!!")
    unknown = log_in(client, "nobody-at-all", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert auth.WRONG_LOGIN in wrong.text
    assert auth.WRONG_LOGIN in unknown.text
    assert "ct_session" not in wrong.headers.get("set-cookie", "")


def test_repeated_failures_are_rate_limited(home: Home, client: TestClient) -> None:
    auth.add_user(home.app.state.viewer.engine(), "rita", "auditor", PASSWORD)
    for _ in range(auth.MAX_FAILURES_PER_NAME):
        assert log_in(client, "rita", "guessing wrong").status_code == 401
    limited = log_in(client, "rita", PASSWORD)
    assert limited.status_code == 429
    assert auth.TOO_MANY in limited.text


def test_login_and_logout_need_the_csrf_token(client: TestClient, as_user: UserClient) -> None:
    client.get("/login")
    missing = client.post("/login", data={"username": "clara", "password": PASSWORD}, follow_redirects=False)
    assert missing.status_code == 403
    assert "CSRF" in missing.text
    clara = as_user("clara")
    assert clara.post("/logout", data={}, follow_redirects=False).status_code == 403
    assert clara.get("/", follow_redirects=False).status_code == 200  # still logged in
    token = csrf_of(clara.get("/").text)
    out = clara.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert out.status_code == 303
    assert clara.get("/", follow_redirects=False).status_code == 303


def test_an_expired_session_goes_back_to_login_with_a_notice(home: Home, as_user: UserClient) -> None:
    ed = as_user("ed")
    assert ed.get("/", follow_redirects=False).status_code == 200
    stale = auth.stamp(auth.now() - timedelta(minutes=home.settings.viewer_session_minutes + 1))
    with home.app.state.viewer.engine().begin() as conn:
        conn.execute(update(sessions).values(last_seen_at=stale))
    response = ed.get("/search?q=pupil", follow_redirects=False)
    assert response.status_code == 303
    target = urlsplit(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query) == {
        "next": ["/search?q=pupil"],
        "expired": ["1"],
    }
    assert "Your session has expired" in ed.get(response.headers["location"]).text


def test_login_only_redirects_inside_the_app(client: TestClient) -> None:
    page = client.get("/login?next=https://evil.example/")
    response = client.post(
        "/login",
        data={
            "username": "clara",
            "password": PASSWORD,
            "csrf_token": csrf_of(page.text),
            "next": "//evil.example",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


# Roles ----------------------------------------------------------------------------------------------
def test_compliance_and_auditors_read_the_access_log(as_user: UserClient) -> None:
    for name in ("clara", "audrey"):
        page = as_user(name).get("/access-log")
        assert page.status_code == 200
        assert "user.add" in page.text  # user changes are logged (the fixture's users)
    page = as_user("ed").get("/access-log")
    assert page.status_code == 403
    assert "may not read the access log" in page.text


# Pages ----------------------------------------------------------------------------------------------
def test_dataset_page_shows_the_census_facet_and_links_to_the_trace(home: Home, as_user: UserClient) -> None:
    namespace, name, version, _sha = loaded_pupil_table(home)
    page = as_user("ed").get("/dataset", params={"ns": namespace, "name": name, "version": version})
    assert page.status_code == 200
    assert "Received census file" in page.text
    assert "school_census_xml" in page.text
    assert escape(f"/trace?ns={quote(namespace, safe='')}", quote=True) in page.text or "/trace?" in page.text


def test_trace_page_draws_the_graph_back_to_the_received_file(home: Home, as_user: UserClient) -> None:
    namespace, name, version, sha = loaded_pupil_table(home)
    page = as_user("audrey").get("/trace", params={"ns": namespace, "name": name, "version": version})
    assert page.status_code == 200
    svg = page.text[page.text.index("<svg") : page.text.index("</svg>")]
    assert f"sha256 {sha}" in svg
    assert f"sha256 {sha[:16]}" in svg
    assert "census_ingest.ingest.publish" in svg
    assert 'class="node node-source"' in svg
    table = page.text[page.text.index('<table class="sources">') :]
    assert sha in table
    assert "3304000" in table
    assert "AUT 2026" in table


def test_run_and_job_pages(home: Home, as_user: UserClient) -> None:
    clara = as_user("clara")
    job = clara.get(
        "/job", params={"ns": home.settings.lineage_namespace, "name": "census_ingest.ingest.publish"}
    )
    assert job.status_code == 200
    assert "Runs, latest first" in job.text
    run_id = re.search(r'href="/runs/([0-9a-f-]{36})"', job.text)
    assert run_id
    run = clara.get(f"/runs/{run_id.group(1)}")
    assert run.status_code == 200
    assert "Wrote" in run.text
    assert ".pupil" in run.text


def test_data_quality_assertions_and_data_docs(home: Home, as_user: UserClient) -> None:
    # The pipeline's validations wrote real Data Docs pages: the index lists the suites.
    index = home.settings.data_docs_dir / "index.html"
    assert index.is_file()
    (home.settings.home / "secret.txt").write_text("not for the web")
    clara = as_user("clara")
    served = clara.get("/data-docs/index.html")
    assert served.status_code == 200
    assert served.text == index.read_text(encoding="utf-8")
    assert "pupil_address" in served.text
    assert 'href="/data-docs/index.html"' in clara.get("/").text
    for path in ("/data-docs/../secret.txt", "/data-docs/%2e%2e/secret.txt", "/data-docs/..%2fsecret.txt"):
        response = clara.get(path)
        assert response.status_code == 404
        assert "not for the web" not in response.text


MALICIOUS = [
    "<script>alert(1)</script>",
    "' OR '1'='1",
    '"; DROP TABLE users; --',
    "%",
    "_",
    "\\",
    "pupil' UNION SELECT password_hash FROM users --",
    '"><img src=x onerror=alert(1)>',
]


@pytest.mark.parametrize("text", MALICIOUS)
def test_search_fields_escape_html_and_bind_sql(home: Home, as_user: UserClient, text: str) -> None:
    ed = as_user("ed")
    page = ed.get("/search", params={"q": text})
    assert page.status_code == 200
    assert "<script>alert" not in page.text
    assert "<img src=x" not in page.text
    assert str(markup_escape(text)) in page.text
    # LIKE wildcards are matched literally: "_" finds names with an underscore, the rest find nothing.
    if text == "_":
        assert "pupil_address" in page.text
    else:
        assert "Datasets (0)" in page.text
    for path, params in (
        ("/dataset", {"ns": text, "name": text}),
        ("/job", {"ns": text, "name": text}),
        ("/trace", {"ns": text, "name": text, "version": text}),
    ):
        response = ed.get(path, params=params)
        assert response.status_code == 404
        assert "<script>alert" not in response.text
    # The users table is untouched and the search still works.
    assert log_in(TestClient(home.app), "clara").status_code == 303
    assert "Datasets (" in ed.get("/search", params={"q": "pupil"}).text


def test_search_finds_datasets_and_jobs_by_name(as_user: UserClient) -> None:
    page = as_user("ed").get("/search", params={"q": "PUBLISH"})
    assert "census_ingest.ingest.publish" in page.text
    assert "Datasets (0)" not in as_user("ed").get("/search", params={"q": "pupil_address"}).text


def test_unknown_ids_are_404(as_user: UserClient) -> None:
    ed = as_user("ed")
    for path in (
        f"/runs/{uuid.uuid4()}",
        "/runs/not-a-run",
        "/dataset?ns=file&name=/nowhere",
        "/job?ns=censustrace&name=nope",
        "/trace?ns=file&name=/nowhere",
        "/dataset",
        "/no-such-page",
    ):
        response = ed.get(path)
        assert response.status_code == 404, path
        assert "Not found" in response.text


# Tokens and the JSON API ------------------------------------------------------------------------------
def test_api_tokens_read_producer_tokens_write(home: Home, client: TestClient) -> None:
    engine = home.app.state.viewer.engine()
    api = auth.add_token(engine, "ed", "api")
    producer = auth.add_token(engine, "airflow-test", "producer")
    read = {"Authorization": f"Bearer {api}"}
    write = {"Authorization": f"Bearer {producer}"}
    assert client.get("/api/v1/namespaces").status_code == 401
    assert client.get("/api/v1/namespaces", headers=write).status_code == 401
    names = {n["name"] for n in client.get("/api/v1/namespaces", headers=read).json()["namespaces"]}
    assert {"file", home.settings.lineage_namespace} <= names
    assert client.get("/api/v1/search", params={"q": "<b>"}, headers=read).json()["datasets"] == []
    event = {
        "eventType": "COMPLETE",
        "eventTime": "2026-11-30T10:00:00Z",
        "run": {"runId": str(uuid.uuid4())},
        "job": {"namespace": "tests", "name": "viewer.token"},
        "inputs": [],
        "outputs": [],
        "producer": "https://example.invalid/tests",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
    }
    body = json.dumps(event)
    assert client.post("/api/v1/lineage", content=body).status_code == 401
    assert client.post("/api/v1/lineage", content=body, headers=read).status_code == 401
    assert client.post("/api/v1/lineage", content=body, headers=write).status_code == 201
    spec = client.get("/openapi.json", headers=read).json()
    assert "/api/v1/lineage" in spec["paths"]
    assert "/api/v1/search" in spec["paths"]
    assert client.get("/api/v1/jobs/runs/" + str(uuid.uuid4()), headers=read).status_code == 404


def test_security_headers_and_no_caching(as_user: UserClient) -> None:
    response = as_user("clara").get("/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_static_assets_are_local(as_user: UserClient) -> None:
    page = as_user("clara").get("/").text
    assert re.findall(r'(?:href|src)="(https?:)?//', page) == []
    assert "/static/viewer.css" in page
    assert "/static/viewer.js" in page


def test_the_sample_is_what_the_pages_show(home: Home) -> None:
    # The fixture really ran the pipeline: every generated file was loaded.
    assert len(home.filled.loaded) == len(home.filled.manifest["files"]) == 3
    assert set(home.filled.shares) == {ALLOWED, BLOCKED}
    assert Path(home.settings.lineage_db_url.removeprefix("sqlite:///")).is_file()
