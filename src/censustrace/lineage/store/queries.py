"""Reading the lineage store: namespaces, jobs, datasets, dataset versions, runs and the lineage graph.

Results are plain JSON-ready dicts shaped like Marquez's API (camelCase keys), so the HTTP API returns
them as they are. Every function takes a Connection and batches its queries (no query per row).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Final, TypeVar

from sqlalchemy import Row, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement

from censustrace.errors import CensustraceError
from censustrace.lineage.spec import timestamp_to_datetime
from censustrace.lineage.store.tables import (
    dataset_aliases,
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    jobs,
    namespaces,
    run_dataset_versions,
    runs,
)

Json = dict[str, Any]
T = TypeVar("T")

#: Most ids in one IN (...) list: well under SQLite's bound-parameter limit.
CHUNK: Final = 2000


class LineageNotFound(CensustraceError):
    """No such namespace, dataset, dataset version, job or run in the lineage store."""

    code = "CT-LINEAGE-NOT-FOUND"


class LineageQueryInvalid(CensustraceError):
    """A query the store cannot answer as asked (a malformed node id)."""

    code = "CT-LINEAGE-QUERY"


def chunks(items: Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def merge_facets(bodies: Iterable[tuple[str, Json]]) -> Json:
    """Facets reported over several events, oldest first: a later facet of the same name replaces an
    earlier one, and one marked ``_deleted`` removes it (as the spec says)."""
    merged: Json = {}
    for name, body in bodies:
        if isinstance(body, dict) and body.get("_deleted") is True:
            merged.pop(name, None)
        else:
            merged[name] = body
    return merged


def merged_facets(
    conn: Connection, owner_column: ColumnElement[Any], ids: Iterable[int], *owners: str
) -> dict[int, Json]:
    """Merged facets per owner id (for the given owner kinds), in event-time order."""
    grouped: dict[int, list[tuple[str, Json]]] = defaultdict(list)
    for batch in chunks(sorted(set(ids))):
        rows = conn.execute(
            select(owner_column, facets.c.name, facets.c.body)
            .where(owner_column.in_(batch), facets.c.owner.in_(owners))
            .order_by(facets.c.event_time, facets.c.event_id, facets.c.id)
        ).all()
        for owner_id, name, body in rows:
            grouped[int(owner_id)].append((name, body))
    return {owner_id: merge_facets(bodies) for owner_id, bodies in grouped.items()}


def _duration_ms(started: str | None, ended: str | None) -> int | None:
    if started is None or ended is None:
        return None
    delta = timestamp_to_datetime(ended) - timestamp_to_datetime(started)
    return int(delta.total_seconds() * 1000)


# Lookups ---------------------------------------------------------------------------------------------
def find_dataset(conn: Connection, namespace: str, name: str) -> int | None:
    """The dataset's id by its name, or by a name it had before ``censustrace init`` renamed it."""
    found = conn.execute(
        select(datasets.c.id)
        .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
        .where(namespaces.c.name == namespace, datasets.c.name == name)
    ).scalar_one_or_none()
    if found is None:
        found = conn.execute(
            select(dataset_aliases.c.dataset_id).where(
                dataset_aliases.c.namespace == namespace, dataset_aliases.c.name == name
            )
        ).scalar_one_or_none()
    return None if found is None else int(found)


def find_job(conn: Connection, namespace: str, name: str) -> int | None:
    found = conn.execute(
        select(jobs.c.id)
        .join(namespaces, namespaces.c.id == jobs.c.namespace_id)
        .where(namespaces.c.name == namespace, jobs.c.name == name)
    ).scalar_one_or_none()
    return None if found is None else int(found)


def splits(text: str, separator: str) -> list[tuple[str, str]]:
    """Every way to cut ``text`` in two at ``separator``, leftmost first: names hold colons and slashes,
    so ids like ``dataset:<namespace>:<name>`` are ambiguous until checked against the store."""
    out: list[tuple[str, str]] = []
    start = text.find(separator)
    while start != -1:
        out.append((text[:start], text[start + len(separator) :]))
        start = text.find(separator, start + 1)
    return out


def resolve_dataset(conn: Connection, candidates: Iterable[tuple[str, str]]) -> tuple[int, str, str]:
    """The first (namespace, name) candidate that is a stored dataset."""
    tried = []
    for namespace, name in candidates:
        if namespace and name and (found := find_dataset(conn, namespace, name)) is not None:
            return found, namespace, name
        tried.append(f"{namespace}:{name}")
    raise LineageNotFound(f"no dataset {' or '.join(tried) or '(empty name)'} in the lineage store")


def latest_version_order() -> list[ColumnElement[Any]]:
    """Newest first, preferring versions a run wrote over versions only ever read (a run that read a
    dataset without naming its version must not hide the version its producer wrote)."""
    return [
        case((dataset_versions.c.produced_at.is_(None), 1), else_=0),
        func.coalesce(dataset_versions.c.produced_at, dataset_versions.c.created_at).desc(),
        dataset_versions.c.id.desc(),
    ]


def find_dataset_version(conn: Connection, dataset_id: int, version: str | None) -> int | None:
    """The id of ``version`` of the dataset, or of its latest version when ``version`` is None."""
    query = select(dataset_versions.c.id).where(dataset_versions.c.dataset_id == dataset_id)
    if version is None:
        query = query.order_by(*latest_version_order()).limit(1)
    else:
        query = query.where(dataset_versions.c.version == version)
    found = conn.execute(query).scalar_one_or_none()
    return None if found is None else int(found)


# Runs ------------------------------------------------------------------------------------------------
def _run_rows(conn: Connection, run_ids: Iterable[int]) -> dict[int, Row[Any]]:
    out: dict[int, Row[Any]] = {}
    for batch in chunks(sorted(set(run_ids))):
        rows = conn.execute(
            select(runs, namespaces.c.name.label("job_namespace"), jobs.c.name.label("job_name"))
            .join(jobs, jobs.c.id == runs.c.job_id)
            .join(namespaces, namespaces.c.id == jobs.c.namespace_id)
            .where(runs.c.id.in_(batch))
        ).all()
        out.update({int(row.id): row for row in rows})
    return out


def run_summary(row: Row[Any]) -> Json:
    return {
        "id": row.run_uuid,
        "job": {"namespace": row.job_namespace, "name": row.job_name},
        "state": row.state,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        "startedAt": row.started_at,
        "endedAt": row.ended_at,
        "durationMs": _duration_ms(row.started_at, row.ended_at),
        "nominalStartTime": row.nominal_start_time,
        "nominalEndTime": row.nominal_end_time,
        "parentRunId": row.parent_run_uuid,
    }


def run_summaries(conn: Connection, run_ids: Iterable[int]) -> dict[int, Json]:
    return {run_id: run_summary(row) for run_id, row in _run_rows(conn, run_ids).items()}


def _run_id(conn: Connection, run_uuid: str) -> int:
    found = conn.execute(select(runs.c.id).where(runs.c.run_uuid == run_uuid.lower())).scalar_one_or_none()
    if found is None:
        raise LineageNotFound(f"no run {run_uuid} in the lineage store")
    return int(found)


def version_refs(conn: Connection, version_ids: Iterable[int]) -> dict[int, Json]:
    """``{namespace, name, version, versionSource, createdAt, producedAt}`` per dataset version id."""
    out: dict[int, Json] = {}
    for batch in chunks(sorted(set(version_ids))):
        rows = conn.execute(
            select(
                dataset_versions.c.id,
                namespaces.c.name.label("namespace"),
                datasets.c.name,
                dataset_versions.c.version,
                dataset_versions.c.version_source,
                dataset_versions.c.created_at,
                dataset_versions.c.produced_at,
                dataset_versions.c.created_by_run_id,
            )
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
            .where(dataset_versions.c.id.in_(batch))
        ).all()
        for row in rows:
            out[int(row.id)] = {
                "namespace": row.namespace,
                "name": row.name,
                "version": row.version,
                "versionSource": row.version_source,
                "createdAt": row.created_at,
                "producedAt": row.produced_at,
                "createdByRunId": row.created_by_run_id,
            }
    return out


def get_run(conn: Connection, run_uuid: str) -> Json:
    """A run with its state, times, merged run facets and the exact dataset versions it read and wrote."""
    run_id = _run_id(conn, run_uuid)
    run = run_summaries(conn, [run_id])[run_id]
    run["facets"] = merged_facets(conn, facets.c.run_id, [run_id], "run").get(run_id, {})
    links = conn.execute(
        select(run_dataset_versions.c.direction, run_dataset_versions.c.dataset_version_id)
        .where(run_dataset_versions.c.run_id == run_id)
        .order_by(run_dataset_versions.c.id)
    ).all()
    version_ids = [int(version_id) for _, version_id in links]
    refs = version_refs(conn, version_ids)
    version_facets = merged_facets(conn, facets.c.dataset_version_id, version_ids, "dataset_version")
    io_rows = conn.execute(
        select(facets.c.owner, facets.c.dataset_version_id, facets.c.name, facets.c.body)
        .where(facets.c.run_id == run_id, facets.c.owner.in_(("input", "output")))
        .order_by(facets.c.event_time, facets.c.event_id, facets.c.id)
    ).all()
    grouped: dict[tuple[str, int], list[tuple[str, Json]]] = defaultdict(list)
    for owner, version_id, name, body in io_rows:
        grouped[(owner, int(version_id))].append((name, body))
    io_facets = {key: merge_facets(bodies) for key, bodies in grouped.items()}
    for direction in ("input", "output"):
        run[f"{direction}DatasetVersions"] = [
            {
                "datasetVersionId": {
                    "namespace": refs[version_id]["namespace"],
                    "name": refs[version_id]["name"],
                    "version": refs[version_id]["version"],
                },
                "versionSource": refs[version_id]["versionSource"],
                "facets": version_facets.get(version_id, {}),
                f"{direction}Facets": io_facets.get((direction, version_id), {}),
            }
            for link_direction, version_id in links
            if link_direction == direction
        ]
    return run


def get_run_facets(conn: Connection, run_uuid: str) -> Json:
    """A run's merged run facets and the job facets its events carried."""
    run_id = _run_id(conn, run_uuid)
    rows = conn.execute(
        select(facets.c.owner, facets.c.name, facets.c.body)
        .where(facets.c.run_id == run_id, facets.c.owner.in_(("run", "job")))
        .order_by(facets.c.event_time, facets.c.event_id, facets.c.id)
    ).all()
    run_facets = merge_facets((name, body) for owner, name, body in rows if owner == "run")
    job_facets = merge_facets((name, body) for owner, name, body in rows if owner == "job")
    return {"runId": run_uuid.lower(), "runFacets": run_facets, "jobFacets": job_facets}


# Namespaces, jobs, datasets --------------------------------------------------------------------------
def _namespace_id(conn: Connection, namespace: str) -> int:
    found = conn.execute(select(namespaces.c.id).where(namespaces.c.name == namespace)).scalar_one_or_none()
    if found is None:
        raise LineageNotFound(f"no namespace {namespace} in the lineage store")
    return int(found)


def list_namespaces(conn: Connection) -> list[Json]:
    rows = conn.execute(select(namespaces.c.name, namespaces.c.created_at).order_by(namespaces.c.name)).all()
    return [{"name": name, "createdAt": created_at} for name, created_at in rows]


def jobs_json(conn: Connection, job_ids: Sequence[int]) -> dict[int, Json]:
    """Marquez-like job records: inputs, outputs, parent and latest run."""
    out: dict[int, Json] = {}
    parent = jobs.alias("parent")
    for batch in chunks(job_ids):
        rows = conn.execute(
            select(
                jobs.c.id,
                namespaces.c.name.label("namespace"),
                jobs.c.name,
                jobs.c.created_at,
                parent.c.name.label("parent_name"),
            )
            .join(namespaces, namespaces.c.id == jobs.c.namespace_id)
            .outerjoin(parent, parent.c.id == jobs.c.parent_job_id)
            .where(jobs.c.id.in_(batch))
        ).all()
        for row in rows:
            out[int(row.id)] = {
                "id": {"namespace": row.namespace, "name": row.name},
                "type": "BATCH",
                "name": row.name,
                "simpleName": row.name.rsplit(".", 1)[-1],
                "namespace": row.namespace,
                "parentJobName": row.parent_name,
                "createdAt": row.created_at,
                "updatedAt": row.created_at,
                "inputs": [],
                "outputs": [],
                "latestRun": None,
            }
        io_rows = conn.execute(
            select(job_datasets.c.job_id, job_datasets.c.direction, namespaces.c.name, datasets.c.name)
            .join(datasets, datasets.c.id == job_datasets.c.dataset_id)
            .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
            .where(job_datasets.c.job_id.in_(batch))
            .order_by(namespaces.c.name, datasets.c.name)
        ).all()
        for job_id, direction, namespace, name in io_rows:
            out[int(job_id)][f"{direction}s"].append({"namespace": namespace, "name": name})
        ranked = (
            select(
                runs.c.id,
                runs.c.job_id,
                func.row_number()
                .over(partition_by=runs.c.job_id, order_by=runs.c.created_at.desc())
                .label("rank"),
            )
            .where(runs.c.job_id.in_(batch))
            .subquery()
        )
        latest = conn.execute(select(ranked.c.job_id, ranked.c.id).where(ranked.c.rank == 1)).all()
        summaries = run_summaries(conn, [int(run_id) for _, run_id in latest])
        for job_id, run_id in latest:
            summary = summaries[int(run_id)]
            out[int(job_id)]["latestRun"] = summary
            out[int(job_id)]["updatedAt"] = summary["updatedAt"]
    return out


def list_jobs(
    conn: Connection, namespace: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[Json], int]:
    namespace_id = _namespace_id(conn, namespace)
    total = conn.execute(select(func.count()).where(jobs.c.namespace_id == namespace_id)).scalar_one()
    ids = [
        int(job_id)
        for job_id in conn.execute(
            select(jobs.c.id)
            .where(jobs.c.namespace_id == namespace_id)
            .order_by(jobs.c.name)
            .limit(limit)
            .offset(offset)
        ).scalars()
    ]
    records = jobs_json(conn, ids)
    return [records[job_id] for job_id in ids], int(total)


def datasets_json(conn: Connection, dataset_ids: Sequence[int]) -> dict[int, Json]:
    """Marquez-like dataset records with the current version and its merged facets."""
    out: dict[int, Json] = {}
    for batch in chunks(dataset_ids):
        rows = conn.execute(
            select(
                datasets.c.id, namespaces.c.name.label("namespace"), datasets.c.name, datasets.c.created_at
            )
            .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
            .where(datasets.c.id.in_(batch))
        ).all()
        for row in rows:
            out[int(row.id)] = {
                "id": {"namespace": row.namespace, "name": row.name},
                "name": row.name,
                "physicalName": row.name,
                "namespace": row.namespace,
                "createdAt": row.created_at,
                "updatedAt": row.created_at,
                "currentVersion": None,
                "facets": {},
            }
        ranked = (
            select(
                dataset_versions.c.id,
                dataset_versions.c.dataset_id,
                dataset_versions.c.version,
                func.coalesce(dataset_versions.c.produced_at, dataset_versions.c.created_at).label("at"),
                func.row_number()
                .over(partition_by=dataset_versions.c.dataset_id, order_by=latest_version_order())
                .label("rank"),
            )
            .where(dataset_versions.c.dataset_id.in_(batch))
            .subquery()
        )
        current = conn.execute(
            select(ranked.c.dataset_id, ranked.c.id, ranked.c.version, ranked.c.at).where(ranked.c.rank == 1)
        ).all()
        static = merged_facets(conn, facets.c.dataset_id, batch, "dataset")
        version_facets = merged_facets(
            conn, facets.c.dataset_version_id, [int(row.id) for row in current], "dataset_version"
        )
        for dataset_id, record in out.items():
            record["facets"] = dict(static.get(dataset_id, {}))
        for dataset_id, version_id, version, at in current:
            record = out[int(dataset_id)]
            record["currentVersion"] = version
            record["updatedAt"] = max(record["updatedAt"], at)
            record["facets"].update(version_facets.get(int(version_id), {}))
    return out


def list_datasets(
    conn: Connection, namespace: str, *, limit: int = 100, offset: int = 0
) -> tuple[list[Json], int]:
    namespace_id = _namespace_id(conn, namespace)
    total = conn.execute(select(func.count()).where(datasets.c.namespace_id == namespace_id)).scalar_one()
    ids = [
        int(dataset_id)
        for dataset_id in conn.execute(
            select(datasets.c.id)
            .where(datasets.c.namespace_id == namespace_id)
            .order_by(datasets.c.name)
            .limit(limit)
            .offset(offset)
        ).scalars()
    ]
    records = datasets_json(conn, ids)
    return [records[dataset_id] for dataset_id in ids], int(total)


def dataset_versions_page(
    conn: Connection, dataset_id: int, *, limit: int = 100, offset: int = 0
) -> tuple[list[Json], int]:
    """A dataset's versions, latest first, each with its merged facets and the run that created it."""
    total = conn.execute(select(func.count()).where(dataset_versions.c.dataset_id == dataset_id)).scalar_one()
    ids = [
        int(version_id)
        for version_id in conn.execute(
            select(dataset_versions.c.id)
            .where(dataset_versions.c.dataset_id == dataset_id)
            .order_by(*latest_version_order())
            .limit(limit)
            .offset(offset)
        ).scalars()
    ]
    refs = version_refs(conn, ids)
    version_facets = merged_facets(conn, facets.c.dataset_version_id, ids, "dataset_version")
    creators = run_summaries(conn, [ref["createdByRunId"] for ref in refs.values() if ref["createdByRunId"]])
    versions = []
    for version_id in ids:
        ref = refs[version_id]
        versions.append(
            {
                "id": {"namespace": ref["namespace"], "name": ref["name"], "version": ref["version"]},
                "namespace": ref["namespace"],
                "name": ref["name"],
                "version": ref["version"],
                "versionSource": ref["versionSource"],
                "createdAt": ref["createdAt"],
                "producedAt": ref["producedAt"],
                "facets": version_facets.get(version_id, {}),
                "createdByRun": creators.get(ref["createdByRunId"]) if ref["createdByRunId"] else None,
            }
        )
    return versions, int(total)


# Lineage graph ---------------------------------------------------------------------------------------
def _neighbours(conn: Connection, source: Any, target: Any, ids: set[int], direction: str) -> set[int]:
    found: set[int] = set()
    for batch in chunks(sorted(ids)):
        found.update(
            int(value)
            for value in conn.execute(
                select(target).distinct().where(source.in_(batch), job_datasets.c.direction == direction)
            ).scalars()
        )
    return found


def lineage_graph(conn: Connection, node_id: str, depth: int = 20) -> Json:
    """Marquez's lineage graph around ``dataset:<ns>:<name>`` or ``job:<ns>:<name>``.

    Walks upstream (producers, their inputs, ...) and downstream (consumers, their outputs, ...) up to
    ``depth`` jobs away, then shows every input and output of each job reached."""
    kind, _, rest = node_id.partition(":")
    if kind == "dataset":
        start_id, _, _ = resolve_dataset(conn, splits(rest, ":"))
        job_ids: set[int] = set()
        dataset_ids = {start_id}
    elif kind == "job":
        job_matches = (find_job(conn, ns, name) for ns, name in splits(rest, ":"))
        start_id = next((job_id for job_id in job_matches if job_id is not None), 0)
        if not start_id:
            raise LineageNotFound(f"no job {rest} in the lineage store")
        job_ids, dataset_ids = {start_id}, set()
    else:
        raise LineageQueryInvalid(f"node id {node_id[:80]!r} must start with 'dataset:' or 'job:'")

    for upstream in (True, False):
        seen_jobs, seen_datasets = set(job_ids), set(dataset_ids)
        job_frontier = set(job_ids) if kind == "job" else set()
        dataset_frontier = set(dataset_ids) if kind == "dataset" else set()
        hops = 0
        while job_frontier or dataset_frontier:
            if job_frontier:
                found = _neighbours(
                    conn,
                    job_datasets.c.job_id,
                    job_datasets.c.dataset_id,
                    job_frontier,
                    "input" if upstream else "output",
                )
                dataset_frontier, job_frontier = found - seen_datasets, set()
                seen_datasets |= found
            else:
                if hops >= depth:
                    break
                found = _neighbours(
                    conn,
                    job_datasets.c.dataset_id,
                    job_datasets.c.job_id,
                    dataset_frontier,
                    "output" if upstream else "input",
                )
                job_frontier, dataset_frontier = found - seen_jobs, set()
                seen_jobs |= found
                hops += 1
        job_ids |= seen_jobs
        dataset_ids |= seen_datasets

    edges: list[tuple[int, int, str]] = []
    for batch in chunks(sorted(job_ids)):
        edges.extend(
            (int(job_id), int(dataset_id), direction)
            for job_id, dataset_id, direction in conn.execute(
                select(job_datasets.c.job_id, job_datasets.c.dataset_id, job_datasets.c.direction).where(
                    job_datasets.c.job_id.in_(batch)
                )
            ).all()
        )
    dataset_ids |= {dataset_id for _, dataset_id, _ in edges}
    job_records = jobs_json(conn, sorted(job_ids))
    dataset_records = datasets_json(conn, sorted(dataset_ids))

    def job_node(job_id: int) -> str:
        return f"job:{job_records[job_id]['namespace']}:{job_records[job_id]['name']}"

    def dataset_node(dataset_id: int) -> str:
        return f"dataset:{dataset_records[dataset_id]['namespace']}:{dataset_records[dataset_id]['name']}"

    in_edges: dict[str, list[Json]] = defaultdict(list)
    out_edges: dict[str, list[Json]] = defaultdict(list)
    for job_id, dataset_id, direction in edges:
        origin, destination = (
            (dataset_node(dataset_id), job_node(job_id))
            if direction == "input"
            else (job_node(job_id), dataset_node(dataset_id))
        )
        edge = {"origin": origin, "destination": destination}
        out_edges[origin].append(edge)
        in_edges[destination].append(edge)

    nodes: list[Json] = [
        {"id": dataset_node(i), "type": "DATASET", "data": dataset_records[i]} for i in dataset_ids
    ]
    nodes += [{"id": job_node(i), "type": "JOB", "data": job_records[i]} for i in job_ids]
    for node in nodes:
        key = node["id"]
        node["inEdges"] = sorted(in_edges.get(key, []), key=lambda e: (e["origin"], e["destination"]))
        node["outEdges"] = sorted(out_edges.get(key, []), key=lambda e: (e["origin"], e["destination"]))
    nodes.sort(key=lambda node: node["id"])
    return {"graph": nodes}
