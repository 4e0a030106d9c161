"""Trace a dataset version back to the exact dataset versions it came from.

From a dataset version to the run(s) that wrote it, to the exact versions those runs read, and so on:
links are by version, never by dataset name, so an old version of a dataset that has since been
rewritten from another file still leads to the file it was made from. Each level of the walk is two
indexed queries over ``run_dataset_versions`` (however many versions and runs it holds), and every
version and run is visited once, so cycles end.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from censustrace.lineage.store.queries import (
    LineageNotFound,
    chunks,
    find_dataset,
    find_dataset_version,
    merged_facets,
    run_summaries,
    version_refs,
)
from censustrace.lineage.store.tables import facets, run_dataset_versions

Json = dict[str, Any]
#: The producer of an edge written by the pipeline's own transport (straight into the store).
TRANSPORT = "pipeline:transport"


@dataclass(frozen=True)
class DatasetVersionRef:
    namespace: str
    name: str
    version: str
    #: "facet" (the producer named it) or "derived" (the store made it up: the exact content is unknown).
    version_source: str

    @property
    def node_id(self) -> str:
        return f"dataset:{self.namespace}:{self.name}#{self.version}"


@dataclass(frozen=True)
class TraceSource(DatasetVersionRef):
    """A dataset version with nothing further upstream, with its dataset facets merged from every
    event that mentioned it."""

    facets: Json = field(default_factory=dict)


@dataclass(frozen=True)
class TraceResult:
    start: DatasetVersionRef
    sources: list[TraceSource]
    #: ``{"nodes": [{"id", "type": "dataset_version"|"run", ...}], "edges": [{"from", "to", "producer"}]}``,
    #: edges in the direction data flowed (input version -> run -> output version); ``producer``: who
    #: sent the edge (``pipeline:transport``, ``pipeline:<token>`` or ``external:<token>``).
    graph: Json

    def to_dict(self) -> Json:
        return {
            "start": _ref_json(self.start),
            "sources": [{**_ref_json(source), "facets": source.facets} for source in self.sources],
            "graph": self.graph,
        }


def _ref_json(ref: DatasetVersionRef) -> Json:
    return {
        "id": ref.node_id,
        "namespace": ref.namespace,
        "name": ref.name,
        "version": ref.version,
        "versionSource": ref.version_source,
    }


@contextmanager
def _connection(db: Engine | Connection | Session) -> Iterator[Connection]:
    if isinstance(db, Engine):
        with db.connect() as conn:
            yield conn
    elif isinstance(db, Session):
        yield db.connection()
    else:
        yield db


def trace_upstream(
    db: Engine | Connection | Session, namespace: str, name: str, version: str | None = None
) -> TraceResult:
    """Walk from ``version`` of the dataset (its latest version if None) up to its sources.

    A source is a dataset version with no upstream: no run wrote it, or the runs that wrote it read
    nothing (a generator). Raises :class:`LineageNotFound` for an unknown dataset or version."""
    with _connection(db) as conn:
        dataset_id = find_dataset(conn, namespace, name)
        if dataset_id is None:
            raise LineageNotFound(f"no dataset {namespace}:{name} in the lineage store")
        start = find_dataset_version(conn, dataset_id, version)
        if start is None:
            what = f"version {version}" if version is not None else "any version"
            raise LineageNotFound(f"no {what} of dataset {namespace}:{name} in the lineage store")
        return _walk(conn, start)


def _quality(conn: Connection, version_ids: set[int]) -> dict[int, Json]:
    """Data-quality outcome of the versions a run validated (``dataQualityAssertions`` input facets):
    how many assertions, which failed, and how many of those were blocking (severity ``error``)."""
    latest: dict[int, Json] = {}
    for batch in chunks(sorted(version_ids)):
        # Only this facet's rows (a trace may pass through thousands of versions with many facets each).
        rows = conn.execute(
            select(facets.c.dataset_version_id, facets.c.body)
            .where(
                facets.c.dataset_version_id.in_(batch),
                facets.c.owner == "input",
                facets.c.name == "dataQualityAssertions",
            )
            .order_by(facets.c.event_time, facets.c.event_id, facets.c.id)
        )
        for version_id, body in rows:
            latest[int(version_id)] = body
    found: dict[int, Json] = {}
    for version_id, body in latest.items():
        assertions = (body or {}).get("assertions")
        if not isinstance(assertions, list):
            continue
        failed = [a for a in assertions if isinstance(a, dict) and not a.get("success", True)]
        found[version_id] = {
            "assertions": len(assertions),
            "failed": sorted(str(a.get("name") or a.get("assertion")) for a in failed),
            "failedErrors": sum(1 for a in failed if a.get("severity") == "error"),
            "success": not failed,
        }
    return found


def _walk(conn: Connection, start: int) -> TraceResult:
    producers: dict[int, set[int]] = defaultdict(set)  # version -> runs that wrote it
    inputs: dict[int, set[int]] = defaultdict(set)  # run -> versions it read
    # (direction, run, version) -> the producer that sent the edge (None: the pipeline's transport).
    writers: dict[tuple[str, int, int], str | None] = {}
    seen_versions, seen_runs = {start}, set[int]()
    frontier = {start}
    while frontier:
        new_runs: set[int] = set()
        for batch in chunks(sorted(frontier)):
            for version_id, run_id, writer in conn.execute(
                select(
                    run_dataset_versions.c.dataset_version_id,
                    run_dataset_versions.c.run_id,
                    run_dataset_versions.c.producer,
                ).where(
                    run_dataset_versions.c.dataset_version_id.in_(batch),
                    run_dataset_versions.c.direction == "output",
                )
            ).all():
                producers[int(version_id)].add(int(run_id))
                writers[("output", int(run_id), int(version_id))] = writer
                if run_id not in seen_runs:
                    new_runs.add(int(run_id))
        seen_runs |= new_runs
        frontier = set()
        for batch in chunks(sorted(new_runs)):
            for run_id, version_id, writer in conn.execute(
                select(
                    run_dataset_versions.c.run_id,
                    run_dataset_versions.c.dataset_version_id,
                    run_dataset_versions.c.producer,
                ).where(
                    run_dataset_versions.c.run_id.in_(batch),
                    run_dataset_versions.c.direction == "input",
                )
            ).all():
                inputs[int(run_id)].add(int(version_id))
                writers[("input", int(run_id), int(version_id))] = writer
                if version_id not in seen_versions:
                    frontier.add(int(version_id))
        seen_versions |= frontier

    refs = version_refs(conn, seen_versions)
    source_ids = sorted(
        version_id for version_id in seen_versions if not any(inputs[run] for run in producers[version_id])
    )
    source_facets = merged_facets(conn, facets.c.dataset_version_id, source_ids, "dataset_version")
    runs = run_summaries(conn, seen_runs)

    def ref(version_id: int) -> DatasetVersionRef:
        data = refs[version_id]
        return DatasetVersionRef(data["namespace"], data["name"], data["version"], data["versionSource"])

    quality = _quality(conn, seen_versions)
    nodes: list[Json] = [
        {
            "type": "dataset_version",
            **_ref_json(ref(version_id)),
            "createdAt": refs[version_id]["createdAt"],
            **({"dataQuality": quality[version_id]} if version_id in quality else {}),
        }
        for version_id in seen_versions
    ]
    nodes += [
        {"type": "run", **runs[run_id], "id": f"run:{runs[run_id]['id']}", "runId": runs[run_id]["id"]}
        for run_id in seen_runs
    ]
    edges = {
        (f"run:{runs[run]['id']}", ref(version).node_id): writers.get(("output", run, version))
        for version, made_by in producers.items()
        for run in made_by
    }
    edges |= {
        (ref(version).node_id, f"run:{runs[run]['id']}"): writers.get(("input", run, version))
        for run, read in inputs.items()
        for version in read
    }
    sources = [
        TraceSource(
            refs[version_id]["namespace"],
            refs[version_id]["name"],
            refs[version_id]["version"],
            refs[version_id]["versionSource"],
            facets=source_facets.get(version_id, {}),
        )
        for version_id in source_ids
    ]
    sources.sort(key=lambda source: (source.namespace, source.name, source.version))
    return TraceResult(
        start=ref(start),
        sources=sources,
        graph={
            "nodes": sorted(nodes, key=lambda node: (node["type"], node["id"])),
            "edges": [
                {"from": origin, "to": destination, "producer": edges[(origin, destination)] or TRANSPORT}
                for origin, destination in sorted(edges)
            ],
        },
    )
