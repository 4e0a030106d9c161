"""Disclosure log without per-row foreign keys: a national share writes millions of disclosure rows, and
PostgreSQL checks each foreign key with one query per row (two thirds of the insert's time, measured in
bench/bench_share.py). The build checks the same facts once per share instead (see
``censustrace.shares.build``).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FOREIGN_KEYS = (
    ("fk_disclosures_extract_id_extracts", "extracts", "extract_id", "extract_id"),
    ("fk_disclosures_share_id_shares", "shares", "share_id", "share_id"),
)


def upgrade() -> None:
    # batch mode: SQLite cannot drop a constraint in place, so it copies the table (PostgreSQL alters).
    with op.batch_alter_table("disclosures") as batch:
        for name, _table, _local, _remote in _FOREIGN_KEYS:
            batch.drop_constraint(name, type_="foreignkey")


def downgrade() -> None:
    with op.batch_alter_table("disclosures") as batch:
        for name, table, local, remote in _FOREIGN_KEYS:
            batch.create_foreign_key(name, table, [local], [remote])
