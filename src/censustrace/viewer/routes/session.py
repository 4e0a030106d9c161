"""Login and logout.

The login form is protected by a double-submit CSRF token (a random cookie that the form must repeat),
since there is no session yet; logout by the session's own token. A failed login answers the same for
an unknown user and a wrong password.
"""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from censustrace.viewer import auth
from censustrace.viewer.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfRejected,
    PageUser,
    form_with_csrf,
    href,
    principal_of,
    viewer_of,
)
from censustrace.viewer.templating import render

router = APIRouter(include_in_schema=False)


def _cookie_path(request: Request) -> str:
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/") + "/"


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _safe_next(request: Request, target: str | None) -> str:
    """Only a path inside this app (no other host, no scheme-relative ``//``)."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    if target and target.startswith(root + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return href(request, "home")


def _login_page(
    request: Request,
    *,
    status_code: int = 200,
    message: str | None = None,
    next_url: str | None = None,
    expired: bool = False,
) -> HTMLResponse:
    token = secrets.token_urlsafe(32)
    response = render(
        request,
        "login.html",
        None,
        status_code=status_code,
        login_csrf=token,
        message=message,
        next_url=_safe_next(request, next_url),
        expired=expired,
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
        path=_cookie_path(request),
    )
    return response


@router.get("/login", name="login")
def login_form(
    request: Request,
    next_url: Annotated[str | None, Query(alias="next")] = None,
    expired: str | None = None,
) -> Response:
    principal, _ = principal_of(request)
    if principal is not None and principal.role is not None:
        return RedirectResponse(_safe_next(request, next_url), status_code=303)
    return _login_page(request, next_url=next_url, expired=expired == "1")


@router.post("/login", name="login_submit")
async def login_submit(request: Request) -> Response:
    form = await request.form()
    values = {k: v for k, v in form.items() if isinstance(v, str)}
    if not auth.csrf_matches(request.cookies.get(LOGIN_CSRF_COOKIE), values.get("csrf_token")):
        raise CsrfRejected("the login form was not sent from this site's login page (missing CSRF token)")
    viewer = viewer_of(request)
    client = request.client.host if request.client else "unknown"
    try:
        token, _principal = await run_in_threadpool(
            auth.login, viewer.engine(), values.get("username", ""), values.get("password", ""), client
        )
    except auth.LoginRefused as refused:
        return _login_page(
            request,
            status_code=429 if refused.rate_limited else 401,
            message=refused.message,
            next_url=values.get("next"),
        )
    response = RedirectResponse(_safe_next(request, values.get("next")), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path=_cookie_path(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=_cookie_path(request))
    return response


@router.post("/logout", name="logout")
async def logout_submit(request: Request, principal: PageUser) -> Response:
    await form_with_csrf(request, principal)
    if principal.session_id is not None:
        await run_in_threadpool(auth.logout, viewer_of(request).engine(), principal.session_id)
    response = RedirectResponse(href(request, "login"), status_code=303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path(request))
    return response
