"""Consent and shares: consent files and decisions (by pupil key), the share register, the disclosure log
and retention erasures.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of the value lists at this revision (the tables modules may move on; this file must not).
_FILE_STATUSES = "'applied', 'duplicate', 'refused'"
_DECISIONS = "'objected', 'withdrawn', 'consented'"
_SHARE_STATUSES = "'blocked', 'checked', 'built', 'recorded', 'delivered'"


def upgrade() -> None:
    op.create_table(
        "consent_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consent_file_id", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("original_name", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("laestab", sa.String(length=7), nullable=True),
        sa.Column("term", sa.String(length=3), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("duplicate_of", sa.String(length=40), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("rows_applied", sa.Integer(), nullable=False),
        sa.Column("rows_rejected", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.CheckConstraint(f"status IN ({_FILE_STATUSES})", name=op.f("ck_consent_files_status")),
        sa.ForeignKeyConstraint(
            ["duplicate_of"],
            ["consent_files.consent_file_id"],
            name=op.f("fk_consent_files_duplicate_of_consent_files"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_files")),
        sa.UniqueConstraint("consent_file_id", name=op.f("uq_consent_files_consent_file_id")),
    )
    op.create_index(op.f("ix_consent_files_sha256"), "consent_files", ["sha256"])

    op.create_table(
        "consent_decisions",
        sa.Column("consent_file_id", sa.String(length=40), nullable=False),
        sa.Column("row_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("pupil_key", sa.String(length=64), nullable=False),
        sa.Column("purpose", sa.String(), nullable=False),
        sa.Column("decision", sa.String(length=10), nullable=False),
        sa.Column("recorded_on", sa.Date(), nullable=False),
        sa.Column("source", sa.String(), nullable=True),
        sa.CheckConstraint(f"decision IN ({_DECISIONS})", name=op.f("ck_consent_decisions_decision")),
        sa.ForeignKeyConstraint(
            ["consent_file_id"],
            ["consent_files.consent_file_id"],
            name=op.f("fk_consent_decisions_consent_file_id_consent_files"),
        ),
        sa.PrimaryKeyConstraint("consent_file_id", "row_number", name=op.f("pk_consent_decisions")),
    )
    op.create_index("ix_consent_decisions_pupil_key_purpose", "consent_decisions", ["pupil_key", "purpose"])
    op.create_index("ix_consent_decisions_purpose", "consent_decisions", ["purpose"])

    op.create_table(
        "shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("share_id", sa.String(length=40), nullable=False),
        sa.Column("agreement_id", sa.String(), nullable=False),
        sa.Column("run_key", sa.String(), nullable=True),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("agreement_sha256", sa.String(length=64), nullable=True),
        sa.Column("recipient", sa.String(), nullable=True),
        sa.Column("recipient_type", sa.String(), nullable=True),
        sa.Column("purpose", sa.String(), nullable=True),
        sa.Column("lawful_basis", sa.String(), nullable=True),
        sa.Column("special_category_condition", sa.String(), nullable=True),
        sa.Column("legal_gateway", sa.String(), nullable=True),
        sa.Column("approval", sa.JSON(), nullable=True),
        sa.Column("policy_version", sa.String(length=64), nullable=True),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("transforms", sa.JSON(), nullable=False),
        sa.Column("pupils", sa.Integer(), nullable=True),
        sa.Column("excluded", sa.JSON(), nullable=True),
        sa.Column("suppressed", sa.JSON(), nullable=True),
        sa.Column("source_extracts", sa.JSON(), nullable=True),
        sa.Column("consent_files", sa.JSON(), nullable=True),
        sa.Column("consent_check", sa.JSON(), nullable=True),
        sa.Column("file_name", sa.String(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("manifest_sha256", sa.String(length=64), nullable=True),
        sa.Column("file_path", sa.String(), nullable=True),
        sa.Column("lineage_run_id", sa.String(length=36), nullable=True),
        sa.Column("lineage_event", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(f"status IN ({_SHARE_STATUSES})", name=op.f("ck_shares_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shares")),
        sa.UniqueConstraint("share_id", name=op.f("uq_shares_share_id")),
    )
    op.create_index("ix_shares_agreement_id_run_key", "shares", ["agreement_id", "run_key"])

    op.create_table(
        "disclosures",
        sa.Column("share_id", sa.String(length=40), nullable=False),
        sa.Column("pupil_key", sa.String(length=64), nullable=False),
        sa.Column("extract_id", sa.String(length=40), nullable=False),
        sa.Column("record_number", sa.Integer(), nullable=False),
        sa.Column("blank_fields", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["extract_id"], ["extracts.extract_id"], name=op.f("fk_disclosures_extract_id_extracts")
        ),
        sa.ForeignKeyConstraint(
            ["share_id"], ["shares.share_id"], name=op.f("fk_disclosures_share_id_shares")
        ),
        sa.PrimaryKeyConstraint("share_id", "pupil_key", name=op.f("pk_disclosures")),
    )
    op.create_index("ix_disclosures_pupil_key", "disclosures", ["pupil_key"])

    op.create_table(
        "erasures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("table_name", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("extracts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_erasures")),
    )


def downgrade() -> None:
    op.drop_table("erasures")
    op.drop_index("ix_disclosures_pupil_key", table_name="disclosures")
    op.drop_table("disclosures")
    op.drop_index("ix_shares_agreement_id_run_key", table_name="shares")
    op.drop_table("shares")
    op.drop_index("ix_consent_decisions_purpose", table_name="consent_decisions")
    op.drop_index("ix_consent_decisions_pupil_key_purpose", table_name="consent_decisions")
    op.drop_table("consent_decisions")
    op.drop_index(op.f("ix_consent_files_sha256"), table_name="consent_files")
    op.drop_table("consent_files")
