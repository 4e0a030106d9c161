"""Audit trail: the share register chain (one chained row per finished share, with the digest of its
disclosure rows) and the heads of every audit chain; the chain append-only, and TRUNCATE refused on the
share register, the disclosure log and the chain (PostgreSQL).

Revision ID: 0006
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NO_TRUNCATE = ("shares", "disclosures", "share_register_chain", "audit_heads")
_SQLITE_UP = [
    "CREATE TRIGGER share_register_chain_no_update BEFORE UPDATE ON share_register_chain "
    "BEGIN SELECT RAISE(ABORT, 'share_register_chain is append-only'); END",
    "CREATE TRIGGER share_register_chain_no_delete BEFORE DELETE ON share_register_chain "
    "BEGIN SELECT RAISE(ABORT, 'share_register_chain is append-only'); END",
    "CREATE TRIGGER audit_heads_no_delete BEFORE DELETE ON audit_heads "
    "BEGIN SELECT RAISE(ABORT, 'audit_heads only moves forward'); END",
]
_POSTGRES_UP = [
    "CREATE FUNCTION warehouse_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$",
    "CREATE TRIGGER share_register_chain_append_only BEFORE UPDATE OR DELETE ON share_register_chain "
    "FOR EACH ROW EXECUTE FUNCTION warehouse_append_only()",
    "CREATE FUNCTION warehouse_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is evidence: TRUNCATE is refused', TG_TABLE_NAME; END $$",
    *(
        f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
        "FOR EACH STATEMENT EXECUTE FUNCTION warehouse_refuse_truncate()"
        for table in _NO_TRUNCATE
    ),
]


def upgrade() -> None:
    op.create_table(
        "share_register_chain",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("share_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("record_sha256", sa.String(length=64), nullable=False),
        sa.Column("disclosures", sa.Integer(), nullable=False),
        sa.Column("disclosures_sha256", sa.String(length=64), nullable=False),
        sa.Column("sealed_at", sa.String(length=27), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_share_register_chain")),
        sa.UniqueConstraint("share_id", name=op.f("uq_share_register_chain_share_id")),
    )
    op.create_table(
        "audit_heads",
        sa.Column("log", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=27), nullable=False),
        sa.PrimaryKeyConstraint("log", name=op.f("pk_audit_heads")),
    )
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_UP if dialect == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in _NO_TRUNCATE:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP FUNCTION IF EXISTS warehouse_refuse_truncate() CASCADE")
        op.execute("DROP FUNCTION IF EXISTS warehouse_append_only() CASCADE")
    op.drop_table("audit_heads")
    op.drop_table("share_register_chain")
