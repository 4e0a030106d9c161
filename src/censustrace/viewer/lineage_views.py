"""What the lineage pages show, read from the lineage store (search, job runs, trace graph, DQ rates).

Built on ``censustrace.lineage.store`` queries; everything here takes a Connection and returns plain
data for the templates (the SVG graph is already-escaped markup).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import func, or_, select
from sqlalchemy.engine import Connection

from censustrace.config import Settings
from censustrace.lineage.store.queries import (
    find_dataset,
    find_job,
    merge_facets,
    merged_facets,
    run_summaries,
    version_refs,
)
from censustrace.lineage.store.tables import (
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    jobs,
    namespaces,
    runs,
)
from censustrace.lineage.store.trace import TraceResult
from censustrace.viewer.graph import MAX_NODES, Node, render_svg

Json = dict[str, Any]
SEARCH_LIMIT: Final = 50
#: Hrefs are made by the caller (it knows the URL prefix): kind, query parameters -> URL.
Href = Callable[..., str]


def like_pattern(text: str) -> str:
    """``%text%`` for LIKE with ``\\`` as escape: what people type is matched literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search(conn: Connection, text: str, limit: int = SEARCH_LIMIT) -> Json:
    """Datasets and jobs whose name (or namespace) contains ``text``, case-insensitively."""
    pattern = like_pattern(text.strip().lower())
    found: Json = {}
    for key, table in (("datasets", datasets), ("jobs", jobs)):
        rows = conn.execute(
            select(namespaces.c.name.label("namespace"), table.c.name)
            .join(namespaces, namespaces.c.id == table.c.namespace_id)
            .where(
                or_(
                    func.lower(table.c.name).like(pattern, escape="\\"),
                    func.lower(namespaces.c.name).like(pattern, escape="\\"),
                )
            )
            .order_by(table.c.name, namespaces.c.name)
            .limit(limit + 1)
        ).all()
        found[key] = [{"namespace": ns, "name": name} for ns, name in rows[:limit]]
        found[f"{key}_more"] = len(rows) > limit
    return found


def held_thing(settings: Settings, conn: Connection, text: str) -> Json | None:
    """What a search names if it is something a user holds (share id, outbound file, extract id,
    received sha256, dataset with @version): ``{kind, namespace, name, version}`` to link its trace,
    ``{error: {code, message}}`` when ambiguous, None when it names nothing of the kind."""
    from censustrace.lineage.store.queries import LineageNotFound
    from censustrace.shares.traceback import LineageAmbiguous, find_start

    try:
        start = find_start(settings, conn, text)
    except LineageAmbiguous as exc:
        return {"error": exc.as_dict()}
    except LineageNotFound:
        return None
    ref = version_refs(conn, [start.version_id])[start.version_id]
    return {"kind": start.kind, **start.detail, **{k: ref[k] for k in ("namespace", "name", "version")}}


def dataset_jobs(conn: Connection, dataset_id: int) -> Json:
    """The jobs that write (``producers``) and read (``consumers``) a dataset."""
    rows = conn.execute(
        select(job_datasets.c.direction, namespaces.c.name, jobs.c.name)
        .join(jobs, jobs.c.id == job_datasets.c.job_id)
        .join(namespaces, namespaces.c.id == jobs.c.namespace_id)
        .where(job_datasets.c.dataset_id == dataset_id)
        .order_by(jobs.c.name)
    ).all()
    out: Json = {"producers": [], "consumers": []}
    for direction, namespace, name in rows:
        out["producers" if direction == "output" else "consumers"].append(
            {"namespace": namespace, "name": name}
        )
    return out


def job_runs(conn: Connection, job_id: int, limit: int = 50) -> list[Json]:
    ids = [
        int(run_id)
        for run_id in conn.execute(
            select(runs.c.id).where(runs.c.job_id == job_id).order_by(runs.c.created_at.desc()).limit(limit)
        ).scalars()
    ]
    summaries = run_summaries(conn, ids)
    return [summaries[run_id] for run_id in ids]


def lookup_dataset(conn: Connection, namespace: str, name: str) -> int | None:
    return find_dataset(conn, namespace, name) if namespace and name else None


def lookup_job(conn: Connection, namespace: str, name: str) -> int | None:
    return find_job(conn, namespace, name) if namespace and name else None


# Data quality ----------------------------------------------------------------------------------------
def assertions_of(facet_map: Json) -> list[Json]:
    """The ``dataQualityAssertions`` facet's assertions (``{assertion, success, column}``), if any."""
    facet = facet_map.get("dataQualityAssertions") if isinstance(facet_map, dict) else None
    found = facet.get("assertions") if isinstance(facet, dict) else None
    return [a for a in found if isinstance(a, dict)] if isinstance(found, list) else []


def dq_pass_rate_by_term(conn: Connection) -> list[Json]:
    """Data-quality assertions passed per census term (from ``dataQualityAssertions`` facets on dataset
    versions that carry our ``censusExtract`` facet), oldest term first."""
    rows = conn.execute(
        select(facets.c.dataset_version_id, facets.c.name, facets.c.body)
        .where(facets.c.name == "dataQualityAssertions", facets.c.dataset_version_id.is_not(None))
        .order_by(facets.c.event_time, facets.c.event_id, facets.c.id)
    ).all()
    by_version: dict[int, list[tuple[str, Json]]] = defaultdict(list)
    for version_id, name, body in rows:
        by_version[int(version_id)].append((name, body))
    extracts = merged_facets(conn, facets.c.dataset_version_id, by_version, "dataset_version")
    totals: dict[tuple[int, int, str], list[int]] = defaultdict(lambda: [0, 0])
    order = {"SPR": 0, "SUM": 1, "AUT": 2}
    for version_id, bodies in by_version.items():
        extract = extracts.get(version_id, {}).get("censusExtract") or {}
        if not extract.get("term") or not extract.get("year"):
            continue
        key = (int(extract["year"]), order.get(str(extract["term"]), 3), str(extract["term"]))
        for assertion in assertions_of(merge_facets(bodies)):
            totals[key][1] += 1
            totals[key][0] += 1 if assertion.get("success") is True else 0
    return [
        {"term": f"{term} {year}", "passed": passed, "total": total, "rate": 100.0 * passed / total}
        for (year, _, term), (passed, total) in sorted(totals.items())
        if total
    ]


# Trace graph -----------------------------------------------------------------------------------------
def short_name(name: str) -> str:
    """The last part of a path or dotted table name: what people recognise."""
    tail = name.rstrip("/").rsplit("/", 1)[-1]
    return tail.rsplit(".", 1)[-1] if "/" not in name and "." in tail else tail


def source_row(source: Json) -> Json:
    extract = (source.get("facets") or {}).get("censusExtract") or {}
    return {
        "namespace": source["namespace"],
        "name": source["name"],
        "version": source["version"],
        "sha256": extract.get("sha256"),
        "original_name": extract.get("originalName"),
        "laestab": extract.get("laestab"),
        "urn": extract.get("urn"),
        "term": extract.get("term"),
        "year": extract.get("year"),
        "format": extract.get("format"),
        "received_at": extract.get("receivedAt"),
        "pupil_count": extract.get("pupilCount"),
    }


def census_facets_by_sha(conn: Connection, shas: list[str]) -> dict[str, Json]:
    """The richest ``censusExtract`` facet recorded for each sha256, over every file version of those
    bytes: the landed file is described before its header is read, its archived copy after."""
    found: dict[str, Json] = {}
    if not shas:
        return found
    # Two indexed look-ups (versions by content, then their facets) rather than one join, which the
    # planner may answer by scanning every facet of a large store.
    version_of = dict(
        conn.execute(
            select(dataset_versions.c.id, dataset_versions.c.version).where(
                dataset_versions.c.version.in_(sorted(set(shas)))
            )
        ).all()
    )
    if not version_of:
        return found
    rows = [
        (version_of[version_id], body)
        for version_id, body in conn.execute(
            select(facets.c.dataset_version_id, facets.c.body)
            .where(facets.c.dataset_version_id.in_(sorted(version_of)), facets.c.name == "censusExtract")
            .order_by(facets.c.event_time, facets.c.id)
        ).all()
    ]
    for version, body in rows:
        if isinstance(body, dict) and (version not in found or body.get("laestab")):
            found[str(version)] = {**found.get(str(version), {}), **{k: v for k, v in body.items() if v}}
    return found


def fill_census_details(conn: Connection, sources: list[Json]) -> None:
    """Complete, in place, source rows whose own facets do not name their school (a landed file is
    described before its header is read) from the richest ``censusExtract`` facet of the same bytes."""
    missing = [s["sha256"] for s in sources if s["sha256"] and not s["laestab"]]
    if not missing:
        return
    richer = census_facets_by_sha(conn, missing)
    for row in sources:
        extra = richer.get(row["sha256"] or "")
        if extra:
            row.update(
                {k: v for k, v in source_row({**row, "facets": {"censusExtract": extra}}).items() if v}
            )


def trace_view(result: TraceResult, href: Href, conn: Connection | None = None) -> Json:
    """The page model of a trace: the start, the received files (table) and the graph (SVG, or None
    when it has more than ``MAX_NODES`` nodes)."""
    data = result.to_dict()
    sources = [source_row(s) for s in data["sources"]]
    if conn is not None:
        fill_census_details(conn, sources)
    by_node = {f"dataset:{s['namespace']}:{s['name']}#{s['version']}": s for s in sources}
    graph = data["graph"]
    nodes: list[Node] = []
    for node in graph["nodes"]:
        if node["type"] == "run":
            job = node["job"]
            nodes.append(
                Node(
                    node["id"],
                    "run",
                    ["run", job["name"], f"{node.get('state') or '?'} {(node.get('endedAt') or '')[:19]}"],
                    f"run of {job['name']} ({node.get('state') or 'unknown state'})",
                    href("run", run_id=node["runId"]),
                )
            )
            continue
        source = by_node.get(node["id"])
        is_start = node["id"] == data["start"]["id"]
        link = href("dataset", ns=node["namespace"], name=node["name"], version=node["version"])
        if source is not None and source.get("sha256"):
            school = " ".join(str(v) for v in (source["laestab"], source["term"], source["year"]) if v)
            nodes.append(
                Node(
                    node["id"],
                    "source",
                    [
                        f"file sha256 {source['sha256'][:16]}",
                        source["original_name"] or short_name(node["name"]),
                        school,
                    ],
                    f"received file {source['original_name'] or node['name']} sha256 {source['sha256']} "
                    f"received {source['received_at'] or '?'}",
                    link,
                )
            )
        else:
            nodes.append(
                Node(
                    node["id"],
                    "target" if is_start else "dataset",
                    [
                        "dataset" + (" (traced)" if is_start else ""),
                        short_name(node["name"]),
                        node["version"],
                    ],
                    f"dataset {node['namespace']}:{node['name']} version {node['version']}",
                    link,
                )
            )
    edges = [(edge["from"], edge["to"]) for edge in graph["edges"]]
    svg = None
    if len(nodes) <= MAX_NODES:
        svg = render_svg(
            nodes,
            edges,
            label=f"Lineage of {short_name(data['start']['name'])} back to {len(sources)} received file(s)",
            description="Data flows left to right: received files, the runs that read them, the datasets "
            "they wrote, up to the traced dataset version.",
        )
    return {
        "start": data["start"],
        "sources": sources,
        "svg": svg,
        "node_count": len(nodes),
        "run_count": sum(1 for n in graph["nodes"] if n["type"] == "run"),
    }
