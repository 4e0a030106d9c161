"""Trace-back over the lineage store: from one dataset version to the exact census files it came from
(``sources``, each described by the census-extract facet the receive step recorded), and forward by exact
versions to the shares made from it and their recipients (:func:`consumers`).

``trace_target`` traces a dataset named by id or name; tracing from anything else a user holds (a share
id, an outbound file, an extract id, a sha256) is :mod:`censustrace.shares.traceback`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.lineage.store.queries import (
    chunks,
    merged_facets,
    resolve_dataset,
    splits,
    version_refs,
)
from censustrace.lineage.store.tables import (
    datasets,
    facets,
    namespaces,
    run_dataset_versions,
)
from censustrace.lineage.store.trace import TraceSource, trace_upstream

Json = dict[str, Any]


def dataset_candidates(conn: Connection, text: str) -> list[tuple[str, str]]:
    if text.startswith("dataset:"):
        return splits(text.removeprefix("dataset:"), ":")
    # A bare name: every namespace that holds a dataset of that name.
    rows = conn.execute(
        select(namespaces.c.name)
        .select_from(datasets.join(namespaces, datasets.c.namespace_id == namespaces.c.id))
        .where(datasets.c.name == text)
        .order_by(namespaces.c.name)
    ).scalars()
    found = [(str(ns), text) for ns in rows]
    return found or [("", text)]


def source_json(source: TraceSource) -> Json:
    extract = source.facets.get("censusExtract") or {}
    return {
        "path": source.name,
        "namespace": source.namespace,
        "version": source.version,
        "sha256": extract.get("sha256"),
        "original_name": extract.get("originalName"),
        "laestab": extract.get("laestab"),
        "term": extract.get("term"),
        "year": extract.get("year"),
        "format": extract.get("format"),
        "received_at": extract.get("receivedAt"),
        # Retention erasure (censustrace.compliance.erasure): the bytes are now a redacted copy; the
        # trace still names the original version and says what was erased, when and under which rule.
        **({"erased": _erased(erasure)} if (erasure := source.facets.get("retentionErasure")) else {}),
    }


def _erased(facet: Json) -> Json:
    items = facet.get("erasures") or []
    return {
        "as_of": facet.get("asOf"),
        "rules": sorted({str(i.get("rule")) for i in items}),
        "fields": sorted({str(i.get("field")) for i in items}),
        "redacted_sha256": next((i.get("redactedSha256") for i in items if i.get("redactedSha256")), None),
        "whole_file": any(bool(i.get("wholeFile")) for i in items),
    }


def trace_target(engine: Engine, target: str, version: str | None = None) -> Json:
    """``{"target", "sources": [...], "graph": {"nodes", "edges"}}`` for one dataset version."""
    text, _, at_version = target.partition("@")
    version = version or at_version or None
    with engine.connect() as conn:
        _dataset_id, namespace, name = resolve_dataset(conn, dataset_candidates(conn, text))
        result = trace_upstream(conn, namespace, name, version)
    start = result.to_dict()["start"]
    return {
        "target": start,
        "sources": sorted((source_json(s) for s in result.sources), key=lambda s: (s["path"], s["version"])),
        "graph": result.graph,
    }


def _linked(conn: Connection, wanted: Any, given: Any, ids: set[int], direction: str) -> set[int]:
    """The ``wanted`` column of every ``direction`` link whose ``given`` column is one of ``ids``."""
    found: set[int] = set()
    for batch in chunks(sorted(ids)):
        found |= {
            int(v)
            for v in conn.execute(
                select(wanted).where(given.in_(batch), run_dataset_versions.c.direction == direction)
            ).scalars()
        }
    return found


def _downstream(conn: Connection, start_ids: set[int]) -> set[int]:
    """Every dataset version made, run by run, from the ``start_ids`` versions (themselves included)."""
    rdv = run_dataset_versions
    seen, runs_seen, frontier = set(start_ids), set[int](), set(start_ids)
    while frontier:
        new_runs = _linked(conn, rdv.c.run_id, rdv.c.dataset_version_id, frontier, "input")
        new_runs -= runs_seen
        runs_seen |= new_runs
        frontier = _linked(conn, rdv.c.dataset_version_id, rdv.c.run_id, new_runs, "output")
        frontier -= seen
        seen |= frontier
    return seen


def consumers(conn: Connection, start_ids: set[int]) -> list[Json]:
    """The shares (outbound files with a ``censusShare`` facet) made from these versions, and their
    recipients: forward, by exact versions."""
    reached = _downstream(conn, start_ids)
    refs = version_refs(conn, reached)
    files = [v for v in reached if refs[v]["namespace"] == FILE_NAMESPACE]
    found = merged_facets(conn, facets.c.dataset_version_id, files, "dataset_version")
    out = []
    for version_id in files:
        share = found.get(version_id, {}).get("censusShare")
        if not isinstance(share, dict):
            continue
        ref = refs[version_id]
        out.append(
            {
                "id": f"dataset:{ref['namespace']}:{ref['name']}#{ref['version']}",
                "share_id": share.get("shareId"),
                "agreement": share.get("agreementId"),
                "recipient": share.get("recipient"),
                "recipient_type": share.get("recipientType"),
                "purpose": share.get("purpose"),
                "pupils": share.get("pupilCount"),
                "file": ref["name"],
                "sha256": ref["version"],
            }
        )
    return sorted(out, key=lambda c: (str(c["share_id"]), c["sha256"]))


__all__ = ["consumers", "dataset_candidates", "source_json", "trace_target"]
