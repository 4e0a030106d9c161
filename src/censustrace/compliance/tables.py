"""Warehouse tables of the compliance evidence: file tombstones (one row per copy of a received or
released file replaced by a redacted copy) and Article 19 notices (one row per recipient told of a
rectification, erasure or objection). What each column means is in ``docs/shares.md``.

Changing a table needs a new Alembic revision.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    Index,
    Integer,
    String,
    Table,
    UniqueConstraint,
)

from censustrace.warehouse.tables import UtcDateTime, in_check, metadata

# --- where a copy lives -------------------------------------------------------------------------------
ARCHIVE: Final = "archive"  # archive/<sha[:2]>/<sha256>: the received bytes
QUARANTINE: Final = "quarantine"  # quarantine/<sha256>/<name>: a refused file's copy
OUTBOX: Final = "outbox"  # shares/outbox/<recipient>/<file>: a released share's copy
COPIES: Final = (ARCHIVE, QUARANTINE, OUTBOX)

# --- why a recipient is told (Art 19) --------------------------------------------------------------------
RECTIFICATION: Final = "rectification"  # a resubmission superseded the census the share was made from
ERASURE: Final = "erasure"  # values the share was made from were erased under a retention rule
OBJECTION: Final = "objection"  # the pupil objected (or withdrew consent) to the share's purpose later
NOTICE_KINDS: Final = (RECTIFICATION, ERASURE, OBJECTION)

file_tombstones = Table(
    "file_tombstones",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("copy", String(12), nullable=False),
    # The bytes as first received (or released): the identity every trace and registry row names.
    Column("original_sha256", String(64), nullable=False, index=True),
    # The bytes this step replaced (the original, or an earlier redacted copy) and the new copy.
    Column("from_sha256", String(64), nullable=False),
    Column("redacted_sha256", String(64), nullable=False),
    Column("path", String, nullable=False),  # the copy's path after this step
    Column("erased_at", UtcDateTime, nullable=False),
    Column("as_of", Date, nullable=False),
    Column("rule", String, nullable=False),  # never_share_legacy | retention_ended | share_retention_ended
    Column("fields", JSON, nullable=False),  # [field] erased from the copy
    Column("whole_file", Boolean, nullable=False),  # the content could not be redacted item by item
    Column("share_id", String(40)),  # outbox copies: the share that released the file
    CheckConstraint(in_check("copy", COPIES), name="copy"),
)

article19_notices = Table(
    "article19_notices",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),
    # What happened: the superseding extract id, the erasure id, or the consent file id.
    Column("event_ref", String, nullable=False),
    Column("share_id", String(40), nullable=False),
    Column("recipient", String, nullable=False),
    Column("pupil_key", String(64), nullable=False, index=True),
    Column("fields", JSON, nullable=False),  # the fields the recipient received that the event concerns
    Column("event_date", Date, nullable=False),
    Column("notice_id", String(40), nullable=False),  # one notice document per recipient and run
    Column("notice_sha256", String(64), nullable=False),  # the CSV given to the recipient
    Column("sent_at", UtcDateTime, nullable=False),
    Column("sent_by", String, nullable=False),
    CheckConstraint(in_check("kind", NOTICE_KINDS), name="kind"),
    UniqueConstraint("kind", "event_ref", "share_id", "pupil_key"),
    Index("ix_article19_notices_notice_id", "notice_id"),
)

# Subject access lookups by pupil key: "who looked this pupil up, how, and when". One row per pupil the
# lookup found (a lookup that found no one is in the access log only). ``rekey`` rewrites the keys.
subject_lookups = Table(
    "subject_lookups",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UtcDateTime, nullable=False),
    Column("user_name", String(64), nullable=False),  # viewer user, API token name, or OS user (CLI)
    Column("via", String(8), nullable=False),  # cli | viewer | api
    Column("method", String(12), nullable=False),  # upn | former_upn | name_dob
    Column("pupil_key", String(64), nullable=False, index=True),
    Column("shares", Integer, nullable=False),  # delivered shares the answer named
)

__all__ = [
    "ARCHIVE",
    "COPIES",
    "ERASURE",
    "NOTICE_KINDS",
    "OBJECTION",
    "OUTBOX",
    "QUARANTINE",
    "RECTIFICATION",
    "article19_notices",
    "file_tombstones",
    "subject_lookups",
]
