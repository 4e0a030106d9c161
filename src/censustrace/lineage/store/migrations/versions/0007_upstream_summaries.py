"""Kept upstream summaries of released files (the share page), and an index on dataset versions by content.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_dataset_versions_version"), "dataset_versions", ["version"])
    op.create_table(
        "upstream_summaries",
        sa.Column("start_version_id", sa.Integer(), nullable=False),
        sa.Column("link_mark", sa.Integer(), nullable=False),
        sa.Column("facet_mark", sa.Integer(), nullable=False),
        sa.Column("run_mark", sa.Integer(), nullable=False),
        sa.Column("version_mark", sa.Integer(), nullable=False),
        sa.Column("computed_at", sa.String(length=30), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["start_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_upstream_summaries_start_version_id_dataset_versions"),
        ),
        sa.PrimaryKeyConstraint("start_version_id", name=op.f("pk_upstream_summaries")),
    )
    op.create_table(
        "upstream_sources",
        sa.Column("start_version_id", sa.Integer(), nullable=False),
        sa.Column("ordinal", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["start_version_id"],
            ["upstream_summaries.start_version_id"],
            name=op.f("fk_upstream_sources_start_version_id_upstream_summaries"),
        ),
        sa.PrimaryKeyConstraint("start_version_id", "ordinal", name=op.f("pk_upstream_sources")),
    )


def downgrade() -> None:
    op.drop_table("upstream_sources")
    op.drop_table("upstream_summaries")
    op.drop_index(op.f("ix_dataset_versions_version"), table_name="dataset_versions")
