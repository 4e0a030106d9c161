"""The share page's one-query walk upstream (recursive CTE), grouped in SQL: the same sources as the
per-level trace, groups that count what they hold, schools from the census facets, cycles that end; on
SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

from sqlalchemy import Engine

from censustrace.lineage.store import store_event, trace_upstream
from censustrace.lineage.store.queries import find_dataset, find_dataset_version
from censustrace.lineage.store.upstream import upstream
from tests.plugins.helpers.lineage_events import at, dataset, facet, run_event, unique

NS = "censustrace"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def census_file(engine: Engine, tag: str, laestab: str, n: int, t: float) -> str:
    """received file -> receive -> archived copy (with LAESTAB) -> stage -> 2 staged tables -> publish ->
    pupil table version; returns the pupil table version."""
    digest = sha(f"{tag}-{n}")
    landing = dataset("file", f"/landing/{tag}/SC_{laestab}_{n}.xml", version=digest)
    landing["facets"]["censusExtract"] = facet(None, sha256=digest, originalName=f"SC_{laestab}.xml")
    archived = dataset("file", f"/archive/{digest[:2]}/{digest}", version=digest)
    archived["facets"]["censusExtract"] = facet(None, sha256=digest, laestab=laestab)
    staged = [dataset("wh", f"{tag}.staged_{t_}", version=f"ext_{digest[:12]}") for t_ in ("a", "b")]
    pupil = dataset("wh", f"{tag}.pupil", version=f"ext_{digest[:12]}")
    for i, (job, inputs, outputs) in enumerate(
        [
            ("ingest.receive", [landing], [archived]),
            ("ingest.stage", [archived], staged),
            ("ingest.publish", [archived, *staged], [pupil]),
        ]
    ):
        store_event(engine, run_event(job=(NS, job), inputs=inputs, outputs=outputs, event_time=at(t + i)))
    return f"ext_{digest[:12]}"


def start_id(engine: Engine, namespace: str, name: str, version: str) -> int:
    with engine.connect() as conn:
        dataset_id = find_dataset(conn, namespace, name)
        assert dataset_id is not None
        found = find_dataset_version(conn, dataset_id, version)
        assert found is not None
        return found


def test_one_recursive_query_finds_the_same_sources_grouped(engine: Engine) -> None:
    tag = unique("up")
    schools = ["3302000", "3302000", "3304001", "8814002", "8814003"]
    versions = [census_file(engine, tag, school, n, n * 10) for n, school in enumerate(schools)]
    # Another census file nobody shares: must not appear.
    census_file(engine, tag, "3309999", 99, 500)
    share_file = dataset("file", f"/outbox/{tag}.csv", version=sha(tag))
    store_event(
        engine,
        run_event(
            job=(NS, "share.release"),
            inputs=[dataset("wh", f"{tag}.pupil", version=v) for v in versions],
            outputs=[share_file],
            event_time=at(900),
        ),
    )
    start = start_id(engine, "file", f"/outbox/{tag}.csv", sha(tag))
    with engine.connect() as conn:
        found = upstream(conn, start, offset=0, limit=3)
        page = found.page
        rest = upstream(conn, start, offset=3, limit=3).page
        expected = trace_upstream(conn, "file", f"/outbox/{tag}.csv", sha(tag))
    assert found.source_count == 5
    assert sorted(s["name"] for s in page + rest) == sorted(s.name for s in expected.sources)
    assert [s["name"] for s in page] == sorted(s["name"] for s in page)
    assert len(page) == 3
    assert len(rest) == 2
    assert found.schools == {"3302000": 2, "3304001": 1, "8814002": 1, "8814003": 1}
    by_writer = {g.writer.rsplit(".", 1)[-1]: g for g in found.groups.values() if not g.contains_start}
    assert by_writer[""].versions == 5  # received files
    assert by_writer["receive"].versions == 5  # archived copies
    assert by_writer["stage"].tables == {f"{tag}.staged_a": 5, f"{tag}.staged_b": 5}
    assert by_writer["publish"].tables == {f"{tag}.pupil": 5}
    [share_group] = [g for g in found.groups.values() if g.contains_start]
    assert share_group.versions == 1
    edges = {(found.groups[e.origin].writer, found.groups[e.target].writer, e.runs) for e in found.edges}
    assert ("", "ingest.receive", 5) in edges
    assert ("ingest.receive", "ingest.publish", 5) in edges
    assert ("ingest.publish", "share.release", 1) in edges
    assert len(found.edges) == 5


def test_cycles_end_and_a_version_is_counted_once(engine: Engine) -> None:
    tag = unique("cyc")
    a, b = dataset("wh", f"{tag}.a", version="1"), dataset("wh", f"{tag}.b", version="1")
    source = dataset("file", f"/landing/{tag}", version="s")
    store_event(engine, run_event(job=(NS, "x"), inputs=[source, b], outputs=[a]))
    store_event(engine, run_event(job=(NS, "y"), inputs=[a], outputs=[b]))
    with engine.connect() as conn:
        found = upstream(conn, start_id(engine, "wh", f"{tag}.a", "1"))
    assert found.source_count == 1
    assert sum(g.versions for g in found.groups.values()) == 3
