"""Compliance evidence: file tombstones (redacted copies of received and released files), Article 19
notices, subject access lookups by pupil key (and an index for lookups by former UPN), and the
agreement's retention on each share.

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

# Frozen copies of the value lists at this revision.
_COPIES = "'archive', 'quarantine', 'outbox'"
_KINDS = "'rectification', 'erasure', 'objection'"


def upgrade() -> None:
    with op.batch_alter_table("shares") as batch:
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
    op.create_table(
        "file_tombstones",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("copy", sa.String(length=12), nullable=False),
        sa.Column("original_sha256", sa.String(length=64), nullable=False),
        sa.Column("from_sha256", sa.String(length=64), nullable=False),
        sa.Column("redacted_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.String(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("rule", sa.String(), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("whole_file", sa.Boolean(), nullable=False),
        sa.Column("share_id", sa.String(length=40), nullable=True),
        sa.CheckConstraint(f"copy IN ({_COPIES})", name=op.f("ck_file_tombstones_copy")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_file_tombstones")),
    )
    op.create_index(
        op.f("ix_file_tombstones_original_sha256"), "file_tombstones", ["original_sha256"], unique=False
    )
    op.create_table(
        "article19_notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event_ref", sa.String(), nullable=False),
        sa.Column("share_id", sa.String(length=40), nullable=False),
        sa.Column("recipient", sa.String(), nullable=False),
        sa.Column("pupil_key", sa.String(length=64), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("notice_id", sa.String(length=40), nullable=False),
        sa.Column("notice_sha256", sa.String(length=64), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_by", sa.String(), nullable=False),
        sa.CheckConstraint(f"kind IN ({_KINDS})", name=op.f("ck_article19_notices_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_article19_notices")),
        sa.UniqueConstraint(
            "kind", "event_ref", "share_id", "pupil_key",
            name=op.f("uq_article19_notices_kind_event_ref_share_id_pupil_key"),
        ),
    )  # fmt: skip
    op.create_index(op.f("ix_article19_notices_pupil_key"), "article19_notices", ["pupil_key"], unique=False)
    op.create_index("ix_article19_notices_notice_id", "article19_notices", ["notice_id"], unique=False)
    op.create_table(
        "subject_lookups",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_name", sa.String(length=64), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("method", sa.String(length=12), nullable=False),
        sa.Column("pupil_key", sa.String(length=64), nullable=False),
        sa.Column("shares", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subject_lookups")),
    )
    op.create_index(op.f("ix_subject_lookups_pupil_key"), "subject_lookups", ["pupil_key"], unique=False)
    op.create_index("ix_pupil_former_upn", "pupil", ["former_upn"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pupil_former_upn", table_name="pupil")
    op.drop_index(op.f("ix_subject_lookups_pupil_key"), table_name="subject_lookups")
    op.drop_table("subject_lookups")
    op.drop_index("ix_article19_notices_notice_id", table_name="article19_notices")
    op.drop_index(op.f("ix_article19_notices_pupil_key"), table_name="article19_notices")
    op.drop_table("article19_notices")
    op.drop_index(op.f("ix_file_tombstones_original_sha256"), table_name="file_tombstones")
    op.drop_table("file_tombstones")
    with op.batch_alter_table("shares") as batch:
        batch.drop_column("retention_days")
