"""One login inside Airflow: the viewer mounted as Airflow mounts it accepts the token Airflow's real
SimpleAuthManager issues (validated by Airflow's own code), maps Airflow roles to viewer roles, refuses an
unmapped role with 403, logs ``airflow:<user>``, and sends a visitor without a token to Airflow's login.
The standalone viewer ignores Airflow tokens."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from censustrace.config import Settings
from censustrace.viewer import auth
from censustrace.viewer.airflow_auth import airflow_roles, viewer_role
from censustrace.viewer.app import create_viewer_app
from tests.plugins.helpers.viewer import Home, csrf_of, disclosed_upn

from .pipeline import ALLOWED

DEFAULT_MAP = Settings().airflow_role_map()


def test_airflow_roles_map_to_viewer_roles() -> None:
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    def role_of(airflow_role: str | None) -> str | None:
        return viewer_role(airflow_roles(SimpleAuthManagerUser(username="u", role=airflow_role)), DEFAULT_MAP)

    assert role_of("ADMIN") == "compliance"
    assert role_of("OP") == "engineer"
    assert role_of("USER") == "engineer"
    assert role_of("VIEWER") == "auditor"
    assert role_of(None) is None
    assert role_of("SOMETHING_ELSE") is None
    assert viewer_role(["Viewer", "Admin"], DEFAULT_MAP) == "compliance"  # the most rights wins
    with pytest.raises(ValueError, match="CENSUSTRACE_VIEWER_AIRFLOW_ROLES"):
        Settings(viewer_airflow_roles="Admin=root")


def test_fab_users_roles_are_mapped_too() -> None:
    fab = pytest.importorskip("airflow.providers.fab.auth_manager.models")
    user = fab.User(username="fabian", roles=[fab.Role(name="Viewer"), fab.Role(name="Op")])
    assert airflow_roles(user) == ["Viewer", "Op"]
    assert viewer_role(airflow_roles(user), DEFAULT_MAP) == "auditor"


@pytest.fixture(scope="module")
def airflow_tokens(airflow_db: Settings) -> Iterator[Any]:
    """Airflow's real auth manager (SimpleAuthManager, from this session's Airflow config), initialised
    as the API server does; returns a function making the JWT Airflow would set as its ``_token``."""
    from airflow.api_fastapi import app as airflow_app
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    before = airflow_app._AuthManagerState.instance
    manager = airflow_app.create_auth_manager()
    manager.init()

    def token(name: str, role: str | None) -> str:
        return str(manager.generate_jwt(SimpleAuthManagerUser(username=name, role=role)))

    yield token
    # Leave the process as we found it: other tests mount the viewer outside any API server.
    airflow_app._AuthManagerState.instance = before


def mounted(home: Home, settings: Settings | None = None) -> TestClient:
    airflow = FastAPI()
    airflow.mount("/censustrace", create_viewer_app(settings or home.settings, airflow=True))
    return TestClient(airflow)


@pytest.fixture
def inside_airflow(home: Home) -> Iterator[TestClient]:
    with mounted(home) as client:
        yield client


def test_airflow_user_needs_no_second_login(
    home: Home, inside_airflow: TestClient, airflow_tokens: Any
) -> None:
    share_id = home.filled.shares[ALLOWED]
    inside_airflow.cookies.set("_token", airflow_tokens("vera", "VIEWER"))
    page = inside_airflow.get(f"/censustrace/shares/{share_id}", follow_redirects=False)
    assert page.status_code == 200
    assert "airflow:vera" in page.text
    assert "(auditor)" in page.text
    assert "Log out" not in page.text  # logging out is Airflow's
    assert 'name="password"' not in page.text
    # The auditor may look a pupil up; the access log says who, as airflow:<user>.
    form = inside_airflow.get("/censustrace/subject-access")
    upn = disclosed_upn(home)
    found = inside_airflow.post(
        "/censustrace/subject-access", data={"upn": upn, "csrf_token": csrf_of(form.text)}
    )
    assert "1 share(s) included this pupil" in found.text
    assert inside_airflow.post("/censustrace/subject-access", data={"upn": upn}).status_code == 403  # no CSRF
    rows, _ = auth.read_access_log(home.app.state.viewer.engine(), limit=5)
    assert rows[0]["user_name"] == "airflow:vera"
    assert rows[0]["role"] == "auditor"
    assert rows[0]["via"] == "airflow"
    assert upn not in str(rows)


def test_roles_are_enforced_and_an_unmapped_role_gets_403(
    home: Home, inside_airflow: TestClient, airflow_tokens: Any
) -> None:
    inside_airflow.cookies.set("_token", airflow_tokens("opal", "OP"))
    assert inside_airflow.get("/censustrace/shares").status_code == 200
    assert inside_airflow.get("/censustrace/subject-access").status_code == 403  # engineer
    assert inside_airflow.get("/censustrace/access-log").status_code == 403
    # An Airflow bearer token works for the JSON API as well.
    api = inside_airflow.get(
        "/censustrace/api/v1/shares", headers={"Authorization": f"Bearer {airflow_tokens('opal', 'OP')}"}
    )
    assert api.status_code == 200
    assert api.json()["totalCount"] >= 2
    only_admins = home.settings.model_copy(update={"viewer_airflow_roles": "Admin=compliance"})
    with mounted(home, only_admins) as client:
        client.cookies.set("_token", airflow_tokens("vic", "VIEWER"))
        refused = client.get("/censustrace/shares", follow_redirects=False)
        assert refused.status_code == 403
        assert "CENSUSTRACE_VIEWER_AIRFLOW_ROLES" in refused.text
        assert client.get("/censustrace/api/v1/shares").status_code == 403
        client.cookies.set("_token", airflow_tokens("ada", "ADMIN"))
        assert client.get("/censustrace/access-log").status_code == 200


def test_without_a_valid_airflow_token_go_to_airflows_login(
    inside_airflow: TestClient, airflow_tokens: Any
) -> None:
    to_login = inside_airflow.get("/censustrace/shares?status=blocked", follow_redirects=False)
    assert to_login.status_code == 303
    assert re.fullmatch(
        r"/auth/login\?next=%2Fcensustrace%2Fshares%3Fstatus%3Dblocked", to_login.headers["location"]
    )
    forged = airflow_tokens("eve", "ADMIN")[:-4] + "AAAA"
    inside_airflow.cookies.set("_token", forged)
    assert inside_airflow.get("/censustrace/shares", follow_redirects=False).status_code == 303
    assert inside_airflow.get("/censustrace/api/v1/shares").status_code == 401


def test_the_standalone_viewer_ignores_airflow_tokens(client: TestClient, airflow_tokens: Any) -> None:
    client.cookies.set("_token", airflow_tokens("ada", "ADMIN"))
    page = client.get("/shares", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"].startswith("/login?next=")
