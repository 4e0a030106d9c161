"""The warehouse tables (SQLAlchemy Core): the extract registry, the canonical pupil tables and their
staging twins. What each column means is in ``docs/data-model.md`` ("Warehouse tables and the extract
registry"); the column names of the pupil tables are the ``PupilRecord`` field names.

Changing a table here needs a new Alembic revision in ``migrations/versions`` (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# --- registry statuses -------------------------------------------------------------------------------
RECEIVED: Final = "received"  # registered; waiting to be staged (a CSV table also waits for its siblings)
STAGED: Final = "staged"  # parsed into the staging tables; waiting for validation and publish
LOADED: Final = "loaded"  # published into the canonical tables
QUARANTINED: Final = "quarantined"  # refused as a whole; the bytes are in the quarantine folder
DUPLICATE: Final = "duplicate"  # the same bytes were received before; nothing loaded again
STATUSES: Final = (RECEIVED, STAGED, LOADED, QUARANTINED, DUPLICATE)
#: A receipt in one of these states is resumed, not registered again, when its bytes arrive again.
UNFINISHED: Final = (RECEIVED, STAGED)

#: LA CSV tables (``extracts.csv_table``); the pupilonroll table heads the extract.
CSV_TABLES: Final = ("pupilonroll", "addressesonroll", "fsmperiod")

EXTRACT_ID_LENGTH: Final = 40


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on both backends (SQLite keeps no zone: naive values read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("warehouse timestamps must be timezone-aware")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def in_check(column: str, values: tuple[str, ...]) -> str:
    """SQL for a CHECK constraint: ``column`` holds one of ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _extract_ref(name: str, **kwargs: Any) -> Column[str]:
    return Column(name, String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id"), **kwargs)


# --- the registry: one row per received file -----------------------------------------------------------
extracts = Table(
    "extracts",
    metadata,
    Column("id", Integer, primary_key=True),
    # ext_ + the first 20 hex digits of the sha256 for the first receipt of some bytes; ext_<..>-<n> for
    # the n-th receipt of the same bytes (see registry.extract_id_for).
    Column("extract_id", String(EXTRACT_ID_LENGTH), nullable=False, unique=True),
    Column("sha256", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("original_name", String, nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
    Column("format", String(20)),
    # The LA CSV table this file is (pupilonroll heads the extract; the others are its parts).
    Column("csv_table", String(20)),
    Column("la", String(3)),
    Column("estab", String(4)),
    Column("laestab", String(7)),
    Column("urn", String(6)),
    Column("term", String(3)),
    Column("year", Integer),
    Column("reference_date", Date),
    Column("status", String(12), nullable=False),
    # [{code, message, location}]: why it was quarantined, or what was wrong with some rows; no pupil data.
    Column("reasons", JSON, nullable=False),
    Column("rows_read", Integer),
    Column("rows_rejected", Integer),
    Column("pupil_count", Integer),
    _extract_ref("supersedes"),
    _extract_ref("superseded_by"),
    _extract_ref("duplicate_of"),
    _extract_ref("part_of", index=True),
    # A retry of a quarantined extract (``censustrace quarantine retry``): the extract it retries. Its
    # received_at is that of the original receipt, so supersession orders it by when the bytes came.
    _extract_ref("retry_of"),
    Column("staged_at", UtcDateTime),
    Column("loaded_at", UtcDateTime),
    Column("quarantined_at", UtcDateTime),
    CheckConstraint(in_check("status", STATUSES), name="status"),
    CheckConstraint(f"csv_table IS NULL OR {in_check('csv_table', CSV_TABLES)}", name="csv_table"),
    Index("ix_extracts_laestab_term_year", "laestab", "term", "year"),
)

#: Formats whose files are a school's census return; only a census supersedes a census. A CTF is an
#: extract of its source school at one moment, never part of a census (docs/data-model.md).
CENSUS_FORMATS: Final = ("school_census_xml", "la_csv")

# --- what was done about a quarantined extract: retried or discarded, with the reason given ----------
RETRY: Final = "retry"
DISCARD: Final = "discard"
quarantine_action = Table(
    "quarantine_action",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("extract_id", String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id"), nullable=False),
    Column("action", String(10), nullable=False),
    Column("reason", String),  # the operator's words (discard: required); never pupil data
    Column("acted_at", UtcDateTime, nullable=False),
    Column("actor", String),  # the operating-system user who ran the command
    # retry: the new extract that ran the archived bytes again
    Column("result_extract_id", String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id")),
    CheckConstraint(in_check("action", (RETRY, DISCARD)), name="action"),
    Index("ix_quarantine_action_extract_id", "extract_id"),
)

# --- canonical pupil tables (and their staging twins) -------------------------------------------------
# PupilRecord fields kept as one column each in ``pupil``: all scalars except the address items (in
# ``pupil_address``); the two code lists as ";"-joined text (None when empty).
PUPIL_TEXT: Final = (
    "upn",
    "former_upn",
    "uln",
    "surname",
    "forename",
    "middle_names",
    "preferred_surname",
    "former_surname",
)
LIST_FIELDS: Final = ("nationality", "sen_needs")
LIST_SEPARATOR: Final = ";"

ADDRESS_COLUMNS: Final = ("saon", "paon", "street", "locality", "town", "administrative_area", "post_town")
FSM_COLUMNS: Final = ("period_number", "start_date", "end_date", "uk_country")


def _pupil_columns() -> list[Column[Any]]:
    return [
        Column("extract_id", String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id"), primary_key=True),
        Column("record_number", Integer, primary_key=True, autoincrement=False),
        # HMAC-SHA256 (hex) of the UPN with the instance's pupil-key secret; None when there is no UPN.
        Column("pupil_key", String(64)),
        *(Column(name, String) for name in PUPIL_TEXT),
        Column("dob", Date),
        Column("sex", String),
        Column("ethnicity", String),
        Column("language", String),
        Column("service_child", String),
        Column("nationality", String),
        Column("country_of_birth", String),
        Column("entry_date", Date),
        Column("enrol_status", String),
        Column("nc_year", String),
        Column("boarder", Boolean),
        Column("part_time", Boolean),
        Column("yssa", String),
        Column("top_up_funding", Boolean),
        Column("sen_provision", String),
        Column("sen_needs", String),
        Column("fsm_eligible", Boolean),
        Column("laestab", String(7), nullable=False),
        Column("urn", String(6)),
        Column("census_term", String(3), nullable=False),
        Column("census_year", Integer, nullable=False),
        Column("reference_date", Date, nullable=False),
    ]


def _address_columns() -> list[Column[Any]]:
    return [
        Column("extract_id", String(EXTRACT_ID_LENGTH), primary_key=True),
        Column("record_number", Integer, primary_key=True, autoincrement=False),
        *(Column(name, String) for name in ADDRESS_COLUMNS),
        Column("postcode", String),
        Column("uprn", String),
    ]


def _fsm_columns() -> list[Column[Any]]:
    return [
        Column("extract_id", String(EXTRACT_ID_LENGTH), primary_key=True),
        Column("record_number", Integer, primary_key=True, autoincrement=False),
        Column("period_number", Integer, primary_key=True, autoincrement=False),
        Column("start_date", Date, nullable=False),
        Column("end_date", Date),
        Column("uk_country", String),
    ]


def _child_of(parent: str) -> ForeignKeyConstraint:
    return ForeignKeyConstraint(
        ["extract_id", "record_number"], [f"{parent}.extract_id", f"{parent}.record_number"]
    )


pupil = Table(
    "pupil",
    metadata,
    *_pupil_columns(),
    Index("ix_pupil_pupil_key", "pupil_key"),
    # Subject access by a former UPN (censustrace.compliance.subject) runs on every UPN lookup.
    Index("ix_pupil_former_upn", "former_upn"),
)
pupil_address = Table("pupil_address", metadata, *_address_columns(), _child_of("pupil"))
fsm_period = Table("fsm_period", metadata, *_fsm_columns(), _child_of("pupil"))

# Records of a loaded extract that were not published, and why: record number and reason codes only.
rejected_record = Table(
    "rejected_record",
    metadata,
    Column("extract_id", String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id"), primary_key=True),
    Column("record_number", Integer, primary_key=True, autoincrement=False),
    Column("codes", JSON, nullable=False),
)

# Staging: the same columns, written by ``stage`` in one transaction and emptied by ``publish``.
staged_pupil = Table(
    "staged_pupil",
    metadata,
    *_pupil_columns(),
    # Row-level parse issues: [{code, field, item}] (item: the source path or CSV column, never a value).
    Column("issues", JSON(none_as_null=True)),
    # Why the record will not be published: ["CT-PARSE-VALUE:dob", "<validation code>", ...]; None = kept.
    Column("reject_codes", JSON(none_as_null=True)),
)
staged_pupil_address = Table("staged_pupil_address", metadata, *_address_columns(), _child_of("staged_pupil"))
staged_fsm_period = Table("staged_fsm_period", metadata, *_fsm_columns(), _child_of("staged_pupil"))

#: Canonical table -> its staging twin.
STAGING: Final = {pupil: staged_pupil, pupil_address: staged_pupil_address, fsm_period: staged_fsm_period}
#: Published pupil data, in insert order (deletes go the other way).
CANONICAL: Final = (pupil, pupil_address, fsm_period)

# --- views (created by the migration; declared here for queries only, not in ``metadata``) -------------
CURRENT_VIEWS: Final = {
    "pupil": "current_pupil",
    "pupil_address": "current_pupil_address",
    "fsm_period": "current_fsm_period",
}
