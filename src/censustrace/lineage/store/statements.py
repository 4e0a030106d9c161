"""The lineage store writer's SQL statements, built once per dialect (parameters bound at execution)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from censustrace.lineage.store.tables import (
    column_lineage,
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    jobs,
    namespaces,
    raw_events,
    run_dataset_versions,
    runs,
)


def _insert_ignore(dialect: str, table: Table, conflict: Sequence[str]) -> PgInsert | SqliteInsert:
    """INSERT ... ON CONFLICT DO NOTHING: safe when a concurrent transaction inserts the same key."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict))


class WriterStatements:
    """The writer's statements for one dialect, built once (parameters are bound at execution)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        ns, ds, dv, rdv, cl = namespaces, datasets, dataset_versions, run_dataset_versions, column_lineage
        self.raw_event = _insert_ignore(dialect, raw_events, ["event_hash"]).returning(raw_events.c.id)
        # (kind, namespace id, namespace, its created_at, row id, name, created_at, parent job id): every
        # namespace asked for, with the datasets of those names in it, then the jobs asked for.
        self.entities = union_all(
            select(
                literal_column("'dataset'").label("kind"),
                ns.c.id.label("namespace_id"),
                ns.c.name.label("namespace"),
                ns.c.created_at.label("namespace_created_at"),
                ds.c.id,
                ds.c.name,
                ds.c.created_at,
                null().label("parent_job_id"),
            )
            .select_from(
                ns.outerjoin(
                    ds,
                    and_(
                        ds.c.namespace_id == ns.c.id,
                        ds.c.name.in_(bindparam("b_datasets", expanding=True)),
                    ),
                )
            )
            .where(ns.c.name.in_(bindparam("b_namespaces", expanding=True))),
            select(
                literal_column("'job'"),
                ns.c.id,
                ns.c.name,
                ns.c.created_at,
                jobs.c.id,
                jobs.c.name,
                jobs.c.created_at,
                jobs.c.parent_job_id,
            )
            .select_from(
                ns.join(
                    jobs,
                    and_(
                        jobs.c.namespace_id == ns.c.id, jobs.c.name.in_(bindparam("b_jobs", expanding=True))
                    ),
                )
            )
            .where(ns.c.name.in_(bindparam("b_job_namespaces", expanding=True))),
        )
        self.lower_created_at = {
            table.name: update(table)
            .where(table.c.id == bindparam("b_id"), table.c.created_at > bindparam("b_at"))
            .values(created_at=bindparam("b_at"))
            for table in (namespaces, datasets, jobs, dataset_versions)
        }
        self.set_parent_job = (
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.parent_job_id.is_(None))
            .values(parent_job_id=bindparam("b_parent"))
        )
        derived = dv.c.version_source == "derived"
        # The run, locked until commit (PostgreSQL), once per version it links, in version id order.
        self.run = (
            select(
                runs,
                rdv.c.direction,
                dv.c.id.label("v_id"),
                dv.c.dataset_id.label("v_dataset_id"),
                dv.c.version.label("v_version"),
                dv.c.version_source.label("v_source"),
                dv.c.created_at.label("v_created_at"),
                dv.c.produced_at.label("v_produced_at"),
                dv.c.created_by_run_id.label("v_created_by_run_id"),
                and_(derived, exists().where(facets.c.dataset_version_id == dv.c.id)).label("v_facets"),
                and_(derived, exists().where(cl.c.output_dataset_version_id == dv.c.id)).label(
                    "v_lineage_output"
                ),
                and_(derived, exists().where(cl.c.input_dataset_version_id == dv.c.id)).label(
                    "v_lineage_input"
                ),
                exists()
                .where(cl.c.run_id == runs.c.id, cl.c.input_dataset_version_id.is_(None))
                .label("open_lineage"),
            )
            .select_from(
                runs.outerjoin(rdv, rdv.c.run_id == runs.c.id).outerjoin(
                    dv, dv.c.id == rdv.c.dataset_version_id
                )
            )
            .where(runs.c.run_uuid == bindparam("b_run_uuid"))
            .order_by(dv.c.id)
            .with_for_update(of=runs)
        )
        self.new_run = _insert_ignore(dialect, runs, ["run_uuid"]).returning(runs.c.id)
        self.merge_run = update(runs).where(runs.c.id == bindparam("b_id"))  # SET: the columns passed
        self.find_version = select(
            dv.c.id, dv.c.version_source, dv.c.created_at, dv.c.produced_at, dv.c.created_by_run_id
        ).where(dv.c.dataset_id == bindparam("b_dataset"), dv.c.version == bindparam("b_version"))
        self.new_version = _insert_ignore(dialect, dv, ["dataset_id", "version"]).returning(dv.c.id)
        self.lower_produced_at = (
            update(dv)
            .where(
                dv.c.id == bindparam("b_id"),
                (dv.c.produced_at.is_(None)) | (dv.c.produced_at > bindparam("b_at")),
            )
            .values(produced_at=bindparam("b_at"), created_by_run_id=bindparam("b_run"))
        )
        self.link_job = _insert_ignore(dialect, job_datasets, ["job_id", "direction", "dataset_id"])
        self.link_run = _insert_ignore(dialect, rdv, ["run_id", "direction", "dataset_version_id"])
        self.facets = insert(facets)
        self.lineage = _insert_ignore(dialect, cl, ["output_dataset_version_id", "row_hash"])
        self.fill_lineage_input = (
            update(cl)
            .where(
                cl.c.run_id == bindparam("b_run"),
                cl.c.input_namespace == bindparam("b_namespace"),
                cl.c.input_name == bindparam("b_name"),
                cl.c.input_dataset_version_id.is_(None),
            )
            .values(input_dataset_version_id=bindparam("b_version"))
        )
        self.run_inputs = (
            select(ns.c.name, ds.c.name, dv.c.id)
            .select_from(rdv)
            .join(dv, dv.c.id == rdv.c.dataset_version_id)
            .join(ds, ds.c.id == dv.c.dataset_id)
            .join(ns, ns.c.id == ds.c.namespace_id)
            .where(rdv.c.run_id == bindparam("b_run"), rdv.c.direction == "input")
            .order_by(dv.c.id)
        )
        # Replacing a derived version (b_old) by the named one (b_new).
        self.move_facets = (
            update(facets)
            .where(facets.c.dataset_version_id == bindparam("b_old"))
            .values(dataset_version_id=bindparam("b_new"))
        )
        self.drop_lineage_twins = delete(cl).where(
            cl.c.output_dataset_version_id == bindparam("b_old"),
            cl.c.row_hash.in_(
                select(cl.c.row_hash).where(cl.c.output_dataset_version_id == bindparam("b_new"))
            ),
        )
        self.move_lineage_output = (
            update(cl)
            .where(cl.c.output_dataset_version_id == bindparam("b_old"))
            .values(output_dataset_version_id=bindparam("b_new"))
        )
        self.move_lineage_input = (
            update(cl)
            .where(cl.c.input_dataset_version_id == bindparam("b_old"))
            .values(input_dataset_version_id=bindparam("b_new"))
        )
        self.unlink_version = delete(rdv).where(rdv.c.dataset_version_id == bindparam("b_old"))
        self.drop_version = delete(dv).where(dv.c.id == bindparam("b_old"))

    def insert_ignore(self, table: Table, conflict: Sequence[str]) -> PgInsert | SqliteInsert:
        return _insert_ignore(self.dialect, table, conflict)


@cache
def statements_for(dialect: str) -> WriterStatements:
    return WriterStatements(dialect)
