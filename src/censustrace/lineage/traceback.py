"""Trace-back: from any output (a dataset version, later a share) to the exact census files it came from.

``trace_target`` is what ``censustrace trace`` and the viewer call. It resolves a target written the way
people copy it (``dataset:<namespace>:<name>``, a bare dataset name, optionally ``@<version>``), walks
exact dataset versions upstream in the lineage store and describes each source with the census-extract
facet the receive step recorded on it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from censustrace.lineage.store.queries import LineageNotFound, resolve_dataset, splits
from censustrace.lineage.store.tables import datasets, namespaces
from censustrace.lineage.store.trace import TraceSource, trace_upstream

Json = dict[str, Any]


def _candidates(conn: Connection, text: str) -> list[tuple[str, str]]:
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


def _source(source: TraceSource) -> Json:
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
        _dataset_id, namespace, name = resolve_dataset(conn, _candidates(conn, text))
        result = trace_upstream(conn, namespace, name, version)
    start = result.to_dict()["start"]
    return {
        "target": start,
        "sources": sorted((_source(s) for s in result.sources), key=lambda s: (s["path"], s["version"])),
        "graph": result.graph,
    }


__all__ = ["LineageNotFound", "trace_target"]
