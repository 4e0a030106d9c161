"""Audit trail and lineage producers: the access log chained (seq, prev_hash, row_hash) with a pupil
key; the heads of every audit chain; which producer wrote each lineage edge; pipeline producer tokens;
TRUNCATE refused on the access log (PostgreSQL).

The viewer's ``api_tokens`` is altered only where this chain's older revision 0002 created it; a fresh
store has no viewer tables (the viewer's own chain creates them with the final check).

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Every access_log column but pupil_key: `rekey` may rewrite a pupil key, nothing may rewrite the rest.
_FIXED = "id, at, user_name, role, action, what, result_count, outcome, via, seq, prev_hash, row_hash"
_SQLITE_UP = [
    "DROP TRIGGER IF EXISTS access_log_no_update",
    f"CREATE TRIGGER access_log_no_update BEFORE UPDATE OF {_FIXED} ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
    "CREATE TRIGGER lineage_audit_heads_no_delete BEFORE DELETE ON lineage_audit_heads "
    "BEGIN SELECT RAISE(ABORT, 'lineage_audit_heads only moves forward'); END",
]
_SQLITE_DOWN = [
    "DROP TRIGGER IF EXISTS lineage_audit_heads_no_delete",
    "DROP TRIGGER IF EXISTS access_log_no_update",
    "CREATE TRIGGER access_log_no_update BEFORE UPDATE ON access_log "
    "BEGIN SELECT RAISE(ABORT, 'access_log is append-only'); END",
]
_POSTGRES_UP = [
    # Same name as before (0002); now an UPDATE that changes nothing but pupil_key passes.
    "CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' AND (to_jsonb(NEW) - 'pupil_key') = (to_jsonb(OLD) - 'pupil_key') THEN "
    "RETURN NEW; END IF; RAISE EXCEPTION 'access_log is append-only'; END $$",
    "CREATE FUNCTION lineage_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION '% is evidence: TRUNCATE is refused', TG_TABLE_NAME; END $$",
    "CREATE TRIGGER access_log_no_truncate BEFORE TRUNCATE ON access_log "
    "FOR EACH STATEMENT EXECUTE FUNCTION lineage_refuse_truncate()",
    "CREATE TRIGGER lineage_audit_heads_no_truncate BEFORE TRUNCATE ON lineage_audit_heads "
    "FOR EACH STATEMENT EXECUTE FUNCTION lineage_refuse_truncate()",
]
_POSTGRES_DOWN = [
    "DROP TRIGGER IF EXISTS lineage_audit_heads_no_truncate ON lineage_audit_heads",
    "DROP TRIGGER IF EXISTS access_log_no_truncate ON access_log",
    "DROP FUNCTION IF EXISTS lineage_refuse_truncate()",
    "CREATE OR REPLACE FUNCTION access_log_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'access_log is append-only'; END $$",
]


def upgrade() -> None:
    op.add_column("access_log", sa.Column("pupil_key", sa.String(length=64), nullable=True))
    op.add_column("access_log", sa.Column("seq", sa.Integer(), nullable=True))
    op.add_column("access_log", sa.Column("prev_hash", sa.String(length=64), nullable=True))
    op.add_column("access_log", sa.Column("row_hash", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_access_log_pupil_key"), "access_log", ["pupil_key"])
    # A unique index (not a constraint): SQLite cannot add a constraint without copying the table.
    op.create_index(op.f("uq_access_log_seq"), "access_log", ["seq"], unique=True)
    op.add_column("run_dataset_versions", sa.Column("producer", sa.String(length=80), nullable=True))
    op.create_table(
        "lineage_audit_heads",
        sa.Column("log", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.Column("at", sa.String(length=27), nullable=False),
        sa.PrimaryKeyConstraint("log", name=op.f("pk_lineage_audit_heads")),
    )
    if sa.inspect(op.get_bind()).has_table("api_tokens"):
        with op.batch_alter_table("api_tokens") as batch:
            batch.drop_constraint(op.f("ck_api_tokens_kind"), type_="check")
            batch.create_check_constraint(
                op.f("ck_api_tokens_kind"), "kind IN ('producer', 'api', 'pipeline')"
            )
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_UP if dialect == "postgresql" else _SQLITE_UP:
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for statement in _POSTGRES_DOWN if dialect == "postgresql" else _SQLITE_DOWN:
        op.execute(statement)
    if sa.inspect(op.get_bind()).has_table("api_tokens"):
        with op.batch_alter_table("api_tokens") as batch:
            batch.drop_constraint(op.f("ck_api_tokens_kind"), type_="check")
            batch.create_check_constraint(op.f("ck_api_tokens_kind"), "kind IN ('producer', 'api')")
    op.drop_table("lineage_audit_heads")
    op.drop_column("run_dataset_versions", "producer")
    op.drop_index(op.f("uq_access_log_seq"), table_name="access_log")
    op.drop_index(op.f("ix_access_log_pupil_key"), table_name="access_log")
    with op.batch_alter_table("access_log") as batch:
        for column in ("row_hash", "prev_hash", "seq", "pupil_key"):
            batch.drop_column(column)
