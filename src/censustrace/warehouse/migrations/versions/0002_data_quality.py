"""Data quality: ``validation_result``, one row per extract, suite and expectation (counts and record
numbers only).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A frozen copy of censustrace.quality.tables at this revision.
    op.create_table(
        "validation_result",
        sa.Column("extract_id", sa.String(length=40), nullable=False),
        sa.Column("suite", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=60), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("column_name", sa.String(length=64), nullable=True),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("success", sa.Boolean(), nullable=False),
        sa.Column("element_count", sa.Integer(), nullable=True),
        sa.Column("unexpected_count", sa.Integer(), nullable=True),
        sa.Column("unexpected_percent", sa.Float(), nullable=True),
        sa.Column("unexpected_records", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("data_docs_page", sa.String(), nullable=True),
        sa.Column("validated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("severity IN ('critical', 'warning')", name=op.f("ck_validation_result_severity")),
        sa.ForeignKeyConstraint(
            ["extract_id"],
            ["extracts.extract_id"],
            name=op.f("fk_validation_result_extract_id_extracts"),
        ),
        sa.PrimaryKeyConstraint("extract_id", "suite", "code", name=op.f("pk_validation_result")),
    )
    op.create_index("ix_validation_result_code", "validation_result", ["code"])


def downgrade() -> None:
    op.drop_index("ix_validation_result_code", table_name="validation_result")
    op.drop_table("validation_result")
