"""Dataset aliases: earlier names of a renamed dataset (SQLite names lose the database path).

The renaming itself needs the instance's settings (``CENSUSTRACE_INSTANCE``), so ``censustrace init``
does it after this revision (``censustrace.lineage.store.upgrades``).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "dataset_aliases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_aliases_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_aliases")),
        sa.UniqueConstraint("namespace", "name", name=op.f("uq_dataset_aliases_namespace_name")),
    )
    op.create_index(op.f("ix_dataset_aliases_dataset_id"), "dataset_aliases", ["dataset_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_dataset_aliases_dataset_id"), table_name="dataset_aliases")
    op.drop_table("dataset_aliases")
