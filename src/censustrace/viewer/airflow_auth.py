"""One login inside Airflow: the viewer mounted in Airflow's API server accepts the user Airflow signed in.

Airflow 3's API server keeps its user in a JWT, set by the auth manager's login as the ``_token`` cookie
(``airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN``) and sent by API clients
as ``Authorization: Bearer``. The viewer validates that token exactly as Airflow's own routes do
(``get_auth_manager().get_user_from_token``: signature, expiry, audience, revoked JTIs) and maps the
user's Airflow role(s) to a viewer role through ``CENSUSTRACE_VIEWER_AIRFLOW_ROLES``. SimpleAuthManager
users carry one ``role`` ("ADMIN", "OP", "USER", "VIEWER"); FAB users a list of ``roles`` ("Admin", ...).
A user none of whose roles is mapped gets 403: being an Airflow user is not by itself a right to see
pupils' disclosures. The standalone viewer never reads Airflow tokens (it keeps its own login).
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any, Final

from censustrace.viewer.auth import Principal

#: Airflow's cookie name (base_auth_manager.COOKIE_NAME_JWT_TOKEN), not imported: plugin import stays cheap.
AIRFLOW_COOKIE: Final = "_token"
#: Our own bearer tokens; any other bearer inside Airflow is taken for an Airflow JWT.
VIEWER_TOKEN_PREFIXES: Final = ("cta_", "ctp_")
#: When several Airflow roles map, the one with the most rights wins.
ROLE_ORDER: Final = ("compliance", "auditor", "engineer")
VIA: Final = "airflow"

log = logging.getLogger(__name__)


def airflow_roles(user: Any) -> list[str]:
    """The Airflow role names of a SimpleAuthManager user (``role``) or a FAB user (``roles``)."""
    found: list[str] = []
    role = getattr(user, "role", None)
    if isinstance(role, str) and role:
        found.append(role)
    for item in getattr(user, "roles", None) or []:
        name = getattr(item, "name", item)
        if isinstance(name, str) and name:
            found.append(name)
    return found


def viewer_role(roles: list[str], mapping: dict[str, str]) -> str | None:
    """The viewer role for these Airflow roles (names compared case-insensitively), or None."""
    mapped = {mapping[role.lower()] for role in roles if role.lower() in mapping}
    return next((role for role in ROLE_ORDER if role in mapped), None)


def principal_for(user: Any, mapping: dict[str, str], token: str) -> Principal:
    """The viewer principal for an Airflow user: ``airflow:<name>``, its mapped role (None when no role
    maps: the caller answers 403), and a CSRF token derived from the Airflow token (forms on the page
    must come from a page that saw this token)."""
    name = str(user.get_name() if hasattr(user, "get_name") else getattr(user, "username", "?"))
    csrf = hashlib.sha256(b"censustrace-csrf:" + token.encode()).hexdigest()
    return Principal(f"airflow:{name}"[:64], viewer_role(airflow_roles(user), mapping), VIA, csrf_token=csrf)


def token_of(headers_bearer: str | None, cookies: dict[str, str]) -> str | None:
    """The Airflow token a request carries: a bearer that is not one of ours, else the cookie."""
    if headers_bearer and not headers_bearer.startswith(VIEWER_TOKEN_PREFIXES):
        return headers_bearer
    if headers_bearer:
        return None
    return cookies.get(AIRFLOW_COOKIE) or None


async def user_from_token(token: str) -> Any | None:
    """Airflow's user for ``token``, validated by Airflow's auth manager; None if invalid or expired."""
    from airflow.api_fastapi.app import get_auth_manager
    from jwt import InvalidTokenError

    try:
        manager = get_auth_manager()
    except RuntimeError:  # not inside an API server that set up its auth manager
        return None
    try:
        return await manager.get_user_from_token(token)
    except InvalidTokenError:  # includes ExpiredSignatureError
        return None


def login_url(next_url: str) -> str | None:
    """Airflow's login page, coming back to ``next_url`` afterwards (None outside an API server)."""
    from airflow.api_fastapi.app import get_auth_manager

    try:
        return str(get_auth_manager().get_url_login(next_url=next_url))
    except RuntimeError:
        return None
