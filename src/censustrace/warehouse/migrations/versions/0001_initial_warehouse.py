"""Initial warehouse: the extract registry, the canonical pupil tables (pupil, pupil_address, fsm_period),
rejected records, their staging twins, and the current_* views.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A frozen copy of the column lists at this revision (tables.py may move on; this file must not).
_TEXT = (
    "upn",
    "former_upn",
    "uln",
    "surname",
    "forename",
    "middle_names",
    "preferred_surname",
    "former_surname",
)
_ADDRESS = (
    "saon",
    "paon",
    "street",
    "locality",
    "town",
    "administrative_area",
    "post_town",
    "postcode",
    "uprn",
)
_STATUSES = "'received', 'staged', 'loaded', 'quarantined', 'duplicate'"


def _key() -> list[sa.Column[Any]]:
    return [
        sa.Column("extract_id", sa.String(length=40), nullable=False),
        sa.Column("record_number", sa.Integer(), autoincrement=False, nullable=False),
    ]


def _pupil_columns() -> list[sa.Column[Any]]:
    return [
        *_key(),
        sa.Column("pupil_key", sa.String(length=64), nullable=True),
        *(sa.Column(name, sa.String(), nullable=True) for name in _TEXT),
        sa.Column("dob", sa.Date(), nullable=True),
        sa.Column("sex", sa.String(), nullable=True),
        sa.Column("ethnicity", sa.String(), nullable=True),
        sa.Column("language", sa.String(), nullable=True),
        sa.Column("service_child", sa.String(), nullable=True),
        sa.Column("nationality", sa.String(), nullable=True),
        sa.Column("country_of_birth", sa.String(), nullable=True),
        sa.Column("entry_date", sa.Date(), nullable=True),
        sa.Column("enrol_status", sa.String(), nullable=True),
        sa.Column("nc_year", sa.String(), nullable=True),
        sa.Column("boarder", sa.Boolean(), nullable=True),
        sa.Column("part_time", sa.Boolean(), nullable=True),
        sa.Column("yssa", sa.String(), nullable=True),
        sa.Column("top_up_funding", sa.Boolean(), nullable=True),
        sa.Column("sen_provision", sa.String(), nullable=True),
        sa.Column("sen_needs", sa.String(), nullable=True),
        sa.Column("fsm_eligible", sa.Boolean(), nullable=True),
        sa.Column("laestab", sa.String(length=7), nullable=False),
        sa.Column("urn", sa.String(length=6), nullable=True),
        sa.Column("census_term", sa.String(length=3), nullable=False),
        sa.Column("census_year", sa.Integer(), nullable=False),
        sa.Column("reference_date", sa.Date(), nullable=False),
    ]


def _pupil_table(name: str, *extra: sa.Column[Any]) -> None:
    op.create_table(
        name,
        *_pupil_columns(),
        *extra,
        sa.ForeignKeyConstraint(
            ["extract_id"], ["extracts.extract_id"], name=op.f(f"fk_{name}_extract_id_extracts")
        ),
        sa.PrimaryKeyConstraint("extract_id", "record_number", name=op.f(f"pk_{name}")),
    )


def _address_table(name: str, parent: str) -> None:
    op.create_table(
        name,
        *_key(),
        *(sa.Column(column, sa.String(), nullable=True) for column in _ADDRESS),
        sa.ForeignKeyConstraint(
            ["extract_id", "record_number"],
            [f"{parent}.extract_id", f"{parent}.record_number"],
            name=op.f(f"fk_{name}_extract_id_{parent}"),
        ),
        sa.PrimaryKeyConstraint("extract_id", "record_number", name=op.f(f"pk_{name}")),
    )


def _fsm_table(name: str, parent: str) -> None:
    op.create_table(
        name,
        *_key(),
        sa.Column("period_number", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("uk_country", sa.String(), nullable=True),
        sa.ForeignKeyConstraint(
            ["extract_id", "record_number"],
            [f"{parent}.extract_id", f"{parent}.record_number"],
            name=op.f(f"fk_{name}_extract_id_{parent}"),
        ),
        sa.PrimaryKeyConstraint("extract_id", "record_number", "period_number", name=op.f(f"pk_{name}")),
    )


def _extract_ref(column: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column], ["extracts.extract_id"], name=op.f(f"fk_extracts_{column}_extracts")
    )


# The rows of the latest accepted extract of each school and census: loaded and not superseded.
_CURRENT_VIEWS = {
    "current_pupil": "pupil",
    "current_pupil_address": "pupil_address",
    "current_fsm_period": "fsm_period",
}
_VIEW_SQL = (
    "CREATE VIEW {view} AS SELECT t.* FROM {table} AS t "
    "JOIN extracts AS e ON e.extract_id = t.extract_id "
    "WHERE e.status = 'loaded' AND e.superseded_by IS NULL"
)


def upgrade() -> None:
    op.create_table(
        "extracts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("extract_id", sa.String(length=40), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("original_name", sa.String(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("format", sa.String(length=20), nullable=True),
        sa.Column("csv_table", sa.String(length=20), nullable=True),
        sa.Column("la", sa.String(length=3), nullable=True),
        sa.Column("estab", sa.String(length=4), nullable=True),
        sa.Column("laestab", sa.String(length=7), nullable=True),
        sa.Column("urn", sa.String(length=6), nullable=True),
        sa.Column("term", sa.String(length=3), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("reference_date", sa.Date(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=True),
        sa.Column("rows_rejected", sa.Integer(), nullable=True),
        sa.Column("pupil_count", sa.Integer(), nullable=True),
        sa.Column("supersedes", sa.String(length=40), nullable=True),
        sa.Column("superseded_by", sa.String(length=40), nullable=True),
        sa.Column("duplicate_of", sa.String(length=40), nullable=True),
        sa.Column("part_of", sa.String(length=40), nullable=True),
        sa.Column("staged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("quarantined_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "csv_table IS NULL OR csv_table IN ('pupilonroll', 'addressesonroll', 'fsmperiod')",
            name=op.f("ck_extracts_csv_table"),
        ),
        sa.CheckConstraint(f"status IN ({_STATUSES})", name=op.f("ck_extracts_status")),
        _extract_ref("duplicate_of"),
        _extract_ref("part_of"),
        _extract_ref("superseded_by"),
        _extract_ref("supersedes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_extracts")),
        sa.UniqueConstraint("extract_id", name=op.f("uq_extracts_extract_id")),
    )
    op.create_index("ix_extracts_laestab_term_year", "extracts", ["laestab", "term", "year"])
    op.create_index(op.f("ix_extracts_part_of"), "extracts", ["part_of"])
    op.create_index(op.f("ix_extracts_sha256"), "extracts", ["sha256"])

    _pupil_table("pupil")
    op.create_index("ix_pupil_pupil_key", "pupil", ["pupil_key"])
    _address_table("pupil_address", "pupil")
    _fsm_table("fsm_period", "pupil")
    op.create_table(
        "rejected_record",
        *_key(),
        sa.Column("codes", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["extract_id"], ["extracts.extract_id"], name=op.f("fk_rejected_record_extract_id_extracts")
        ),
        sa.PrimaryKeyConstraint("extract_id", "record_number", name=op.f("pk_rejected_record")),
    )

    _pupil_table(
        "staged_pupil",
        sa.Column("issues", sa.JSON(), nullable=True),
        sa.Column("reject_codes", sa.JSON(), nullable=True),
    )
    _address_table("staged_pupil_address", "staged_pupil")
    _fsm_table("staged_fsm_period", "staged_pupil")

    for view, table in _CURRENT_VIEWS.items():
        op.execute(_VIEW_SQL.format(view=view, table=table))


def downgrade() -> None:
    for view in _CURRENT_VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view}")
    for table in (
        "staged_fsm_period",
        "staged_pupil_address",
        "staged_pupil",
        "rejected_record",
        "fsm_period",
        "pupil_address",
        "pupil",
    ):
        op.drop_table(table)
    op.drop_index(op.f("ix_extracts_sha256"), table_name="extracts")
    op.drop_index(op.f("ix_extracts_part_of"), table_name="extracts")
    op.drop_index("ix_extracts_laestab_term_year", table_name="extracts")
    op.drop_table("extracts")
