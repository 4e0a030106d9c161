"""Initial lineage store: raw events, namespaces, jobs, runs, datasets and their versions, run inputs and
outputs by dataset version, facets and column lineage.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "namespaces",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_namespaces")),
        sa.UniqueConstraint("name", name=op.f("uq_namespaces_name")),
    )
    op.create_table(
        "raw_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_hash", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("event_type", sa.String(length=16), nullable=True),
        sa.Column("event_time", sa.String(length=30), nullable=False),
        sa.Column("run_uuid", sa.String(length=36), nullable=True),
        sa.Column("received_at", sa.String(length=30), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.CheckConstraint("kind IN ('run', 'dataset', 'job')", name=op.f("ck_raw_events_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raw_events")),
        sa.UniqueConstraint("event_hash", name=op.f("uq_raw_events_event_hash")),
    )
    op.create_index(op.f("ix_raw_events_run_uuid"), "raw_events", ["run_uuid"])

    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_datasets_namespace_id_namespaces")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_datasets_namespace_id_name")),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("namespace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("parent_job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(
            ["namespace_id"], ["namespaces.id"], name=op.f("fk_jobs_namespace_id_namespaces")
        ),
        sa.ForeignKeyConstraint(["parent_job_id"], ["jobs.id"], name=op.f("fk_jobs_parent_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("namespace_id", "name", name=op.f("uq_jobs_namespace_id_name")),
    )
    op.create_index(op.f("ix_jobs_parent_job_id"), "jobs", ["parent_job_id"])

    op.create_table(
        "job_datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.CheckConstraint("direction IN ('input', 'output')", name=op.f("ck_job_datasets_direction")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_job_datasets_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_job_datasets_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_datasets")),
        sa.UniqueConstraint(
            "job_id", "direction", "dataset_id", name=op.f("uq_job_datasets_job_id_direction_dataset_id")
        ),
    )
    op.create_index(
        "ix_job_datasets_dataset_direction_job", "job_datasets", ["dataset_id", "direction", "job_id"]
    )

    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_uuid", sa.String(length=36), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("parent_run_uuid", sa.String(length=36), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=True),
        sa.Column("state_time", sa.String(length=30), nullable=True),
        sa.Column("started_at", sa.String(length=30), nullable=True),
        sa.Column("ended_at", sa.String(length=30), nullable=True),
        sa.Column("nominal_start_time", sa.String(length=30), nullable=True),
        sa.Column("nominal_end_time", sa.String(length=30), nullable=True),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.Column("updated_at", sa.String(length=30), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_runs_job_id_jobs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
        sa.UniqueConstraint("run_uuid", name=op.f("uq_runs_run_uuid")),
    )
    op.create_index("ix_runs_job_id_created_at", "runs", ["job_id", "created_at"])
    op.create_index(op.f("ix_runs_parent_run_uuid"), "runs", ["parent_run_uuid"])

    op.create_table(
        "dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(), nullable=False),
        sa.Column("version_source", sa.String(length=8), nullable=False),
        sa.Column("created_by_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.Column("produced_at", sa.String(length=30), nullable=True),
        sa.CheckConstraint(
            "version_source IN ('facet', 'derived')", name=op.f("ck_dataset_versions_version_source")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_run_id"], ["runs.id"], name=op.f("fk_dataset_versions_created_by_run_id_runs")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_dataset_versions_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dataset_versions")),
        sa.UniqueConstraint("dataset_id", "version", name=op.f("uq_dataset_versions_dataset_id_version")),
    )
    op.create_index(op.f("ix_dataset_versions_created_by_run_id"), "dataset_versions", ["created_by_run_id"])
    op.create_index(
        "ix_dataset_versions_dataset_id_produced_at", "dataset_versions", ["dataset_id", "produced_at"]
    )

    op.create_table(
        "column_lineage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("output_dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("output_field", sa.String(), nullable=True),
        sa.Column("input_namespace", sa.String(), nullable=False),
        sa.Column("input_name", sa.String(), nullable=False),
        sa.Column("input_field", sa.String(), nullable=False),
        sa.Column("input_dataset_version_id", sa.Integer(), nullable=True),
        sa.Column("transformation_type", sa.String(), nullable=True),
        sa.Column("transformation_subtype", sa.String(), nullable=True),
        sa.Column("transformation_description", sa.Text(), nullable=True),
        sa.Column("masking", sa.Boolean(), nullable=True),
        sa.Column("row_hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["event_id"], ["raw_events.id"], name=op.f("fk_column_lineage_event_id_raw_events")
        ),
        sa.ForeignKeyConstraint(
            ["input_dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_column_lineage_input_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["output_dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_column_lineage_output_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_column_lineage_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_column_lineage")),
        sa.UniqueConstraint(
            "output_dataset_version_id",
            "row_hash",
            name=op.f("uq_column_lineage_output_dataset_version_id_row_hash"),
        ),
    )
    op.create_index(op.f("ix_column_lineage_event_id"), "column_lineage", ["event_id"])
    op.create_index(
        op.f("ix_column_lineage_input_dataset_version_id"), "column_lineage", ["input_dataset_version_id"]
    )
    op.create_index(op.f("ix_column_lineage_run_id"), "column_lineage", ["run_id"])

    op.create_table(
        "facets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("event_id", sa.Integer(), nullable=False),
        sa.Column("event_time", sa.String(length=30), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("dataset_id", sa.Integer(), nullable=True),
        sa.Column("dataset_version_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("schema_url", sa.String(), nullable=True),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "owner IN ('run', 'job', 'dataset', 'dataset_version', 'input', 'output')",
            name=op.f("ck_facets_owner"),
        ),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name=op.f("fk_facets_dataset_id_datasets")),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_facets_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(["event_id"], ["raw_events.id"], name=op.f("fk_facets_event_id_raw_events")),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name=op.f("fk_facets_job_id_jobs")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_facets_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_facets")),
    )
    op.create_index(op.f("ix_facets_dataset_id"), "facets", ["dataset_id"])
    op.create_index(op.f("ix_facets_dataset_version_id"), "facets", ["dataset_version_id"])
    op.create_index(op.f("ix_facets_event_id"), "facets", ["event_id"])
    op.create_index(op.f("ix_facets_job_id"), "facets", ["job_id"])
    op.create_index(op.f("ix_facets_run_id"), "facets", ["run_id"])

    op.create_table(
        "run_dataset_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("dataset_version_id", sa.Integer(), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("created_at", sa.String(length=30), nullable=False),
        sa.CheckConstraint(
            "direction IN ('input', 'output')", name=op.f("ck_run_dataset_versions_direction")
        ),
        sa.ForeignKeyConstraint(
            ["dataset_version_id"],
            ["dataset_versions.id"],
            name=op.f("fk_run_dataset_versions_dataset_version_id_dataset_versions"),
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_dataset_versions_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_dataset_versions")),
        sa.UniqueConstraint(
            "run_id",
            "direction",
            "dataset_version_id",
            name=op.f("uq_run_dataset_versions_run_id_direction_dataset_version_id"),
        ),
    )
    op.create_index(
        "ix_run_dataset_versions_version_direction_run",
        "run_dataset_versions",
        ["dataset_version_id", "direction", "run_id"],
    )


def downgrade() -> None:
    op.drop_table("run_dataset_versions")
    op.drop_table("facets")
    op.drop_table("column_lineage")
    op.drop_table("dataset_versions")
    op.drop_table("runs")
    op.drop_table("job_datasets")
    op.drop_table("jobs")
    op.drop_table("datasets")
    op.drop_table("raw_events")
    op.drop_table("namespaces")
