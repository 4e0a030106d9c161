"""Warehouse tables of pupils' recorded decisions (consent and objection files).

``consent_files`` registers every received consent file (its bytes are in the archive, by sha256, like a
census file); ``consent_decisions`` holds its rows by pupil key: the UPN is never stored here. What each
column means is in ``docs/shares.md``. Changing a table needs a new Alembic revision.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
)

from censustrace.warehouse.tables import UtcDateTime, in_check, metadata

# --- consent file statuses ------------------------------------------------------------------------------
APPLIED: Final = "applied"  # its valid rows are in consent_decisions (bad rows are listed in reasons)
DUPLICATE: Final = "duplicate"  # the same bytes were received before; nothing applied again
REFUSED: Final = "refused"  # unreadable as a whole (encoding, header): nothing applied
FILE_STATUSES: Final = (APPLIED, DUPLICATE, REFUSED)

# --- decisions ------------------------------------------------------------------------------------------
OBJECTED: Final = "objected"  # Art 21 objection to processing for the purpose
WITHDRAWN: Final = "withdrawn"  # consent given earlier and withdrawn: as an objection from then on
CONSENTED: Final = "consented"
DECISIONS: Final = (OBJECTED, WITHDRAWN, CONSENTED)
#: Decisions that keep a pupil out of shares for the purpose (and its sub-purposes).
EXCLUDING: Final = frozenset({OBJECTED, WITHDRAWN})

CONSENT_FILE_ID_LENGTH: Final = 40


consent_files = Table(
    "consent_files",
    metadata,
    Column("id", Integer, primary_key=True),
    # cns_ + the first 20 hex digits of the sha256 (cns_<...>-<n> for the n-th receipt of the same bytes).
    Column("consent_file_id", String(CONSENT_FILE_ID_LENGTH), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("original_name", String, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    # From the file name consents_<LA>_<ESTAB>_<TERM>_<YEAR>.csv when it follows it; else NULL.
    Column("laestab", String(7)),
    Column("term", String(3)),
    Column("year", Integer),
    Column("status", String(12), nullable=False),
    Column("duplicate_of", String(CONSENT_FILE_ID_LENGTH), ForeignKey("consent_files.consent_file_id")),
    Column("rows_read", Integer, nullable=False),
    Column("rows_applied", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    # [{code, message, location}]: row numbers and counts only, never a value from the file.
    Column("reasons", JSON, nullable=False),
    CheckConstraint(in_check("status", FILE_STATUSES), name="status"),
)

consent_decisions = Table(
    "consent_decisions",
    metadata,
    Column(
        "consent_file_id",
        String(CONSENT_FILE_ID_LENGTH),
        ForeignKey("consent_files.consent_file_id"),
        primary_key=True,
    ),
    # 1-based data row of the file (the header is row 0), so a decision can be found in the archived bytes.
    Column("row_number", Integer, primary_key=True, autoincrement=False),
    Column("pupil_key", String(64), nullable=False),
    Column("purpose", String, nullable=False),
    Column("decision", String(10), nullable=False),
    Column("recorded_on", Date, nullable=False),
    Column("source", String),
    CheckConstraint(in_check("decision", DECISIONS), name="decision"),
    Index("ix_consent_decisions_pupil_key_purpose", "pupil_key", "purpose"),
    Index("ix_consent_decisions_purpose", "purpose"),
)

__all__ = [
    "APPLIED",
    "CONSENTED",
    "DECISIONS",
    "DUPLICATE",
    "EXCLUDING",
    "OBJECTED",
    "REFUSED",
    "WITHDRAWN",
    "consent_decisions",
    "consent_files",
]
