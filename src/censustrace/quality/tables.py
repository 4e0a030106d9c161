"""Warehouse table of data quality results: one row per extract, suite and expectation.

Counts and record numbers only: never a value from the data (GX's unexpected values, partial lists and
index queries are dropped before anything is stored; see ``censustrace.quality.engine``). What each
column means is in ``docs/data-quality.md``. Changing the table needs a new Alembic revision.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
)

from censustrace.warehouse.tables import EXTRACT_ID_LENGTH, UtcDateTime, metadata

SEVERITIES: Final = ("critical", "warning")

validation_result = Table(
    "validation_result",
    metadata,
    Column("extract_id", String(EXTRACT_ID_LENGTH), ForeignKey("extracts.extract_id"), primary_key=True),
    Column("suite", String(40), primary_key=True),
    # The expectation's stable reason code (meta.code), unique over all suites.
    Column("code", String(60), primary_key=True),
    Column("name", String, nullable=False),  # type(columns), e.g. expect_column_values_to_be_in_set(sex)
    Column("type", String(100), nullable=False),
    # The column judged; NULL for a table-level expectation. (Not "column": a reserved word in SQL.)
    Column("column_name", String(64)),
    Column("severity", String(8), nullable=False),
    Column("success", Boolean, nullable=False),
    Column("element_count", Integer),
    Column("unexpected_count", Integer),
    Column("unexpected_percent", Float),
    # Record numbers of the rows that failed, ascending (a position in the file, not pupil data).
    Column("unexpected_records", JSON(none_as_null=True)),
    # Why the expectation could not be evaluated (e.g. a column missing from the data); NULL if it was.
    Column("error", String),
    # The Data Docs page of this suite's validation, relative to the Data Docs root.
    Column("data_docs_page", String),
    Column("validated_at", UtcDateTime, nullable=False),
    CheckConstraint("severity IN ('critical', 'warning')", name="severity"),
    Index("ix_validation_result_code", "code"),
)

__all__ = ["SEVERITIES", "validation_result"]
