"""The viewer's tables: users, login sessions, API tokens and login attempts (for rate limiting).

They live in the lineage store's database (``CENSUSTRACE_LINEAGE_URL``) on their own metadata, migrated by
the viewer's own Alembic chain (``censustrace/viewer/migrations``, version table
``viewer_alembic_version``, run by ``censustrace.viewer.db.upgrade``). The lineage store never imports
them. Homes made before this chain existed had them created by the lineage chain's revisions 0002 and
0004; the viewer's revision 0001 adopts them as they are. The append-only access log beside them is the
audit trail's (``censustrace.audit.tables.access_log``), migrated with the lineage store.
Secrets are never stored: passwords as argon2 hashes, session and API tokens as sha256 hex (they are
256-bit random values, so a fast hash is enough and keeps every request cheap). Times are UTC ISO-8601
strings (``2026-11-28T10:00:00.123456Z``), like the rest of the store: string order is time order.

Changing a table here needs a new Alembic revision in ``censustrace/viewer/migrations/versions``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Boolean, CheckConstraint, Column, ForeignKey, Index, Integer, MetaData, String, Table

from censustrace.lineage.store.tables import NAMING_CONVENTION

#: The viewer's own metadata (the lineage store's naming convention, so that the constraint names stay
#: those the lineage chain gave the tables it created in older homes).
metadata = MetaData(naming_convention=NAMING_CONVENTION)

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
