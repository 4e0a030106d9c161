"""The lineage store's tables (SQLAlchemy Core).

Every event that arrives is kept verbatim in ``raw_events``; the other tables are a normalised index of
those events, rebuilt from them if ever needed. Times are kept as normalised UTC strings with nine
fractional digits (``2026-11-28T10:00:00.123456789Z``): OpenLineage producers send nanoseconds,
neither SQLite nor Python datetimes keep them, and in this form string order is time order.

Changing a table here needs a new Alembic revision in ``migrations/versions``.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: Length of a normalised timestamp, see module docstring.
TIMESTAMP_LENGTH: Final = 30
#: Longest namespace, name, version or field name accepted (UTF-8 bytes): indexed columns must stay
#: well under PostgreSQL's btree row limit.
MAX_NAME_BYTES: Final = 1024

EVENT_KINDS: Final = ("run", "dataset", "job")
DIRECTIONS: Final = ("input", "output")
VERSION_SOURCES: Final = ("facet", "derived")
FACET_OWNERS: Final = ("run", "job", "dataset", "dataset_version", "input", "output")


def _timestamp(name: str, *, nullable: bool = True) -> Column[str]:
    return Column(name, String(TIMESTAMP_LENGTH), nullable=nullable)


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


raw_events = Table(
    "raw_events",
    metadata,
    Column("id", Integer, primary_key=True),
    # sha256 of the canonical JSON (sorted keys, no whitespace): the same event sent twice is one row.
    Column("event_hash", String(64), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),
    Column("event_type", String(16)),
    _timestamp("event_time", nullable=False),
    Column("run_uuid", String(36), index=True),
    _timestamp("received_at", nullable=False),
    # The exact text that arrived, returned unchanged by export_raw_events().
    Column("body", Text, nullable=False),
    CheckConstraint(_in("kind", EVENT_KINDS), name="kind"),
)

namespaces = Table(
    "namespaces",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False, unique=True),
    _timestamp("created_at", nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace_id", ForeignKey("namespaces.id"), nullable=False),
    Column("name", String, nullable=False),
    # From the ParentRunFacet: the DAG a task belongs to.
    Column("parent_job_id", ForeignKey("jobs.id"), index=True),
    _timestamp("created_at", nullable=False),
    UniqueConstraint("namespace_id", "name"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_uuid", String(36), nullable=False, unique=True),
    Column("job_id", ForeignKey("jobs.id"), nullable=False),
    # Not a foreign key: the parent's own events may arrive later (or never).
    Column("parent_run_uuid", String(36), index=True),
    Column("state", String(16)),
    # Event time of the event that set ``state``: a merge never lets an earlier state win.
    _timestamp("state_time"),
    _timestamp("started_at"),
    _timestamp("ended_at"),
    _timestamp("nominal_start_time"),
    _timestamp("nominal_end_time"),
    _timestamp("created_at", nullable=False),
    _timestamp("updated_at", nullable=False),
    Index("ix_runs_job_id_created_at", "job_id", "created_at"),
)

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace_id", ForeignKey("namespaces.id"), nullable=False),
    Column("name", String, nullable=False),
    _timestamp("created_at", nullable=False),
    UniqueConstraint("namespace_id", "name"),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset_id", ForeignKey("datasets.id"), nullable=False),
    Column("version", String, nullable=False),
    # "facet": the producer named it (DatasetVersionDatasetFacet); "derived": we made one up for a
    # (run, direction, dataset) that came without, so the exact content is not known.
    Column("version_source", String(8), nullable=False),
    Column("created_by_run_id", ForeignKey("runs.id"), index=True),
    _timestamp("created_at", nullable=False),
    # Earliest event time at which a run wrote this version; NULL if it was only ever read.
    _timestamp("produced_at"),
    UniqueConstraint("dataset_id", "version"),
    CheckConstraint(_in("version_source", VERSION_SOURCES), name="version_source"),
    Index("ix_dataset_versions_dataset_id_produced_at", "dataset_id", "produced_at"),
    # Look-ups by content (a sha256 names the same bytes in every dataset that held them).
    Index("ix_dataset_versions_version", "version"),
)

run_dataset_versions = Table(
    "run_dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("run_id", ForeignKey("runs.id"), nullable=False),
    Column("dataset_version_id", ForeignKey("dataset_versions.id"), nullable=False),
    Column("direction", String(6), nullable=False),
    _timestamp("created_at", nullable=False),
    # Both orders are covering indexes: trace walks version -> producing runs -> their inputs.
    # Who sent the event that made this edge: NULL for the pipeline's own transport (writing to the
    # store directly), else "<token kind>:<token name>" of the producer token it was POSTed with.
    Column("producer", String(80)),
    UniqueConstraint("run_id", "direction", "dataset_version_id"),
    Index("ix_run_dataset_versions_version_direction_run", "dataset_version_id", "direction", "run_id"),
    CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
)

job_datasets = Table(
    "job_datasets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("job_id", ForeignKey("jobs.id"), nullable=False),
    Column("dataset_id", ForeignKey("datasets.id"), nullable=False),
    Column("direction", String(6), nullable=False),
    UniqueConstraint("job_id", "direction", "dataset_id"),
    Index("ix_job_datasets_dataset_direction_job", "dataset_id", "direction", "job_id"),
    CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
)

facets = Table(
    "facets",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", ForeignKey("raw_events.id"), nullable=False, index=True),
    # Copied from the event so facets merge in event-time order whatever order events arrived in.
    _timestamp("event_time", nullable=False),
    Column("owner", String(16), nullable=False),
    Column("run_id", ForeignKey("runs.id"), index=True),
    Column("job_id", ForeignKey("jobs.id"), index=True),
    Column("dataset_id", ForeignKey("datasets.id"), index=True),
    Column("dataset_version_id", ForeignKey("dataset_versions.id"), index=True),
    Column("name", String, nullable=False),
    Column("schema_url", String),
    Column("body", JSON, nullable=False),
    CheckConstraint(_in("owner", FACET_OWNERS), name="owner"),
)

column_lineage = Table(
    "column_lineage",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("output_dataset_version_id", ForeignKey("dataset_versions.id"), nullable=False),
    Column("run_id", ForeignKey("runs.id"), index=True),
    Column("event_id", ForeignKey("raw_events.id"), nullable=False, index=True),
    # NULL: a dependency of the whole dataset (filter, join, ...), the facet's "dataset" list.
    Column("output_field", String),
    Column("input_namespace", String, nullable=False),
    Column("input_name", String, nullable=False),
    Column("input_field", String, nullable=False),
    # The exact input version when the run read that dataset; filled in when the input arrives.
    Column("input_dataset_version_id", ForeignKey("dataset_versions.id"), index=True),
    Column("transformation_type", String),
    Column("transformation_subtype", String),
    Column("transformation_description", Text),
    Column("masking", Boolean),
    # sha256 of the row's content: the same dependency reported by START and COMPLETE is one row.
    Column("row_hash", String(64), nullable=False),
    UniqueConstraint("output_dataset_version_id", "row_hash"),
)

#: Earlier names of a dataset: ``censustrace init`` renames datasets whose naming changed (SQLite names
#: carried the database path before 0.2) and keeps each old name here, so it still resolves.
dataset_aliases = Table(
    "dataset_aliases",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("namespace", String, nullable=False),
    Column("name", String, nullable=False),
    Column("dataset_id", ForeignKey("datasets.id"), nullable=False, index=True),
    _timestamp("created_at", nullable=False),
    UniqueConstraint("namespace", "name"),
)

#: The grouped graph upstream of one dataset version (a released share file), kept once worked out: the
#: walk costs seconds with 20,000 files behind it, and what is upstream of a released file rarely
#: changes. The marks are the highest ids of the tables seen when it was worked out; a later row that
#: could change it (a link touching an older run or writing an older version, or a census facet on an
#: older version) makes it stale (``censustrace.lineage.store.upstream``).
upstream_summaries = Table(
    "upstream_summaries",
    metadata,
    Column("start_version_id", ForeignKey("dataset_versions.id"), primary_key=True),
    Column("link_mark", Integer, nullable=False),
    Column("facet_mark", Integer, nullable=False),
    Column("run_mark", Integer, nullable=False),
    Column("version_mark", Integer, nullable=False),
    _timestamp("computed_at", nullable=False),
    Column("summary", JSON, nullable=False),
)

#: The sources of a kept summary in page order (name, version, id): a page is a primary-key range.
upstream_sources = Table(
    "upstream_sources",
    metadata,
    Column("start_version_id", ForeignKey("upstream_summaries.start_version_id"), primary_key=True),
    Column("ordinal", Integer, primary_key=True, autoincrement=False),
    Column("version_id", Integer, nullable=False),
)

#: The heads of every audit chain (``censustrace.audit.heads``), kept here too so that deleting the newest
#: rows of one store, or restoring it from an old backup, is seen from the other (revision 0004). The
#: warehouse's copy is ``censustrace.audit.tables.audit_heads``.
lineage_audit_heads = Table(
    "lineage_audit_heads",
    metadata,
    Column("log", String(32), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("row_hash", String(64), nullable=False),
    Column("at", String(27), nullable=False),
)

# The audit trail's access log lives in this database and this chain too, registered on ``metadata`` when
# ``censustrace.audit.tables`` is imported. The viewer's tables (users, sessions, tokens) share the database
# but have their own metadata and chain (``censustrace.viewer.tables``); the lineage store never needs them.
