"""The viewer's tables, kept in the lineage store's database (same metadata, same Alembic chain).

Users, login sessions, API tokens, login attempts (for rate limiting) and the append-only access log.
Secrets are never stored: passwords as argon2 hashes, session and API tokens as sha256 hex (they are
256-bit random values, so a fast hash is enough and keeps every request cheap). Times are UTC ISO-8601
strings (``2026-11-28T10:00:00.123456Z``), like the rest of the store: string order is time order.

Changing a table here needs a new Alembic revision in ``censustrace/lineage/store/migrations``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, String, Table

from censustrace.lineage.store.tables import metadata

ROLES: Final = ("compliance", "engineer", "auditor")
#: ``producer``: an external lineage producer (its own namespaces only); ``pipeline``: a producer token of
#: the pipeline itself (may write the datasets and jobs censustrace owns); ``api``: acts as a user.
TOKEN_KINDS: Final = ("producer", "api", "pipeline")
#: Length of our timestamps (``2026-11-28T10:00:00.123456Z``).
TIME_LENGTH: Final = 27


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    # argon2id, PHC string format (parameters and salt included).
    Column("password_hash", String(255), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", String(TIME_LENGTH), nullable=False),
    CheckConstraint(_in("role", ROLES), name="role"),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("user_id", ForeignKey("users.id"), nullable=False, index=True),
    # Synchroniser token: every POST form of this session carries it.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", String(TIME_LENGTH), nullable=False),
    Column("last_seen_at", String(TIME_LENGTH), nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("kind", String(8), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    # The first characters of the token, to tell tokens apart in listings without keeping the token.
    Column("prefix", String(16), nullable=False),
    # API tokens act as a user (with that user's role); producer tokens only write lineage.
    Column("user_id", ForeignKey("users.id"), index=True),
    Column("created_at", String(TIME_LENGTH), nullable=False),
    Column("last_used_at", String(TIME_LENGTH)),
    Column("revoked_at", String(TIME_LENGTH)),
    CheckConstraint(_in("kind", TOKEN_KINDS), name="kind"),
)

login_attempts = Table(
    "login_attempts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(TIME_LENGTH), nullable=False),
    # The name as typed (lower case), whether or not such a user exists.
    Column("user_name", String(64), nullable=False),
    Column("client", String(64), nullable=False),
    Column("success", Boolean, nullable=False),
    Index("ix_login_attempts_user_name_at", "user_name", "at"),
    Index("ix_login_attempts_client_at", "client", "at"),
)

#: Append-only (triggers refuse UPDATE and DELETE, except of ``pupil_key`` by ``rekey``; PostgreSQL refuses
#: TRUNCATE) and hash-chained (``censustrace.audit.chain``): who looked up or exported pupil data, when,
#: what kind and how many results, and who changed users, roles and tokens. Never the UPN or any other
#: pupil identifier: a lookup names the pupil by pupil key (left out of the hash, so ``rekey`` keeps the
#: chain valid).
access_log = Table(
    "access_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", String(TIME_LENGTH), nullable=False, index=True),
    Column("user_name", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    # "subject_access", "export", ...
    Column("action", String(32), nullable=False),
    # What was looked up or exported: a page or file kind, e.g. "share_register.csv".
    Column("what", String(128), nullable=False),
    Column("result_count", Integer),
    # "ok", "denied" (role), "rejected" (bad input: the value itself is never logged).
    Column("outcome", String(16), nullable=False),
    Column("via", String(8), nullable=False),
    # The pupil looked up (keyed pseudonym), or NULL.
    Column("pupil_key", String(64), index=True),
    # Chain position (1, 2, 3, ... without gaps), the previous row's hash and this row's hash; NULL in a
    # row written behind the chain's back (reported by `censustrace audit verify`).
    Column("seq", Integer),
    Column("prev_hash", String(64)),
    Column("row_hash", String(64)),
    Index("uq_access_log_seq", "seq", unique=True),
)
