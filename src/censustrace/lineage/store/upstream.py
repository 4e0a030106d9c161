"""Everything upstream of one dataset version, fetched with one recursive query and summarised in SQL.

The share page must stay fast with 20,000 census files behind a share (about 140,000 dataset versions
and 60,000 runs upstream): fetching that graph row by row into Python costs seconds. Instead a
recursive common table expression (``WITH RECURSIVE``; the same text runs on SQLite and PostgreSQL)
walks ``run_dataset_versions`` from the start version: version -> the runs that wrote it -> the versions
those runs read, breadth first, ``UNION`` dropping what was already seen so cycles end. The database
then groups what it found and only the groups, their edges, one page of sources and per-school counts
come back:

* a dataset version's group is (namespace kind, the job that wrote it, the table for non-file
  datasets): every received file is in one group, every archived extract in another, each warehouse
  table in its own; runs are not nodes but the labelled edges between groups ("stage, 2,000 runs");
* a source is a version no run with inputs wrote (the received files), as in :func:`trace_upstream`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

Json = dict[str, Any]

#: The walk: every version upstream of :start (itself included), and the (run, version) read edges.
_WALK: Final = """
WITH RECURSIVE up(version_id) AS (
    SELECT :start
    UNION
    SELECT i.dataset_version_id
    FROM up
    JOIN run_dataset_versions o ON o.dataset_version_id = up.version_id AND o.direction = 'output'
    JOIN run_dataset_versions i ON i.run_id = o.run_id AND i.direction = 'input'
),
wrote AS (
    SELECT DISTINCT o.run_id, o.dataset_version_id AS version_id
    FROM up
    JOIN run_dataset_versions o ON o.dataset_version_id = up.version_id AND o.direction = 'output'
    WHERE EXISTS (
        SELECT 1 FROM run_dataset_versions x WHERE x.run_id = o.run_id AND x.direction = 'input'
    )
),
vkey AS (
    SELECT up.version_id, d.namespace_id,
           CASE WHEN up.version_id = :start THEN -1 ELSE 0 END AS dkey,
           CASE WHEN n.name = 'file' THEN 0 ELSE d.id END AS tkey,
           COALESCE(MIN(r.job_id), 0) AS writer
    FROM up
    JOIN dataset_versions dv ON dv.id = up.version_id
    JOIN datasets d ON d.id = dv.dataset_id
    JOIN namespaces n ON n.id = d.namespace_id
    LEFT JOIN wrote w ON w.version_id = up.version_id
    LEFT JOIN runs r ON r.id = w.run_id
    GROUP BY up.version_id, d.namespace_id, d.id, n.name
)
"""

_GROUPS: Final = (
    _WALK
    + """
SELECT v.namespace_id, v.writer, v.dkey, v.tkey, COUNT(*) AS versions, MIN(v.version_id) AS first_version,
       COUNT(DISTINCT dv.dataset_id) AS datasets
FROM vkey v JOIN dataset_versions dv ON dv.id = v.version_id
GROUP BY v.namespace_id, v.writer, v.dkey, v.tkey
"""
)

_EDGES: Final = (
    _WALK
    + """
SELECT vi.namespace_id, vi.writer, vi.dkey, vo.namespace_id, vo.writer, vo.dkey, r.job_id,
       COUNT(DISTINCT r.id) AS runs
FROM wrote w
JOIN runs r ON r.id = w.run_id
JOIN vkey vo ON vo.version_id = w.version_id
JOIN run_dataset_versions i ON i.run_id = w.run_id AND i.direction = 'input'
JOIN vkey vi ON vi.version_id = i.dataset_version_id
GROUP BY vi.namespace_id, vi.writer, vi.dkey, vo.namespace_id, vo.writer, vo.dkey, r.job_id
"""
)

_SOURCES: Final = _WALK + ", src AS (SELECT version_id FROM vkey WHERE writer = 0 AND version_id <> :start)"  # noqa: S608

_SOURCE_PAGE: Final = (
    _SOURCES
    + """
SELECT src.version_id, n.name AS namespace, d.name, dv.version, dv.version_source
FROM src
JOIN dataset_versions dv ON dv.id = src.version_id
JOIN datasets d ON d.id = dv.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
ORDER BY d.name, dv.version, src.version_id
LIMIT :limit OFFSET :offset
"""
)

#: LAESTAB per source, from the richest ``censusExtract`` facet on any version of the same bytes: the
#: received file is described before its header is read, its archived copy (same sha256) after.
_SCHOOLS: Final = (
    _SOURCES  # noqa: S608 - fixed text; {laestab} is one of two fixed expressions
    + """,
upv AS (SELECT up.version_id, dv.version FROM up JOIN dataset_versions dv ON dv.id = up.version_id),
school AS (
    SELECT src.version_id, MAX({laestab}) AS laestab
    FROM src
    JOIN upv s ON s.version_id = src.version_id
    LEFT JOIN upv same ON same.version = s.version
    LEFT JOIN facets f ON f.dataset_version_id = same.version_id AND f.name = 'censusExtract'
    GROUP BY src.version_id
)
SELECT laestab, COUNT(*) FROM school GROUP BY laestab
"""
)


def _laestab_sql(conn: Connection) -> str:
    if conn.dialect.name == "postgresql":
        return "CAST(f.body AS json) ->> 'laestab'"
    return "json_extract(f.body, '$.laestab')"


GroupKey = tuple[int, int, int]


@dataclass
class Group:
    key: GroupKey
    namespace: str
    #: The job that wrote the versions ("" for received files and other sources).
    writer: str
    #: Versions per table (dataset name) for tables; empty for a group of files.
    tables: dict[str, int]
    versions: int
    datasets: int
    first_version: int
    contains_start: bool = False


@dataclass
class GroupEdge:
    origin: GroupKey
    target: GroupKey
    job: str
    runs: int


@dataclass
class Upstream:
    start_version: int
    groups: dict[GroupKey, Group]
    edges: list[GroupEdge]
    source_count: int
    #: Sources per LAESTAB ("" when no facet names the school).
    schools: dict[str, int] = field(default_factory=dict)


def _names(conn: Connection, table: str, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    params = {f"i{n}": value for n, value in enumerate(sorted(ids))}
    rows = conn.execute(text(f"SELECT id, name FROM {table} WHERE id IN ({marks})"), params).all()  # noqa: S608
    return {int(row[0]): str(row[1]) for row in rows}


def upstream(conn: Connection, start_version: int) -> Upstream:
    """The grouped graph upstream of ``start_version`` and its sources' schools (four statements)."""
    params = {"start": start_version}
    group_rows = conn.execute(text(_GROUPS), params).all()
    edge_rows = conn.execute(text(_EDGES), params).all()
    school_rows = conn.execute(text(_SCHOOLS.format(laestab=_laestab_sql(conn))), params).all()
    namespace_names = _names(conn, "namespaces", {int(r[0]) for r in group_rows})
    job_names = _names(conn, "jobs", {int(r[1]) for r in group_rows if r[1]} | {int(r[6]) for r in edge_rows})
    dataset_names = _names(conn, "datasets", {int(r[3]) for r in group_rows if int(r[3]) > 0})
    groups: dict[GroupKey, Group] = {}
    for ns, writer, dkey, tkey, versions, first, count in group_rows:
        key = (int(ns), int(writer), int(dkey))
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(
                key, namespace_names[int(ns)], job_names.get(int(writer), ""), {}, 0, 0, int(first)
            )
        group.versions += int(versions)
        group.datasets += int(count)
        group.first_version = min(group.first_version, int(first))
        if int(tkey) > 0:
            group.tables[dataset_names[int(tkey)]] = int(versions)
    for group in groups.values():
        group.contains_start = group.key[2] == -1
    edges = [
        GroupEdge(
            (int(r[0]), int(r[1]), int(r[2])),
            (int(r[3]), int(r[4]), int(r[5])),
            job_names[int(r[6])],
            int(r[7]),
        )
        for r in edge_rows
    ]
    schools = {str(laestab or ""): int(n) for laestab, n in school_rows}
    return Upstream(start_version, groups, edges, sum(schools.values()), schools)


def source_page(conn: Connection, start_version: int, offset: int, limit: int) -> list[Json]:
    """One page of the sources (received files) upstream of ``start_version``, by name."""
    rows = conn.execute(
        text(_SOURCE_PAGE), {"start": start_version, "offset": max(offset, 0), "limit": limit}
    ).all()
    return [
        {
            "version_id": int(row[0]),
            "namespace": row[1],
            "name": row[2],
            "version": row[3],
            "versionSource": row[4],
        }
        for row in rows
    ]
