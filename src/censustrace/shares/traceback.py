"""Trace-back from anything a user holds to the exact census files it came from, and forward to the
shares made from it.

``trace_any`` is what ``censustrace trace``, the API (``/api/v1/trace/find``) and the viewer's search call.
It resolves the input (:func:`find_start`): a dataset id or name with or without ``@version`` (old names
too), a share id, an outbound file path, an extract id or a received file's sha256 (or a copy of the
file), to one exact dataset version; walks exact versions upstream to the received files (``sources``,
each described by the census-extract facet the receive step recorded) and downstream to the shares and
their recipients (``consumers``). Shares are found by their release run, never by path, so a home moved
to another folder traces the same. The walks themselves are :mod:`censustrace.lineage.traceback`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from censustrace.config import Settings
from censustrace.errors import CensustraceError
from censustrace.intake.archive import sha256_of
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.lineage.store.queries import (
    LineageNotFound,
    find_dataset,
    find_dataset_version,
    version_refs,
)
from censustrace.lineage.store.tables import (
    dataset_versions,
    datasets,
    namespaces,
    run_dataset_versions,
    runs,
)
from censustrace.lineage.store.trace import TraceResult, trace_upstream
from censustrace.lineage.traceback import consumers, dataset_candidates, source_json

Json = dict[str, Any]


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class LineageAmbiguous(CensustraceError):
    """The input names more than one thing (two shares' files, a name in two namespaces...): say which."""

    code = "CT-LINEAGE-AMBIGUOUS"
    exit_code = 2


@dataclass(frozen=True)
class Start:
    """Where a trace starts: one exact dataset version, and what the user's input was taken to be."""

    kind: str  # dataset | share | extract | sha256 | path
    version_id: int
    detail: Json


def _version_of(conn: Connection, namespace: str, name: str, version: str | None) -> int | None:
    dataset_id = find_dataset(conn, namespace, name)
    return None if dataset_id is None else find_dataset_version(conn, dataset_id, version)


def _run_outputs(conn: Connection, run_uuid: str) -> list[int]:
    """The versions in the ``file`` namespace a run wrote (a share's release: its outbound file)."""
    rows = conn.execute(
        select(run_dataset_versions.c.dataset_version_id)
        .join(runs, runs.c.id == run_dataset_versions.c.run_id)
        .join(dataset_versions, dataset_versions.c.id == run_dataset_versions.c.dataset_version_id)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
        .where(
            runs.c.run_uuid == run_uuid,
            run_dataset_versions.c.direction == "output",
            namespaces.c.name == FILE_NAMESPACE,
        )
    ).scalars()
    return sorted(int(v) for v in rows)


def _versions_named(conn: Connection, version: str, namespace: str | None = None) -> list[tuple[int, str]]:
    """(version id, dataset name) of every dataset version called ``version`` (in ``namespace``)."""
    query = (
        select(dataset_versions.c.id, datasets.c.name)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
        .where(dataset_versions.c.version == version)
        .order_by(dataset_versions.c.id)
    )
    if namespace is not None:
        query = query.where(namespaces.c.name == namespace)
    return [(int(i), str(n)) for i, n in conn.execute(query).tuples()]


def _share_start(conn: Connection, share: Any, kind: str, text: str) -> Start:
    from censustrace.shares.lineage import release_run_id

    if not share.sha256 or share.status != "delivered":
        raise LineageNotFound(
            f"share {share.share_id} is {share.status}: no file was released, nothing to trace"
        )
    outputs = _run_outputs(conn, share.lineage_run_id or release_run_id(share.share_id))
    refs = version_refs(conn, outputs)
    found = [v for v in outputs if refs[v]["version"] == share.sha256]
    if not found:
        raise LineageNotFound(f"share {share.share_id}: its release is not in the lineage store")
    return Start(kind, found[0], {"input": text, "share_id": share.share_id})


def trace_share(conn: Connection, share: Any) -> TraceResult:
    """The upstream trace of a delivered share's file, found by its release run (never by path)."""
    start = _share_start(conn, share, "share", share.share_id)
    ref = version_refs(conn, [start.version_id])[start.version_id]
    return trace_upstream(conn, ref["namespace"], ref["name"], ref["version"])


def _find_shares(settings: Settings, text: str) -> list[Any]:
    """Delivered shares whose id is ``text``, or whose outbound file ``text`` names (absolute, relative to
    the share outbox or the home, or just the file name)."""
    from censustrace.shares.errors import ShareError
    from censustrace.shares.register import find_share, list_shares

    try:
        return [find_share(settings, text)]
    except ShareError:
        pass
    if not text.lower().endswith((".csv", ".json", ".xml", ".txt")) and "/" not in text:
        return []
    path = Path(text)
    outbox = settings.share_outbox_dir.expanduser().resolve()
    parts = path.parts
    if path.is_absolute():
        resolved = Path(os.path.normpath(path))
        if resolved.is_relative_to(outbox):
            parts = resolved.relative_to(outbox).parts
        elif resolved.is_relative_to(settings.home):
            parts = resolved.relative_to(settings.home).parts
    parts = parts[-2:]
    found = []
    for share in list_shares(settings):
        if share.status != "delivered" or not share.file_path:
            continue
        held = Path(share.file_path).parts[-2:]
        if held[-len(parts) :] == tuple(parts):
            found.append(share)
    return found


def _find_extract(settings: Settings, text: str) -> Any:
    from sqlalchemy import select as sa_select

    from censustrace.warehouse.db import warehouse_engine
    from censustrace.warehouse.tables import extracts

    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return conn.execute(sa_select(extracts).where(extracts.c.extract_id == text)).first()


def find_start(settings: Settings, conn: Connection, target: str, version: str | None = None) -> Start:
    """What ``target`` names, as one exact dataset version to trace from. Tried in turn: a dataset id
    (``dataset:<namespace>:<name>``) or name with or without ``@version`` (old names included), a share
    id, an outbound file path, an extract id, a received file's sha256. Raises :class:`LineageNotFound`
    or, when it names more than one thing, :class:`LineageAmbiguous`."""
    text = target.strip()
    if not text:
        raise LineageNotFound("nothing to trace: give a share id, file path, extract id, sha256 or dataset")
    starts: dict[int, Start] = {}
    named, _, at_version = text.partition("@")
    wanted = version or at_version or None
    for namespace, name in dict.fromkeys(dataset_candidates(conn, named)):
        if namespace and (found := _version_of(conn, namespace, name, wanted)) is not None:
            starts.setdefault(found, Start("dataset", found, {"input": text}))
    if starts:
        return _one(starts, text)
    shares = _find_shares(settings, text)
    for share in shares:
        start = _share_start(conn, share, "share" if share.share_id == text else "path", text)
        starts.setdefault(start.version_id, start)
    if starts:
        return _one(starts, text)
    if (row := _find_extract(settings, text)) is not None:
        for version_id, name in _versions_named(conn, row.extract_id):
            if name.endswith(".extracts"):
                return Start("extract", version_id, {"input": text, "extract_id": row.extract_id})
        raise LineageNotFound(f"extract {row.extract_id} has no lineage in the lineage store")
    sha = text.lower()
    if not _SHA256.match(sha) and (path := Path(text)).is_file():
        sha = sha256_of(path)  # a received file the user holds a copy of
    if _SHA256.match(sha):
        held = _versions_named(conn, sha, FILE_NAMESPACE)
        # Its archived copy (content-addressed, one per sha256): upstream are the landed file(s).
        archived = [v for v, name in held if name.endswith(f"/{sha}")]
        if archived or held:
            return Start("sha256", (archived or [v for v, _ in held])[0], {"input": text, "sha256": sha})
    raise LineageNotFound(
        f"{text[:120]!r} is no share id, outbound file, extract id, received file sha256 or dataset in the "
        "lineage store"
    )


def _one(starts: dict[int, Start], text: str) -> Start:
    if len(starts) == 1:
        return next(iter(starts.values()))
    raise LineageAmbiguous(
        f"{text[:120]!r} names {len(starts)} things; give one of: "
        + ", ".join(s.detail.get("share_id") or s.kind for s in starts.values())
        + " (or the full dataset:<namespace>:<name>@<version>)"
    )


def trace_any(settings: Settings, engine: Engine, target: str, version: str | None = None) -> Json:
    """``censustrace trace``'s answer for anything a user holds: ``target`` (the exact version traced),
    ``resolved`` (what the input was taken to be), ``sources`` (back to received files), ``consumers``
    (forward to shares and recipients) and ``graph`` (the runs in between, upstream)."""
    with engine.connect() as conn:
        start = find_start(settings, conn, target, version)
        ref = version_refs(conn, [start.version_id])[start.version_id]
        result = trace_upstream(conn, ref["namespace"], ref["name"], ref["version"])
        forward = {start.version_id}
        if start.kind == "extract":  # every table version the extract was published as
            forward |= {v for v, _ in _versions_named(conn, start.detail["extract_id"])}
        found = consumers(conn, forward)
    return {
        "target": result.to_dict()["start"],
        "resolved": {"kind": start.kind, **start.detail},
        "sources": sorted((source_json(s) for s in result.sources), key=lambda s: (s["path"], s["version"])),
        "consumers": found,
        "graph": result.graph,
    }


__all__ = ["LineageAmbiguous", "find_start", "trace_any", "trace_share"]
