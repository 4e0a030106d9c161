"""Rendering the viewer's server-side pages (the Jinja environment itself is set up by
:class:`~censustrace.viewer.deps.Viewer`)."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from censustrace.viewer.auth import Principal
from censustrace.viewer.deps import viewer_of


def render(
    request: Request,
    template: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A page from ``templates/`` with the signed-in user and its CSRF token in the context."""
    viewer = viewer_of(request)
    response: HTMLResponse = viewer.templates.TemplateResponse(
        request,
        template,
        {"user": principal, "csrf_token": principal.csrf_token if principal else None, **context},
        status_code=status_code,
    )
    return response
