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

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from censustrace.lineage.spec import normalise_timestamp
from censustrace.lineage.store.tables import upstream_sources, upstream_summaries

Json = dict[str, Any]

#: The walk, one recursive statement: every version upstream of :start (itself included).
_WALK: Final = """
INSERT INTO ct_up (version_id)
WITH RECURSIVE up(version_id) AS (
    SELECT :start
    UNION
    SELECT i.dataset_version_id
    FROM up
    JOIN run_dataset_versions o ON o.dataset_version_id = up.version_id AND o.direction = 'output'
    JOIN run_dataset_versions i ON i.run_id = o.run_id AND i.direction = 'input'
)
SELECT version_id FROM up
"""

#: The runs that wrote them having read something (a run that read nothing makes its output a source).
_WROTE: Final = """
INSERT INTO ct_wrote (version_id, run_id)
SELECT DISTINCT o.dataset_version_id, o.run_id
FROM ct_up up
JOIN run_dataset_versions o ON o.dataset_version_id = up.version_id AND o.direction = 'output'
WHERE EXISTS (SELECT 1 FROM run_dataset_versions x WHERE x.run_id = o.run_id AND x.direction = 'input')
"""

#: Each version's group: (namespace, writing job or 0, -1 for the start), and its table (0 for files).
_VKEY: Final = """
INSERT INTO ct_vkey (version_id, namespace_id, writer, dkey, tkey, version)
SELECT up.version_id, d.namespace_id, COALESCE(MIN(r.job_id), 0),
       CASE WHEN up.version_id = :start THEN -1 ELSE 0 END,
       CASE WHEN n.name = 'file' THEN 0 ELSE d.id END,
       dv.version
FROM ct_up up
JOIN dataset_versions dv ON dv.id = up.version_id
JOIN datasets d ON d.id = dv.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
LEFT JOIN ct_wrote w ON w.version_id = up.version_id
LEFT JOIN runs r ON r.id = w.run_id
GROUP BY up.version_id, d.namespace_id, d.id, n.name, dv.version
"""

_GROUPS: Final = """
SELECT namespace_id, writer, dkey, tkey, COUNT(*), MIN(version_id), COUNT(DISTINCT tkey)
FROM ct_vkey GROUP BY namespace_id, writer, dkey, tkey
"""

_EDGES: Final = """
SELECT vi.namespace_id, vi.writer, vi.dkey, vo.namespace_id, vo.writer, vo.dkey, r.job_id,
       COUNT(DISTINCT r.id) AS runs
FROM ct_wrote w
JOIN runs r ON r.id = w.run_id
JOIN ct_vkey vo ON vo.version_id = w.version_id
JOIN run_dataset_versions i ON i.run_id = w.run_id AND i.direction = 'input'
JOIN ct_vkey vi ON vi.version_id = i.dataset_version_id
GROUP BY vi.namespace_id, vi.writer, vi.dkey, vo.namespace_id, vo.writer, vo.dkey, r.job_id
"""

_SOURCE_PAGE: Final = """
SELECT s.version_id, n.name AS namespace, d.name, dv.version, dv.version_source
FROM ct_vkey s
JOIN dataset_versions dv ON dv.id = s.version_id
JOIN datasets d ON d.id = dv.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
WHERE s.writer = 0 AND s.dkey = 0
ORDER BY d.name, dv.version, s.version_id
LIMIT :limit OFFSET :offset
"""

#: LAESTAB per source, from the richest ``censusExtract`` facet on any version of the same bytes in the
#: walk: the received file is described before its header is read, its archived copy (same sha256) after.
_SCHOOLS: Final = """
SELECT laestab, COUNT(*) FROM (
    SELECT s.version_id, MAX({laestab}) AS laestab
    FROM ct_vkey s
    LEFT JOIN ct_vkey same ON same.version = s.version
    LEFT JOIN facets f ON f.dataset_version_id = same.version_id AND f.name = 'censusExtract'
    WHERE s.writer = 0 AND s.dkey = 0
    GROUP BY s.version_id
) school GROUP BY laestab
"""

_TEMP_TABLES: Final = (
    "CREATE TEMPORARY TABLE IF NOT EXISTS ct_up (version_id INTEGER PRIMARY KEY)",
    "CREATE TEMPORARY TABLE IF NOT EXISTS ct_wrote (version_id INTEGER, run_id INTEGER, "
    "PRIMARY KEY (version_id, run_id))",
    "CREATE TEMPORARY TABLE IF NOT EXISTS ct_vkey (version_id INTEGER PRIMARY KEY, namespace_id INTEGER, "
    "writer INTEGER, dkey INTEGER, tkey INTEGER, version VARCHAR)",
    "CREATE INDEX IF NOT EXISTS ct_vkey_version ON ct_vkey (version)",
)
_WORK_TABLES: Final = ("ct_vkey", "ct_wrote", "ct_up")
#: Marks a DBAPI connection (``Connection.info`` lives as long as it) whose temporary tables exist.
_READY: Final = "censustrace_upstream_tables"


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
    #: One page of the sources by name (``{version_id, namespace, name, version, versionSource}``).
    page: list[Json] = field(default_factory=list)


def _names(conn: Connection, table: str, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    params = {f"i{n}": value for n, value in enumerate(sorted(ids))}
    rows = conn.execute(text(f"SELECT id, name FROM {table} WHERE id IN ({marks})"), params).all()  # noqa: S608
    return {int(row[0]): str(row[1]) for row in rows}


@contextmanager
def _walked(conn: Connection, start_version: int) -> Iterator[None]:
    """The walk from ``start_version`` materialised in indexed temporary tables of this connection (the
    grouping statements join them several times; as common table expressions PostgreSQL's planner could
    not estimate them and joined them by nested loops). The tables are made once per database connection
    (committed, so a rollback keeps them) and emptied around each use."""
    if not conn.info.get(_READY):
        if conn.in_transaction():
            conn.commit()  # nothing of ours is pending: a page's connection only reads
        for statement in _TEMP_TABLES:
            conn.execute(text(statement))
        conn.commit()
        conn.info[_READY] = True
    try:
        for table in _WORK_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our fixed table names
        params = {"start": start_version}
        analyse = conn.dialect.name == "postgresql"  # row counts for the planner (none for temp tables)
        for statement, table in ((_WALK, "ct_up"), (_WROTE, "ct_wrote"), (_VKEY, "ct_vkey")):
            conn.execute(text(statement), params if ":start" in statement else {})
            if analyse:
                conn.execute(text(f"ANALYZE {table}"))
        yield
    finally:
        for table in _WORK_TABLES:
            conn.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - our fixed table names


def _marks(conn: Connection) -> dict[str, int]:
    row = conn.execute(
        text(
            "SELECT (SELECT MAX(id) FROM run_dataset_versions), (SELECT MAX(id) FROM facets), "
            "(SELECT MAX(id) FROM runs), (SELECT MAX(id) FROM dataset_versions)"
        )
    ).one()
    names = ("link_mark", "facet_mark", "run_mark", "version_mark")
    return dict(zip(names, (int(v or 0) for v in row), strict=True))


def _writers_in_flight(conn: Connection) -> bool:
    """Whether another transaction that has written is still open (PostgreSQL): ids it took may be below
    the marks yet become visible later, so what is worked out now is used once but not kept. SQLite has
    one writer at a time, and a reader's snapshot holds everything below the marks."""
    if conn.dialect.name != "postgresql":
        return False
    return bool(
        conn.execute(
            text(
                "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL)"
            )
        ).scalar()
    )


#: Rows after the marks that could change a kept summary: a link of a run that existed (its inputs or
#: outputs grew), a run writing a version that existed, a census facet on a version that existed (the
#: schools). New runs writing new versions cannot reach into a summary worked out before them.
_STALE: Final = """
SELECT EXISTS (
    SELECT 1 FROM run_dataset_versions
    WHERE id > :link_mark AND id <= :link_now
      AND (run_id <= :run_mark OR (direction = 'output' AND dataset_version_id <= :version_mark))
) OR EXISTS (
    SELECT 1 FROM facets
    WHERE id > :facet_mark AND id <= :facet_now AND name = 'censusExtract'
      AND dataset_version_id <= :version_mark
)
"""


def _kept(conn: Connection, start_version: int) -> Json | None:
    """The kept summary of ``start_version`` if nothing since could have changed it. When still good, its
    link and facet marks move up to now, so the next check reads only rows newer than this one."""
    row = conn.execute(
        select(upstream_summaries).where(upstream_summaries.c.start_version_id == start_version)
    ).one_or_none()
    if row is None:
        return None
    now = _marks(conn)
    if now["link_mark"] == row.link_mark and now["facet_mark"] == row.facet_mark:
        return dict(row.summary)
    params = {
        "link_mark": row.link_mark,
        "facet_mark": row.facet_mark,
        "run_mark": row.run_mark,
        "version_mark": row.version_mark,
        "link_now": now["link_mark"],
        "facet_now": now["facet_mark"],
    }
    if conn.execute(text(_STALE), params).scalar() or _writers_in_flight(conn):
        return None
    with conn.engine.begin() as writer:
        writer.execute(
            update(upstream_summaries)
            .where(upstream_summaries.c.start_version_id == start_version)
            .where(upstream_summaries.c.link_mark == row.link_mark)
            .values(link_mark=now["link_mark"], facet_mark=now["facet_mark"])
        )
    return dict(row.summary)


def _keep(
    conn: Connection, start_version: int, marks: dict[str, int], summary: Json, sources: list[int]
) -> None:
    """Store a worked-out summary and its sources in page order, replacing a stale one. Written on a
    connection of its own: the caller's may be in a transaction of its own, and a page only reads. A
    concurrent request keeping the same summary first wins; this one's result is still used."""
    try:
        with conn.engine.begin() as writer:
            where = upstream_sources.c.start_version_id == start_version
            writer.execute(delete(upstream_sources).where(where))
            writer.execute(
                delete(upstream_summaries).where(upstream_summaries.c.start_version_id == start_version)
            )
            writer.execute(
                insert(upstream_summaries).values(
                    start_version_id=start_version,
                    computed_at=normalise_timestamp(datetime.now(UTC).isoformat()),
                    summary=summary,
                    **marks,
                )
            )
            for at in range(0, len(sources), _KEEP_CHUNK):
                writer.execute(
                    insert(upstream_sources),
                    [
                        {"start_version_id": start_version, "ordinal": at + n, "version_id": version}
                        for n, version in enumerate(sources[at : at + _KEEP_CHUNK])
                    ],
                )
    except IntegrityError:
        pass  # kept by a concurrent request meanwhile


_KEEP_CHUNK: Final = 5_000

_SOURCE_ORDER: Final = """
SELECT s.version_id
FROM ct_vkey s
JOIN dataset_versions dv ON dv.id = s.version_id
JOIN datasets d ON d.id = dv.dataset_id
WHERE s.writer = 0 AND s.dkey = 0
ORDER BY d.name, dv.version, s.version_id
"""

_KEPT_PAGE: Final = """
SELECT s.version_id, n.name AS namespace, d.name, dv.version, dv.version_source
FROM upstream_sources s
JOIN dataset_versions dv ON dv.id = s.version_id
JOIN datasets d ON d.id = dv.dataset_id
JOIN namespaces n ON n.id = d.namespace_id
WHERE s.start_version_id = :start AND s.ordinal >= :offset AND s.ordinal < :end
ORDER BY s.ordinal
"""


def upstream(conn: Connection, start_version: int, *, offset: int = 0, limit: int = 0) -> Upstream:
    """The grouped graph upstream of ``start_version``, its sources' schools, and (``limit`` > 0) one page
    of its sources by name. Worked out once (one recursive statement walks the graph; the rest group
    what it found) and kept until a later event could change it; a kept one costs a few indexed reads."""
    offset = max(offset, 0)
    summary = _kept(conn, start_version)
    if summary is not None:
        page_rows = (
            conn.execute(
                text(_KEPT_PAGE), {"start": start_version, "offset": offset, "end": offset + limit}
            ).all()
            if limit > 0
            else []
        )
        return _assemble(conn, start_version, summary, page_rows)
    marks = _marks(conn)
    keep = not _writers_in_flight(conn)
    with _walked(conn, start_version):
        summary = {
            "groups": [list(r) for r in conn.execute(text(_GROUPS)).all()],
            "edges": [list(r) for r in conn.execute(text(_EDGES)).all()],
            "schools": [list(r) for r in conn.execute(text(_SCHOOLS.format(laestab=_laestab_sql(conn))))],
        }
        page_rows = (
            conn.execute(text(_SOURCE_PAGE), {"offset": offset, "limit": limit}).all() if limit > 0 else []
        )
        sources = [int(r[0]) for r in conn.execute(text(_SOURCE_ORDER))] if keep else []
    if keep:
        _keep(conn, start_version, marks, summary, sources)
    return _assemble(conn, start_version, summary, page_rows)


def _assemble(conn: Connection, start_version: int, summary: Json, page_rows: Sequence[Any]) -> Upstream:
    """The summary's ids named (names are read now: ``censustrace init`` may rename datasets)."""
    group_rows, edge_rows, school_rows = summary["groups"], summary["edges"], summary["schools"]
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
    page = [
        {"version_id": int(r[0]), "namespace": r[1], "name": r[2], "version": r[3], "versionSource": r[4]}
        for r in page_rows
    ]
    return Upstream(start_version, groups, edges, sum(schools.values()), schools, page)
