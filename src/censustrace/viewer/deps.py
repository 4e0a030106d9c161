"""The viewer's per-app state and its FastAPI dependencies: who is asking, may they, and CSRF.

Pages answer an anonymous visitor with a redirect to the login page; the JSON API with 401. A bearer
token is checked first (``Authorization: Bearer ...``), then the session cookie.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.templating import Jinja2Templates

from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.viewer import auth
from censustrace.viewer.auth import Principal

SESSION_COOKIE: Final = "ct_session"
LOGIN_CSRF_COOKIE: Final = "ct_login_csrf"
TEMPLATES_DIR: Final = Path(__file__).resolve().parent / "templates"
STATIC_DIR: Final = Path(__file__).resolve().parent / "static"


class Viewer:
    """Per-app state. The store's engine is made (and migrated) on first use, not at import or startup:
    an app mounted inside Airflow's API server gets no lifespan events, and plugin import must stay
    cheap."""

    def __init__(
        self, settings: Settings, engine: Engine | None = None, *, migrate: bool = True, airflow: bool = False
    ) -> None:
        self.settings = settings
        #: Mounted in Airflow's API server: Airflow's signed-in user is accepted (airflow_auth).
        self.airflow = airflow
        self._engine = engine
        self._migrate = migrate
        self._lock = threading.Lock()
        self.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
        self.templates.env.globals["href"] = href
        from censustrace.viewer import timefmt

        zone = settings.viewer_timezone
        self.templates.env.filters["human_time"] = lambda value, seconds=False: timefmt.human(
            value, zone, seconds=seconds
        )
        self.templates.env.filters["time_el"] = lambda value: timefmt.time_element(value, zone)

    def engine(self) -> Engine:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    from censustrace.lineage.store.db import make_engine, upgrade
                    from censustrace.viewer.db import upgrade as upgrade_viewer

                    if self._migrate:
                        upgrade(self.settings.lineage_db_url)
                        upgrade_viewer(self.settings.lineage_db_url)
                    self._engine = make_engine(self.settings.lineage_db_url)
        return self._engine

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=self.settings.viewer_session_minutes)

    @property
    def data_docs_dir(self) -> Path:
        return self.settings.data_docs_dir


def viewer_of(request: Request) -> Viewer:
    found: Viewer = request.app.state.viewer
    return found


def href(request: Request, name: str, /, **query: Any) -> str:
    """The path of route ``name`` under this app's mount point, with ``query`` (None values dropped).

    Paths, not absolute URLs: they work behind a proxy and under Airflow's ``/censustrace`` prefix."""
    path_params = {k: v for k, v in query.items() if k in _PATH_PARAMS.get(name, ())}
    params = {k: v for k, v in query.items() if k not in path_params and v is not None}
    root: str = request.scope.get("root_path", "")
    path = _route_template(request.app, name)
    for key, value in path_params.items():
        path = path.replace(_placeholder(key), str(value))
    return root.rstrip("/") + path + ("?" + urlencode(params) if params else "")


def _placeholder(key: str) -> str:
    return f"\x00{key}\x00"


_templates: dict[tuple[int, str], str] = {}


def _route_template(app: Any, name: str) -> str:
    """A route's path with placeholders for its path parameters, worked out once per app: a trace page
    links thousands of nodes, and ``url_path_for`` walks every route each time."""
    key = (id(app), name)
    template = _templates.get(key)
    if template is None:
        params = {p: _placeholder(p) for p in _PATH_PARAMS.get(name, ())}
        template = _templates[key] = str(app.url_path_for(name, **params))
    return template


#: Path parameters of the named routes (the rest of ``href``'s keywords become the query string).
_PATH_PARAMS: Final[dict[str, tuple[str, ...]]] = {
    "run": ("run_id",),
    "data_docs": ("path",),
    "static": ("path",),
    "share": ("share_id",),
    "article30_file": ("fmt",),
}


class LoginRequired(CensustraceError):
    """A page was asked for without a (live) session: the handler redirects to the login page."""

    code = "CT-VIEWER-LOGIN-REQUIRED"

    def __init__(self, expired: bool = False) -> None:
        super().__init__("log in first")
        self.expired = expired


class Forbidden(CensustraceError):
    """The user's role does not allow this (403)."""

    code = "CT-VIEWER-FORBIDDEN"


class ApiUnauthorized(CensustraceError):
    """The JSON API without a valid token or session (401)."""

    code = "CT-VIEWER-UNAUTHORIZED"


class PageNotFound(CensustraceError):
    code = "CT-VIEWER-NOT-FOUND"


class CsrfRejected(CensustraceError):
    """A POST form without this session's CSRF token (403)."""

    code = "CT-VIEWER-CSRF"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def principal_of(request: Request) -> tuple[Principal | None, bool]:
    """Who is asking (or None) and whether a session cookie was presented but had expired."""
    cached: tuple[Principal | None, bool] | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    viewer = viewer_of(request)
    token = _bearer(request)
    found: tuple[Principal | None, bool]
    airflow_user = getattr(request.state, "airflow_user", None)
    if airflow_user is not None:
        # Set by the app's middleware from a token Airflow's auth manager validated (inside Airflow only).
        from censustrace.viewer import airflow_auth

        user, airflow_token = airflow_user
        found = (airflow_auth.principal_for(user, viewer.settings.airflow_role_map(), airflow_token), False)
    elif token is not None:
        found = (auth.check_token(viewer.engine(), token), False)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        check = auth.check_session(viewer.engine(), cookie, viewer.idle_timeout)
        found = (check.principal, check.expired)
    else:
        found = (None, False)
    request.state.principal = found
    return found


def _refuse_unmapped(principal: Principal | None) -> None:
    if principal is not None and principal.via == "airflow" and principal.role is None:
        raise Forbidden(
            f"{principal.name} is signed in to Airflow, but no Airflow role of theirs is mapped to a viewer "
            "role (CENSUSTRACE_VIEWER_AIRFLOW_ROLES)"
        )


def page_user(request: Request) -> Principal:
    """A signed-in user for a page (a producer token is not a user)."""
    principal, expired = principal_of(request)
    _refuse_unmapped(principal)
    if principal is None or principal.role is None:
        raise LoginRequired(expired)
    if not principal.can("read"):
        raise Forbidden("your role cannot read the viewer")
    return principal


def api_user(request: Request) -> Principal:
    """A user (API token or session) for the JSON API."""
    principal, _ = principal_of(request)
    _refuse_unmapped(principal)
    if principal is None or principal.role is None:
        raise ApiUnauthorized("send a user API token (Authorization: Bearer cta_...) or log in")
    if not principal.can("read"):
        raise Forbidden("your role cannot read the viewer")
    return principal


def producer(request: Request) -> Principal:
    """A lineage producer token (external ``producer`` or the pipeline's own ``pipeline``), for
    ``POST /api/v1/lineage``; remembered on the request so the store can check what it may write."""
    from censustrace.lineage.ownership import Producer

    token = _bearer(request)
    principal = auth.check_token(viewer_of(request).engine(), token) if token else None
    if principal is None or principal.via not in ("producer", "pipeline"):
        raise ApiUnauthorized("POST /api/v1/lineage needs a producer token (Authorization: Bearer ctp_...)")
    request.state.lineage_producer = Producer(
        principal.name, "pipeline" if principal.via == "pipeline" else "external"
    )
    return principal


PageUser = Annotated[Principal, Depends(page_user)]
ApiUser = Annotated[Principal, Depends(api_user)]


async def form_with_csrf(request: Request, principal: Principal) -> dict[str, str]:
    """The POSTed form, after checking its ``csrf_token`` against the session's (403 if not)."""
    form = await request.form()
    values = {key: value for key, value in form.items() if isinstance(value, str)}
    cookie_based = principal.via in ("session", "airflow")
    expected = principal.csrf_token if cookie_based else None
    if cookie_based and not auth.csrf_matches(expected, values.get("csrf_token")):
        raise CsrfRejected("the form was not sent from this session's page (missing or wrong CSRF token)")
    return values


def require(principal: Principal, permission: str, what: str) -> None:
    if not principal.can(permission):
        raise Forbidden(f"the {principal.role} role may not {what}")
