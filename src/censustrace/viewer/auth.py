"""Users, roles, login sessions, API tokens and the access log: the viewer's security core, without HTTP.

* Passwords: argon2id (``argon2-cffi`` defaults), checked in constant time; an unknown user name costs
  the same work as a wrong password and gets the same answer.
* Login rate limit: failed attempts are counted per user name (as typed) and per client address over a
  sliding window; past the limit every attempt is refused, right or wrong, until the window moves on.
* Sessions: a random token in the cookie, its sha256 in ``sessions``; idle expiry
  (``CENSUSTRACE_VIEWER_SESSION_MINUTES``) and an absolute limit; a CSRF token per session.
* API tokens: ``producer`` (may only POST lineage events) or ``api`` (acts as a user, with that user's
  role); shown once when created, stored as sha256.
* Access log: append-only, hash-chained rows (``censustrace.audit``) saying who looked up or exported
  pupil data (by pupil key), when, what kind and how many results, and who changed users, roles and
  tokens (``actor``: the operating-system user when not given). Callers pass kinds, counts and pupil
  keys, never a pupil identifier.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.sql import ColumnElement

from censustrace.audit.tables import access_log
from censustrace.db import write_transaction
from censustrace.errors import CensustraceError
from censustrace.viewer.tables import (
    ROLES,
    TOKEN_KINDS,
    api_tokens,
    login_attempts,
    sessions,
    users,
)

if TYPE_CHECKING:
    from argon2 import PasswordHasher

    from censustrace.audit.log import Actor

Role = Literal["compliance", "engineer", "auditor"]

#: What each role may do. ``read``: pages and JSON API; ``subject_access``: look a pupil up by UPN;
#: ``export``: CSV/PDF of registers and records (no pupil data); ``export_pupil_data``: download a
#: subject access result; ``access_log``: read the access log.
PERMISSIONS: Final[dict[str, frozenset[str]]] = {
    "compliance": frozenset({"read", "subject_access", "export", "export_pupil_data", "access_log"}),
    "engineer": frozenset({"read", "export"}),
    "auditor": frozenset({"read", "subject_access", "export", "access_log"}),
}

#: Failed logins allowed per user name, and per client address, within the window.
MAX_FAILURES_PER_NAME: Final = 5
MAX_FAILURES_PER_CLIENT: Final = 30
FAILURE_WINDOW: Final = timedelta(minutes=15)
#: A session ends this long after login, however active.
SESSION_ABSOLUTE: Final = timedelta(hours=12)
# last_seen_at is rewritten at most this often (a page view is otherwise read-only).
_TOUCH_EVERY: Final = timedelta(seconds=60)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH: Final = 12


class AuthError(CensustraceError):
    code = "CT-VIEWER-AUTH"


class LoginRefused(AuthError):
    """Wrong user name or password (one message for both), or too many attempts."""

    code = "CT-VIEWER-LOGIN"

    def __init__(self, message: str, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.rate_limited = rate_limited


WRONG_LOGIN: Final = "Wrong user name or password."
TOO_MANY: Final = "Too many failed logins. Wait 15 minutes and try again."


def now() -> datetime:
    return datetime.now(UTC)


def stamp(at: datetime) -> str:
    """Our timestamp text: UTC, microseconds, ``Z`` (string order is time order)."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()


_DUMMY_HASH: str | None = None


def hash_password(password: str) -> str:
    return str(_hasher().hash(password))


def _verify(password_hash: str, password: str) -> bool:
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return bool(_hasher().verify(password_hash, password))
    except (VerificationError, InvalidHashError):
        return False


def _dummy_hash() -> str:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
    return _DUMMY_HASH


# Principals ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Principal:
    """Who is asking: a user (by session or API token) or a lineage producer."""

    name: str
    role: str | None
    #: "session", "token" (a user's API token) or "producer".
    via: str
    user_id: int | None = None
    session_id: int | None = None
    csrf_token: str | None = None

    def can(self, permission: str) -> bool:
        return self.role is not None and permission in PERMISSIONS.get(self.role, frozenset())


# Users -----------------------------------------------------------------------------------------------
def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise AuthError(
            "user and token names are 1-64 characters: letters, digits, '.', '_', '@', '-' "
            "(starting with a letter or digit)",
            code="CT-VIEWER-NAME",
        )
    return name


def _admin(conn: Any, actor: Actor | None, action: str, what: str) -> None:
    """Log a change of users, roles or tokens in the same transaction as the change."""
    from censustrace.audit.log import append_access, os_actor

    append_access(conn, actor or os_actor(), action, what)


def add_user(engine: Engine, name: str, role: str, password: str, *, actor: Actor | None = None) -> int:
    """Create a user; raises AuthError for a bad name or role, a short password or a taken name."""
    check_name(name)
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}", code="CT-VIEWER-ROLE")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password: at least {MIN_PASSWORD_LENGTH} characters", code="CT-VIEWER-PASSWORD")
    password_hash = hash_password(password)
    with write_transaction(engine) as conn:
        taken = conn.execute(select(users.c.id).where(func.lower(users.c.name) == name.lower())).first()
        if taken is not None:
            raise AuthError(f"user {name} already exists", code="CT-VIEWER-USER-EXISTS")
        result = conn.execute(
            insert(users).values(
                name=name, role=role, password_hash=password_hash, disabled=False, created_at=stamp(now())
            )
        )
        _admin(conn, actor, "user.add", f"user {name} role {role}")
        return int(result.inserted_primary_key[0])  # type: ignore[index]


def set_password(engine: Engine, name: str, password: str, *, actor: Actor | None = None) -> None:
    """A new password; every session of the user ends."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthError(f"password: at least {MIN_PASSWORD_LENGTH} characters", code="CT-VIEWER-PASSWORD")
    password_hash = hash_password(password)
    with write_transaction(engine) as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
        if user_id is None:
            raise AuthError(f"no user {name}", code="CT-VIEWER-NO-USER")
        conn.execute(update(users).where(users.c.id == user_id).values(password_hash=password_hash))
        conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        _admin(conn, actor, "user.password", f"user {name}")


def set_role(engine: Engine, name: str, role: str, *, actor: Actor | None = None) -> str:
    """Give a user another role (their sessions end); returns the old role."""
    if role not in ROLES:
        raise AuthError(f"role {role!r} is not one of {', '.join(ROLES)}", code="CT-VIEWER-ROLE")
    with write_transaction(engine) as conn:
        row = conn.execute(select(users.c.id, users.c.role).where(users.c.name == name)).first()
        if row is None:
            raise AuthError(f"no user {name}", code="CT-VIEWER-NO-USER")
        conn.execute(update(users).where(users.c.id == row.id).values(role=role))
        conn.execute(delete(sessions).where(sessions.c.user_id == row.id))
        _admin(conn, actor, "user.role", f"user {name} role {row.role} -> {role}")
        return str(row.role)


def set_disabled(engine: Engine, name: str, disabled: bool, *, actor: Actor | None = None) -> None:
    """Disable (sessions end, tokens stop working) or enable a user."""
    with write_transaction(engine) as conn:
        user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
        if user_id is None:
            raise AuthError(f"no user {name}", code="CT-VIEWER-NO-USER")
        conn.execute(update(users).where(users.c.id == user_id).values(disabled=disabled))
        if disabled:
            conn.execute(delete(sessions).where(sessions.c.user_id == user_id))
        _admin(conn, actor, "user.disable" if disabled else "user.enable", f"user {name}")


def list_users(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(users.c.name, users.c.role, users.c.disabled, users.c.created_at).order_by(users.c.name)
        ).all()
    return [dict(row._mapping) for row in rows]


def count_users(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def generate_password() -> str:
    return secrets.token_urlsafe(15)


# Login and sessions ----------------------------------------------------------------------------------
def _failures_since(engine: Engine, column: ColumnElement[Any], value: str, since: datetime) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(login_attempts)
                .where(
                    column == value,
                    login_attempts.c.at >= stamp(since),
                    login_attempts.c.success.is_(False),
                )
            ).scalar_one()
        )


def login(engine: Engine, name: str, password: str, client: str) -> tuple[str, Principal]:
    """Check a login and open a session: ``(session token for the cookie, principal)``.

    Raises :class:`LoginRefused` with the same message for an unknown name and a wrong password, and
    with a rate-limit message (checked before the password) once either limit is reached."""
    typed = name.strip().lower()[:64]
    client = client[:64]
    at = now()
    since = at - FAILURE_WINDOW
    if (
        _failures_since(engine, login_attempts.c.user_name, typed, since) >= MAX_FAILURES_PER_NAME
        or _failures_since(engine, login_attempts.c.client, client, since) >= MAX_FAILURES_PER_CLIENT
    ):
        raise LoginRefused(TOO_MANY, rate_limited=True)
    with engine.connect() as conn:
        row = conn.execute(
            select(users.c.id, users.c.name, users.c.role, users.c.password_hash, users.c.disabled).where(
                func.lower(users.c.name) == typed
            )
        ).first()
    # The same argon2 work whether or not the user exists, so timing tells nothing either.
    ok = _verify(row.password_hash if row is not None else _dummy_hash(), password)
    ok = ok and row is not None and not row.disabled
    with write_transaction(engine) as conn:
        conn.execute(insert(login_attempts).values(at=stamp(at), user_name=typed, client=client, success=ok))
        if ok and row is not None:
            token = secrets.token_urlsafe(32)
            csrf = secrets.token_urlsafe(32)
            result = conn.execute(
                insert(sessions).values(
                    token_hash=token_hash(token),
                    user_id=row.id,
                    csrf_token=csrf,
                    created_at=stamp(at),
                    last_seen_at=stamp(at),
                )
            )
            session_id = int(result.inserted_primary_key[0])  # type: ignore[index]
            # Old attempts are only needed for the window.
            conn.execute(delete(login_attempts).where(login_attempts.c.at < stamp(at - 2 * FAILURE_WINDOW)))
            return token, Principal(row.name, row.role, "session", int(row.id), session_id, csrf)
    # The failed attempt was committed above: it counts towards the limit.
    raise LoginRefused(WRONG_LOGIN)


@dataclass(frozen=True)
class SessionCheck:
    principal: Principal | None
    #: True when a session token was presented but has expired (the login page says so).
    expired: bool = False


def check_session(engine: Engine, token: str, idle: timedelta) -> SessionCheck:
    """The principal of a session cookie, or why there is none. Expired sessions are deleted."""
    at = now()
    with engine.connect() as conn:
        row = conn.execute(
            select(
                sessions.c.id,
                sessions.c.csrf_token,
                sessions.c.created_at,
                sessions.c.last_seen_at,
                users.c.id.label("user_id"),
                users.c.name,
                users.c.role,
                users.c.disabled,
            )
            .join(users, users.c.id == sessions.c.user_id)
            .where(sessions.c.token_hash == token_hash(token))
        ).first()
    if row is None:
        return SessionCheck(None)
    last_seen = parse_stamp(row.last_seen_at)
    if row.disabled or at - last_seen > idle or at - parse_stamp(row.created_at) > SESSION_ABSOLUTE:
        with write_transaction(engine) as conn:
            conn.execute(delete(sessions).where(sessions.c.id == row.id))
        return SessionCheck(None, expired=True)
    if at - last_seen > _TOUCH_EVERY:
        with write_transaction(engine) as conn:
            conn.execute(update(sessions).where(sessions.c.id == row.id).values(last_seen_at=stamp(at)))
    return SessionCheck(
        Principal(row.name, row.role, "session", int(row.user_id), int(row.id), row.csrf_token)
    )


def logout(engine: Engine, session_id: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(delete(sessions).where(sessions.c.id == session_id))


def csrf_matches(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# API tokens ------------------------------------------------------------------------------------------
TOKEN_PREFIX: Final = {"producer": "ctp_", "api": "cta_", "pipeline": "ctl_"}


def add_token(engine: Engine, name: str, kind: str, *, actor: Actor | None = None) -> str:
    """A new token, returned once. ``api`` tokens are named after the user they act as; ``producer``
    tokens are external lineage producers, ``pipeline`` tokens the pipeline's own (docs/lineage.md)."""
    check_name(name)
    if kind not in TOKEN_KINDS:
        raise AuthError(f"token kind {kind!r} is not one of {', '.join(TOKEN_KINDS)}", code="CT-VIEWER-KIND")
    token = TOKEN_PREFIX[kind] + secrets.token_urlsafe(32)
    with write_transaction(engine) as conn:
        user_id = None
        if kind == "api":
            user_id = conn.execute(select(users.c.id).where(users.c.name == name)).scalar_one_or_none()
            if user_id is None:
                raise AuthError(
                    f"no user {name}: an api token acts as a user (create it with `censustrace users add`)",
                    code="CT-VIEWER-NO-USER",
                )
        conn.execute(
            insert(api_tokens).values(
                name=name,
                kind=kind,
                token_hash=token_hash(token),
                prefix=token[:12],
                user_id=user_id,
                created_at=stamp(now()),
            )
        )
        _admin(conn, actor, "token.add", f"{kind} token {token[:12]} for {name}")
    return token


def revoke_token(engine: Engine, prefix: str, *, actor: Actor | None = None) -> int:
    """Revoke every live token starting with ``prefix`` (at least 8 characters); how many."""
    if len(prefix) < 8:
        raise AuthError("give at least the first 8 characters of the token", code="CT-VIEWER-TOKEN")
    with write_transaction(engine) as conn:
        result = conn.execute(
            update(api_tokens)
            .where(api_tokens.c.prefix == prefix[:12], api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=stamp(now()))
        )
        if result.rowcount:
            _admin(conn, actor, "token.revoke", f"token {prefix[:12]}")
    _producers_seen.clear()  # this process forgets at once; others within PRODUCER_TOKEN_TTL_S
    return int(result.rowcount)


def list_tokens(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                api_tokens.c.name,
                api_tokens.c.kind,
                api_tokens.c.prefix,
                api_tokens.c.created_at,
                api_tokens.c.last_used_at,
                api_tokens.c.revoked_at,
            ).order_by(api_tokens.c.id)
        ).all()
    return [dict(row._mapping) for row in rows]


#: Producer tokens (lineage intake only) found valid in the last few seconds, by engine and token hash:
#: a look-up per event would cost the intake a database round trip per request. A producer token revoked
#: by another process stops working within this time; user tokens, which read pupil data, are looked up
#: on every request.
PRODUCER_TOKEN_TTL_S: Final = 5.0
_producers_seen: dict[tuple[int, str], tuple[float, Principal]] = {}


def check_token(engine: Engine, token: str) -> Principal | None:
    """The principal of a bearer token (None if unknown or revoked)."""
    key = (id(engine), token_hash(token))
    seen = _producers_seen.get(key)
    if seen is not None and time.monotonic() - seen[0] < PRODUCER_TOKEN_TTL_S:
        return seen[1]
    with engine.connect() as conn:
        row = conn.execute(
            select(
                api_tokens.c.id,
                api_tokens.c.kind,
                api_tokens.c.name,
                api_tokens.c.last_used_at,
                users.c.id.label("user_id"),
                users.c.name.label("user_name"),
                users.c.role,
                users.c.disabled,
            )
            .outerjoin(users, users.c.id == api_tokens.c.user_id)
            .where(api_tokens.c.token_hash == token_hash(token), api_tokens.c.revoked_at.is_(None))
        ).first()
    if row is None:
        return None
    at = now()
    if row.last_used_at is None or at - parse_stamp(row.last_used_at) > _TOUCH_EVERY:
        with write_transaction(engine) as conn:
            conn.execute(update(api_tokens).where(api_tokens.c.id == row.id).values(last_used_at=stamp(at)))
    if row.kind in ("producer", "pipeline"):
        principal = Principal(row.name, None, str(row.kind))
        _producers_seen[key] = (time.monotonic(), principal)
        return principal
    if row.user_id is None or row.disabled:
        return None
    return Principal(row.user_name, row.role, "token", int(row.user_id))


# Access log ------------------------------------------------------------------------------------------
def log_access(
    engine: Engine,
    principal: Principal,
    action: str,
    what: str,
    *,
    result_count: int | None = None,
    outcome: str = "ok",
    pupil_key: str | None = None,
) -> None:
    """Append one chained access log row. ``what`` is a kind ("subject_access.pdf"), never a pupil's
    value; ``pupil_key``: the pupil looked up (a keyed pseudonym), so "who looked this pupil up?" has an
    answer."""
    from censustrace.audit.log import Actor, record_access

    record_access(
        engine,
        Actor(principal.name, principal.role or "-", principal.via),
        action,
        what,
        pupil_keys=[pupil_key],
        result_counts=[result_count],
        outcome=outcome,
    )


_LOG_COLUMNS: Final = (
    "id",
    "at",
    "user_name",
    "role",
    "action",
    "what",
    "result_count",
    "outcome",
    "via",
    "seq",
)


def read_access_log(
    engine: Engine, *, limit: int = 200, offset: int = 0, pupil_key: str | None = None
) -> tuple[list[dict[str, object]], int]:
    """Newest first, with the total number of rows; only the lookups of one pupil with ``pupil_key``.
    Pupil keys are not returned (the page and the API show who looked, not a key to link pupils by)."""
    where = [] if pupil_key is None else [access_log.c.pupil_key == pupil_key]
    with engine.connect() as conn:
        total = int(conn.execute(select(func.count()).select_from(access_log).where(*where)).scalar_one())
        rows = conn.execute(
            select(*(access_log.c[name] for name in _LOG_COLUMNS))
            .where(*where)
            .order_by(access_log.c.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
    return [dict(row._mapping) for row in rows], total
