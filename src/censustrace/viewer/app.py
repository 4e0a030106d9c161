"""The compliance lineage viewer: ``create_viewer_app(settings)``.

One FastAPI app serving the server-rendered pages, the JSON API (the lineage routes of
``censustrace.viewer.lineage_api`` plus the viewer's own) and the static CSS/JS, with login for everything but
``/api/v1/health``, the login page and the static files. Runs standalone (``censustrace viewer``) or
mounted inside Airflow's API server by ``plugins/censustrace_viewer.py``; all links are made from the
request's mount point, so both work.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from censustrace.config import Settings, get_settings
from censustrace.errors import CensustraceError
from censustrace.lineage.ownership import Ownership
from censustrace.lineage.store.queries import LineageNotFound, LineageQueryInvalid
from censustrace.viewer.deps import (
    STATIC_DIR,
    ApiUnauthorized,
    CsrfRejected,
    Forbidden,
    LoginRequired,
    PageNotFound,
    Viewer,
    api_user,
    href,
    principal_of,
    producer,
    viewer_of,
)
from censustrace.viewer.lineage_api import DEFAULT_MAX_BODY_BYTES, add_lineage_error_handlers, lineage_router
from censustrace.viewer.templating import render

#: Pages show lineage and, for compliance, pupils' disclosures: nothing is cached, framed elsewhere or
#: loaded from another origin.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; "
    "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "SAMEORIGIN",
}


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        if not request.url.path.startswith(request.scope.get("root_path", "") + "/static/"):
            response.headers.setdefault("Cache-Control", "no-store")
        return response


class AirflowUser(BaseHTTPMiddleware):
    """Inside Airflow: validate the Airflow token (cookie or non-viewer bearer) with Airflow's auth
    manager once per request and leave the user for :func:`~censustrace.viewer.deps.principal_of`."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        from censustrace.viewer import airflow_auth

        header = request.headers.get("authorization", "")
        scheme, _, bearer = header.partition(" ")
        token = airflow_auth.token_of(
            bearer.strip() if scheme.lower() == "bearer" else None, dict(request.cookies)
        )
        if token:
            user = await airflow_auth.user_from_token(token)
            if user is not None:
                request.state.airflow_user = (user, token)
        return await call_next(request)


def _wants_json(request: Request) -> bool:
    root = request.scope.get("root_path", "")
    return request.url.path.startswith(root + "/api/") or request.url.path.startswith(root + "/openapi")


def _error_page_handler(status: int) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CensustraceError)  # registered for our error classes only
        return _error_page(request, status, exc)

    return handle


def _error_page(request: Request, status: int, error: CensustraceError) -> Response:
    if _wants_json(request):
        return JSONResponse(error.as_dict(), status_code=status)
    principal, _ = (
        principal_of(request) if request.cookies or request.headers.get("authorization") else (None, False)
    )
    if principal is not None and principal.role is None:
        principal = None  # e.g. an Airflow user whose role maps to none of ours: no navigation
    return render(request, "error.html", principal, status_code=status, status=status, error=error)


def create_viewer_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    migrate: bool = True,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    airflow: bool = False,
) -> FastAPI:
    """The viewer over the lineage store at ``settings.lineage_db_url`` (or ``engine``). Nothing touches
    the database until the first request (see :class:`~censustrace.viewer.deps.Viewer`).

    ``airflow=True`` (the plugin mounts it so in Airflow's API server): the user Airflow signed in is
    accepted, with roles mapped by ``CENSUSTRACE_VIEWER_AIRFLOW_ROLES``, and a visitor without a login
    is sent to Airflow's login page (see :mod:`censustrace.viewer.airflow_auth`)."""
    from censustrace.lineage.spec import require_schemas
    from censustrace.viewer.routes import api as api_routes
    from censustrace.viewer.routes import pages, session, shares
    from censustrace.viewer.shares_views import UpnRejected

    require_schemas()  # a broken install stops here, not at the first event
    settings = settings or get_settings()
    app = FastAPI(
        title="censustrace viewer",
        summary="Lineage of school census data: trace, share register, subject access, Art 30 record.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    viewer = Viewer(settings, engine, migrate=migrate, airflow=airflow)
    app.state.viewer = viewer
    app.state.lineage_engine = viewer.engine
    # Worked out on the first POST: creating the app (at Airflow plugin import) stays cheap.
    app.state.lineage_ownership = functools.cache(lambda: Ownership.of(settings))
    if airflow:
        app.add_middleware(AirflowUser)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(
        lineage_router(
            max_body_bytes=max_body_bytes,
            write_dependencies=[Depends(producer)],
            read_dependencies=[Depends(api_user)],
        )
    )
    app.include_router(api_routes.router)
    app.include_router(shares.api)
    app.include_router(session.router)
    app.include_router(pages.router)
    app.include_router(shares.router)
    add_lineage_error_handlers(app)

    @app.get("/openapi.json", include_in_schema=False, dependencies=[Depends(api_user)])
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        if request.method != "GET":
            target = href(request, "home")
        if viewer_of(request).airflow:
            from censustrace.viewer import airflow_auth

            # One login: Airflow's, which comes back here with its token cookie set. (request.url.path
            # already holds the mount point, /censustrace/...)
            airflow_login = airflow_auth.login_url(target)
            if airflow_login is not None:
                return RedirectResponse(airflow_login, status_code=303)
        return RedirectResponse(
            href(request, "login", next=target, expired="1" if exc.expired else None), status_code=303
        )

    @app.exception_handler(ApiUnauthorized)
    async def _unauthorized(request: Request, exc: ApiUnauthorized) -> Response:
        return JSONResponse(exc.as_dict(), status_code=401, headers={"WWW-Authenticate": "Bearer"})

    # Our errors that become an error page, with their HTTP status.
    for error, status in (
        (Forbidden, 403),
        (CsrfRejected, 403),
        (PageNotFound, 404),
        (LineageNotFound, 404),
        (UpnRejected, 422),
        (LineageQueryInvalid, 400),
    ):
        app.add_exception_handler(error, _error_page_handler(status))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        error = CensustraceError(str(exc.detail), code=f"CT-HTTP-{exc.status_code}")
        return _error_page(request, exc.status_code, error)

    return app
