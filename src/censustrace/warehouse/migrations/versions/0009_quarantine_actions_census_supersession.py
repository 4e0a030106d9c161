"""Quarantine actions and census-only supersession: ``extracts.retry_of``, ``quarantine_action`` (retries
and discards with their reason), and current views that show census returns only (a CTF is never part
of a school's current census).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_CURRENT_VIEWS = {
    "current_pupil": "pupil",
    "current_pupil_address": "pupil_address",
    "current_fsm_period": "fsm_period",
}
_OLD_VIEW_SQL = (
    "CREATE VIEW {view} AS SELECT t.* FROM {table} AS t "
    "JOIN extracts AS e ON e.extract_id = t.extract_id "
    "WHERE e.status = 'loaded' AND e.superseded_by IS NULL"
)
# The rows of the latest loaded census return of each school and census; CTFs are not census returns.
_VIEW_SQL = _OLD_VIEW_SQL + " AND e.format IN ('school_census_xml', 'la_csv')"


def _views(sql: str) -> None:
    for view in _CURRENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for view, table in _CURRENT_VIEWS.items():
        op.execute(sql.format(view=view, table=table))


def upgrade() -> None:
    for view in _CURRENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    if op.get_bind().dialect.name == "sqlite":
        # ADD COLUMN with its reference, in place: a batch rebuild of ``extracts`` would have to drop a
        # table that pupil rows reference, which SQLite refuses while foreign keys are enforced.
        op.execute(
            "ALTER TABLE extracts ADD COLUMN retry_of VARCHAR(40) "
            "CONSTRAINT fk_extracts_retry_of_extracts REFERENCES extracts (extract_id)"
        )
    else:
        op.add_column("extracts", sa.Column("retry_of", sa.String(length=40), nullable=True))
        op.create_foreign_key(
            op.f("fk_extracts_retry_of_extracts"), "extracts", "extracts", ["retry_of"], ["extract_id"]
        )
    op.create_table(
        "quarantine_action",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extract_id", sa.String(length=40), nullable=False),
        sa.Column("action", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("acted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(), nullable=True),
        sa.Column("result_extract_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint("action IN ('retry', 'discard')", name=op.f("ck_quarantine_action_action")),
        sa.ForeignKeyConstraint(
            ["extract_id"], ["extracts.extract_id"], name=op.f("fk_quarantine_action_extract_id_extracts")
        ),
        sa.ForeignKeyConstraint(
            ["result_extract_id"],
            ["extracts.extract_id"],
            name=op.f("fk_quarantine_action_result_extract_id_extracts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine_action")),
    )
    op.create_index("ix_quarantine_action_extract_id", "quarantine_action", ["extract_id"])
    _views(_VIEW_SQL)


def downgrade() -> None:
    op.drop_index("ix_quarantine_action_extract_id", table_name="quarantine_action")
    op.drop_table("quarantine_action")
    for view in _CURRENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("extracts") as batch:  # rebuilt: SQLite cannot drop a referencing column
            batch.drop_column("retry_of")
    else:
        op.drop_constraint(op.f("fk_extracts_retry_of_extracts"), "extracts", type_="foreignkey")
        op.drop_column("extracts", "retry_of")
    _views(_OLD_VIEW_SQL)
