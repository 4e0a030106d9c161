"""Indexing parsed OpenLineage events in the normalised tables, inside the caller's transaction.

The caller (:mod:`censustrace.lineage.store.ingest`) holds one transaction per event or per batch: an
event is stored whole or not at all.

* Dedupe: the sha256 of the canonical JSON (sorted keys, no whitespace) is unique, so an event sent
  twice (a client retry) is stored once; the text kept is the first one received.
* Out of order: a run's state only moves forward (START < RUNNING < COMPLETE/FAIL/ABORT; between two
  terminal states the later event time wins); times merge as min/max; facets are kept per event and
  merged in event-time order when read.
* Versions: an input or output's version is ``facets.version.datasetVersion`` when given. Otherwise one is
  derived per (run, direction, dataset), recorded with ``version_source = "derived"``, and replaced by
  the real one if another event of the same run names it.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy.engine import Connection

from censustrace.errors import CensustraceError
from censustrace.lineage.store.entities import _EntityWriter
from censustrace.lineage.store.parse import (
    ColumnDependency,
    DatasetRef,
    EventKind,
    Json,
    ParsedEvent,
    opt_str,
)
from censustrace.lineage.store.seen import (
    _NO_REFERRERS,
    _UNKNOWN_REFERRERS,
    Produced,
    _Referrers,
    _Seen,
    _Version,
)
from censustrace.lineage.store.statements import statements_for

_STATE_RANK: Final = {"OTHER": 0, "START": 1, "RUNNING": 2, "COMPLETE": 3, "ABORT": 3, "FAIL": 3}
_TERMINAL: Final = frozenset({"COMPLETE", "ABORT", "FAIL"})
# Derived versions are uuid5 names under this namespace: the same (run, direction, dataset) always
# derives the same version, so START and COMPLETE of one run agree.
_DERIVED_VERSION_NS: Final = uuid.UUID("5d0f6c1e-8f4b-5b7e-9a51-63656e737573")


class LineageConflict(CensustraceError):
    """A valid event that contradicts what the store already holds (a run id reused for another job)."""

    code = "CT-LINEAGE-CONFLICT"


@dataclass(frozen=True)
class StoreResult:
    """``stored``: this call added the event; ``duplicate``: the same event was already stored."""

    stored: bool
    duplicate: bool
    kind: EventKind
    run_id: str | None = None


# On PostgreSQL every statement is a round trip and on SQLite building one costs about as much as running
# it, so the writer issues as few as the work needs, each built once per dialect:
# * every namespace, dataset and job the event names is looked up in one query (unless this transaction
#   has seen it already); the missing ones are created with one INSERT per table, in key order so that
#   concurrent writers lock them in one order;
# * the run row is locked and read together with every version the run links (and whether anything
#   else points at its derived versions): a new run needs no version bookkeeping at all, an existing one
#   no query per dataset, and replacing a derived version moves only what exists;
# * links, facets and column lineage are inserted at the end, one executemany per table;
# * created_at and produced_at only ever move earlier, so a value read in this transaction is never
#   earlier than the stored one: when it is already no later than the event's, there is nothing to update.
def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"


def derived_version(run_id: str, direction: str, namespace: str, name: str) -> str:
    """The version recorded for a run's input/output that came without a DatasetVersionDatasetFacet."""
    return str(uuid.uuid5(_DERIVED_VERSION_NS, "\x1f".join((run_id, direction, namespace, name))))


class _Writer(_EntityWriter):
    """Indexes one parsed event inside the caller's transaction."""

    def __init__(
        self, conn: Connection, event: ParsedEvent, event_id: int, seen: _Seen, producer: str | None = None
    ) -> None:
        self.conn = conn
        # Recorded on each edge this event adds: None for the pipeline's transport (see ownership.py).
        self.producer = producer
        self.sql = statements_for(conn.dialect.name)
        self.event = event
        self.event_id = event_id
        self.at = event.event_time
        self.seen = seen
        # Rows inserted at the end, one executemany per table, in the order they were added.
        self.job_links: list[dict[str, Any]] = []
        self.run_links: list[dict[str, Any]] = []
        self.facet_rows: list[dict[str, Any]] = []
        self.lineage_rows: dict[tuple[int, str], dict[str, Any]] = {}
        # The run's links, stored and added by this event: versions per (direction, dataset id) in id
        # order; (direction, dataset id) pairs whose job link exists; (direction, version id) pairs.
        self.links: dict[tuple[str, int], list[_Version]] = {}
        self.job_linked: set[tuple[str, int]] = set()
        self.linked: set[tuple[str, int]] = set()
        self.referrers: dict[int, _Referrers] = {}
        # Whether the run has column lineage still waiting for its input's version.
        self.open_lineage = False

    def write(self) -> None:
        self.entities()
        if self.event.kind == "run":
            self.write_run()
        elif self.event.kind == "job":
            self.write_job()
        elif self.event.dataset is not None:
            self.static_dataset(self.event.dataset, job_id=None, direction=None)
        self.flush()

    def flush(self) -> None:
        if self.job_links:
            self.conn.execute(self.sql.link_job, self.job_links)
            self.job_links = []
        self.flush_run_links()
        if self.facet_rows:
            self.conn.execute(self.sql.facets, self.facet_rows)
            self.facet_rows = []
        if self.lineage_rows:
            self.conn.execute(self.sql.lineage, list(self.lineage_rows.values()))
            self.lineage_rows = {}

    def flush_run_links(self) -> None:
        if self.run_links:
            self.conn.execute(self.sql.link_run, self.run_links)
            self.run_links = []

    # Namespaces, datasets, jobs --------------------------------------------------------------------------
    def add_facets(self, owner: str, bodies: Mapping[str, Json], **ids: int | None) -> None:
        self.facet_rows.extend(
            {
                "event_id": self.event_id,
                "event_time": self.at,
                "owner": owner,
                "run_id": ids.get("run_id"),
                "job_id": ids.get("job_id"),
                "dataset_id": ids.get("dataset_id"),
                "dataset_version_id": ids.get("dataset_version_id"),
                "name": name,
                "schema_url": opt_str(body.get("_schemaURL")),
                "body": body,
            }
            for name, body in bodies.items()
        )

    def link_job(self, job_id: int, dataset_id: int, direction: str) -> None:
        if (direction, dataset_id) not in self.job_linked:
            self.job_linked.add((direction, dataset_id))
            self.job_links.append({"job_id": job_id, "dataset_id": dataset_id, "direction": direction})

    # Events ------------------------------------------------------------------------------------------
    def write_job(self) -> None:
        assert self.event.job is not None
        job_id = self.seen.jobs[self.event.job].id
        self.add_facets("job", self.event.job_facets, job_id=job_id)
        for direction, refs in (("input", self.event.inputs), ("output", self.event.outputs)):
            for ref in refs:
                self.static_dataset(ref, job_id=job_id, direction=direction)

    def static_dataset(self, ref: DatasetRef, *, job_id: int | None, direction: str | None) -> None:
        """A dataset mentioned outside a run (DatasetEvent, JobEvent): facets on its version if it names
        one, else on the dataset."""
        dataset_id = self.seen.datasets[(ref.namespace, ref.name)].id
        if job_id is not None and direction is not None:
            self.link_job(job_id, dataset_id, direction)
        if ref.version is None:
            self.add_facets("dataset", ref.facets, dataset_id=dataset_id)
            return
        version = self.version(dataset_id, ref.version, "facet", self.at, None, look_up_first=True)
        self.add_facets("dataset_version", ref.facets, dataset_version_id=version.id)
        self.column_lineage(version.id, ref.column_lineage, run_id=None, inputs={})

    def write_run(self) -> None:
        event = self.event
        assert event.run_id is not None
        assert event.job is not None
        job = self.seen.jobs[event.job]
        if event.parent_job is not None:
            parent = self.seen.jobs[event.parent_job]
            if parent.id != job.id and job.parent_job_id is None:
                self.conn.execute(self.sql.set_parent_job, {"b_id": job.id, "b_parent": parent.id})
                job.parent_job_id = parent.id
        run_id = self.run(job.id)
        self.add_facets("job", event.job_facets, job_id=job.id, run_id=run_id)
        self.add_facets("run", event.run_facets, run_id=run_id)
        for ref in event.inputs:
            version = self.run_dataset(run_id, job.id, ref, "input")
            if self.open_lineage:
                # Column lineage that arrived before this input can now name the exact input version.
                self.conn.execute(
                    self.sql.fill_lineage_input,
                    {
                        "b_run": run_id,
                        "b_namespace": ref.namespace,
                        "b_name": ref.name,
                        "b_version": version.id,
                    },
                )
                known = self.referrers.get(version.id, _UNKNOWN_REFERRERS)
                self.referrers[version.id] = dataclasses.replace(known, lineage_input=True)
        outputs = [(ref, self.run_dataset(run_id, job.id, ref, "output")) for ref in event.outputs]
        if any(ref.column_lineage for ref, _ in outputs):
            inputs = self.run_inputs(run_id)
            for ref, version in outputs:
                # The same dataset listed again later in the event may have replaced its derived version.
                while version.replaced_by is not None:
                    version = version.replaced_by
                self.column_lineage(version.id, ref.column_lineage, run_id=run_id, inputs=inputs)

    def run(self, job_id: int) -> int:
        """Create or merge the run row; returns its id. Locks it (PostgreSQL) until commit, and learns the
        versions it links."""
        event, at = self.event, self.at
        assert event.run_id is not None
        rows = self.conn.execute(self.sql.run, {"b_run_uuid": event.run_id}).all()
        state = event.event_type or "OTHER"
        if not rows:
            values = {
                "run_uuid": event.run_id,
                "job_id": job_id,
                "state": state,
                "state_time": at,
                "started_at": at if state == "START" else None,
                "ended_at": at if state in _TERMINAL else None,
                "parent_run_uuid": event.parent_run_id,
                "nominal_start_time": event.nominal_start_time,
                "nominal_end_time": event.nominal_end_time,
                "created_at": at,
                "updated_at": at,
            }
            created = self.conn.execute(self.sql.new_run, values).scalar_one_or_none()
            if created is not None:
                return int(created)  # a new run links nothing yet
            rows = self.conn.execute(self.sql.run, {"b_run_uuid": event.run_id}).all()  # lost a race
        row = rows[0]
        if row.job_id != job_id:
            assert event.job is not None
            raise LineageConflict(
                f"$.run.runId: run {event.run_id} already belongs to another job, not "
                f"{event.job[0]}:{event.job[1]}"
            )
        changes: dict[str, Any] = {
            "created_at": min(row.created_at, at),
            "updated_at": max(row.updated_at, at),
        }
        if _state_wins(state, at, row.state, row.state_time):
            changes.update(state=state, state_time=at)
            if state in _TERMINAL:
                changes["ended_at"] = at
        if state == "START" and (row.started_at is None or at < row.started_at):
            changes["started_at"] = at
        if row.parent_run_uuid is None and event.parent_run_id is not None:
            changes["parent_run_uuid"] = event.parent_run_id
        if event.nominal_start_time is not None:
            changes["nominal_start_time"] = event.nominal_start_time
        if event.nominal_end_time is not None:
            changes["nominal_end_time"] = event.nominal_end_time
        changes = {column: value for column, value in changes.items() if row._mapping[column] != value}
        if changes:
            self.conn.execute(self.sql.merge_run, {"b_id": row.id, **changes})
        self.open_lineage = bool(row.open_lineage)
        for link in rows:
            if link.v_id is None:
                continue
            version = _Version(
                int(link.v_id),
                int(link.v_dataset_id),
                link.v_version,
                link.v_source,
                link.v_created_at,
                link.v_produced_at,
                link.v_created_by_run_id,
            )
            self.seen.versions[(version.dataset_id, version.version)] = version
            self.links.setdefault((link.direction, version.dataset_id), []).append(version)
            self.job_linked.add((link.direction, version.dataset_id))
            self.linked.add((link.direction, version.id))
            self.referrers[version.id] = _Referrers(
                facets=bool(link.v_facets),
                lineage_output=bool(link.v_lineage_output),
                lineage_input=bool(link.v_lineage_input),
            )
        return int(row.id)

    def run_dataset(self, run_id: int, job_id: int, ref: DatasetRef, direction: str) -> _Version:
        dataset_id = self.seen.datasets[(ref.namespace, ref.name)].id
        self.link_job(job_id, dataset_id, direction)
        # The earliest run to write a version is the one that created it.
        produced = (self.at, run_id) if direction == "output" else None
        version = self.resolve_version(dataset_id, ref, direction, produced)
        if (direction, version.id) not in self.linked:
            self.linked.add((direction, version.id))
            self.run_links.append(
                {
                    "run_id": run_id,
                    "dataset_version_id": version.id,
                    "direction": direction,
                    "created_at": self.at,
                    "producer": self.producer,
                }
            )
            linked = self.links.setdefault((direction, dataset_id), [])
            linked.append(version)
            linked.sort(key=lambda known: known.id)
        self.add_facets("dataset_version", ref.facets, dataset_version_id=version.id, run_id=run_id)
        self.add_facets(direction, ref.io_facets, dataset_version_id=version.id, run_id=run_id)
        return version

    def resolve_version(
        self, dataset_id: int, ref: DatasetRef, direction: str, produced: Produced | None
    ) -> _Version:
        """The dataset version this run read or wrote (see module docstring)."""
        linked = self.links.get((direction, dataset_id), [])
        if ref.version is not None:
            olds = [known for known in linked if known.source == "derived" and known.version != ref.version]
            # What the replaced versions knew moves to the named one: the earliest created_at, and the
            # earliest production (on a tie, the first one: as if applied one after the other).
            created_at = min([self.at, *(old.created_at for old in olds)])
            earliest: Produced | None = None
            for candidate in [*((old.produced_at, old.created_by_run_id) for old in olds), produced]:
                if candidate is None or candidate[0] is None:
                    continue
                if earliest is None or candidate[0] < earliest[0]:
                    earliest = (candidate[0], candidate[1])
            version = self.version(
                dataset_id, ref.version, "facet", created_at, earliest, look_up_first=direction == "input"
            )
            for old in olds:
                self.replace_derived(old, version)
            return version
        named = [known for known in linked if known.source == "facet"]
        if named:
            version = named[-1]  # an earlier event of this run already named the version
            self.lower(version, None, produced)
            return version
        assert self.event.run_id is not None
        name = derived_version(self.event.run_id, direction, ref.namespace, ref.name)
        return self.version(dataset_id, name, "derived", self.at, produced, look_up_first=False)

    def version(
        self,
        dataset_id: int,
        name: str,
        source: str,
        created_at: str,
        produced: Produced | None,
        *,
        look_up_first: bool,
    ) -> _Version:
        """Get or create a version, then move its created_at / produced_at earlier if these are. Inputs
        are usually there already (look up first), outputs and derived versions usually new."""
        key = (dataset_id, name)
        found = self.seen.versions.get(key)
        if found is None and look_up_first and dataset_id not in self.seen.new_datasets:
            found = self.find_version(dataset_id, name)
        if found is None:
            values = {
                "dataset_id": dataset_id,
                "version": name,
                "version_source": source,
                "created_at": created_at,
                "produced_at": produced[0] if produced else None,
                "created_by_run_id": produced[1] if produced else None,
            }
            created = self.conn.execute(self.sql.new_version, values).scalar_one_or_none()
            if created is not None:
                version = _Version(
                    int(created), dataset_id, name, source, created_at, *(produced or (None, None))
                )
                self.seen.versions[key] = version
                self.referrers[version.id] = _NO_REFERRERS
                return version
            found = self.find_version(dataset_id, name)
            assert found is not None, "inserted by a concurrent writer, so it exists"
        self.lower(found, created_at, produced)
        return found

    def find_version(self, dataset_id: int, name: str) -> _Version | None:
        row = self.conn.execute(
            self.sql.find_version, {"b_dataset": dataset_id, "b_version": name}
        ).one_or_none()
        if row is None:
            return None
        version = _Version(
            int(row.id),
            dataset_id,
            name,
            row.version_source,
            row.created_at,
            row.produced_at,
            row.created_by_run_id,
        )
        self.seen.versions[(dataset_id, name)] = version
        return version

    def lower(self, version: _Version, created_at: str | None, produced: Produced | None) -> None:
        if created_at is not None and version.created_at > created_at:
            self.conn.execute(
                self.sql.lower_created_at["dataset_versions"], {"b_id": version.id, "b_at": created_at}
            )
            version.created_at = created_at
        if produced is not None and (version.produced_at is None or version.produced_at > produced[0]):
            self.conn.execute(
                self.sql.lower_produced_at, {"b_id": version.id, "b_at": produced[0], "b_run": produced[1]}
            )
            version.produced_at, version.created_by_run_id = produced

    def replace_derived(self, old: _Version, new: _Version) -> None:
        """A run's derived version turned out to be ``new``: move everything to it and drop it (its times
        were merged into ``new`` by :meth:`resolve_version`)."""
        referrers = self.referrers.get(old.id, _UNKNOWN_REFERRERS)
        ids = {"b_old": old.id, "b_new": new.id}
        for row in self.facet_rows:
            if row["dataset_version_id"] == old.id:
                row["dataset_version_id"] = new.id
        if referrers.facets:
            self.conn.execute(self.sql.move_facets, ids)
        if referrers.lineage_output:
            self.conn.execute(self.sql.drop_lineage_twins, ids)
            self.conn.execute(self.sql.move_lineage_output, ids)
        if referrers.lineage_input:
            self.conn.execute(self.sql.move_lineage_input, ids)
        self.run_links = [row for row in self.run_links if row["dataset_version_id"] != old.id]
        if referrers.links:
            self.conn.execute(self.sql.unlink_version, ids)
        self.conn.execute(self.sql.drop_version, ids)
        self.seen.versions.pop((old.dataset_id, old.version), None)
        self.referrers.pop(old.id, None)
        old.replaced_by = new
        for linked in self.links.values():
            linked[:] = [known for known in linked if known.id != old.id]
        self.linked = {
            (direction, version_id) for direction, version_id in self.linked if version_id != old.id
        }

    def run_inputs(self, run_id: int) -> dict[tuple[str, str], int]:
        self.flush_run_links()
        rows = self.conn.execute(self.sql.run_inputs, {"b_run": run_id}).all()
        return {(namespace, name): int(version_id) for namespace, name, version_id in rows}

    def column_lineage(
        self,
        version_id: int,
        dependencies: Sequence[ColumnDependency],
        *,
        run_id: int | None,
        inputs: Mapping[tuple[str, str], int],
    ) -> None:
        for dependency in dependencies:
            row_hash = dependency.row_hash()
            self.lineage_rows.setdefault(
                (version_id, row_hash),
                {
                    "output_dataset_version_id": version_id,
                    "run_id": run_id,
                    "event_id": self.event_id,
                    "output_field": dependency.output_field,
                    "input_namespace": dependency.namespace,
                    "input_name": dependency.name,
                    "input_field": dependency.field,
                    "input_dataset_version_id": inputs.get((dependency.namespace, dependency.name)),
                    "transformation_type": dependency.transformation_type,
                    "transformation_subtype": dependency.transformation_subtype,
                    "transformation_description": dependency.transformation_description,
                    "masking": dependency.masking,
                    "row_hash": row_hash,
                },
            )


def _state_wins(new: str, new_time: str, current: str | None, current_time: str | None) -> bool:
    """Whether an event of type ``new`` at ``new_time`` sets the run's state: states only move forward
    (START < RUNNING < terminal); OTHER never changes a known state; of two events at the same stage the
    later one wins."""
    if current is None or current_time is None:
        return True
    new_rank, current_rank = _STATE_RANK[new], _STATE_RANK.get(current, 0)
    if new_rank != current_rank:
        return new_rank > current_rank
    return new_rank > 0 and new_time > current_time


def _store(conn: Connection, event: ParsedEvent, seen: _Seen, producer: str | None = None) -> StoreResult:
    inserted = conn.execute(
        statements_for(conn.dialect.name).raw_event,
        {
            "event_hash": event.event_hash,
            "kind": event.kind,
            "event_type": event.event_type,
            "event_time": event.event_time,
            "run_uuid": event.run_id,
            "received_at": _now(),
            "body": event.text,
        },
    ).scalar_one_or_none()
    if inserted is None:
        return StoreResult(stored=False, duplicate=True, kind=event.kind, run_id=event.run_id)
    _Writer(conn, event, int(inserted), seen, producer).write()
    return StoreResult(stored=True, duplicate=False, kind=event.kind, run_id=event.run_id)
