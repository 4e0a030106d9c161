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


def _share_of(engine: Engine, tag: str, versions: list[str]) -> int:
    store_event(
        engine,
        run_event(
            job=(NS, "share.release"),
            inputs=[dataset("wh", f"{tag}.pupil", version=v) for v in versions],
            outputs=[dataset("file", f"/outbox/{tag}.csv", version=sha(tag))],
            event_time=at(900),
        ),
    )
    return start_id(engine, "file", f"/outbox/{tag}.csv", sha(tag))


def _kept_row(engine: Engine, start: int) -> tuple[int, str] | None:
    from sqlalchemy import select

    from censustrace.lineage.store.tables import upstream_summaries as kept

    with engine.connect() as conn:
        row = conn.execute(
            select(kept.c.link_mark, kept.c.computed_at).where(kept.c.start_version_id == start)
        ).one_or_none()
    return None if row is None else (int(row[0]), str(row[1]))


def test_the_worked_out_summary_is_kept_and_read_back_the_same(engine: Engine) -> None:
    tag = unique("keep")
    versions = [
        census_file(engine, tag, school, n, n * 10)
        for n, school in enumerate(["3302000", "3304001", "8814002"])
    ]
    start = _share_of(engine, tag, versions)
    with engine.connect() as conn:
        first = upstream(conn, start, offset=0, limit=2)
    assert _kept_row(engine, start) is not None
    with engine.connect() as conn:
        again = upstream(conn, start, offset=0, limit=2)
        last = upstream(conn, start, offset=2, limit=2)
    assert again == first
    assert [s["name"] for s in first.page + last.page] == sorted(s["name"] for s in first.page + last.page)
    assert len(last.page) == 1


def test_new_unrelated_lineage_keeps_the_summary_and_moves_its_marks(engine: Engine) -> None:
    tag = unique("quiet")
    versions = [census_file(engine, tag, "3302000", n, n * 10) for n in range(2)]
    start = _share_of(engine, tag, versions)
    with engine.connect() as conn:
        first = upstream(conn, start, limit=10)
    before = _kept_row(engine, start)
    census_file(engine, unique("other"), "3309999", 7, 1000)  # new runs writing new versions only
    with engine.connect() as conn:
        again = upstream(conn, start, limit=10)
    after = _kept_row(engine, start)
    assert again == first
    assert before is not None
    assert after is not None
    assert after[1] == before[1]  # not worked out again
    assert after[0] > before[0]  # the next check starts after the rows this one read


def test_a_late_event_reaching_into_the_walk_makes_it_worked_out_again(engine: Engine) -> None:
    tag = unique("late")
    versions = [census_file(engine, tag, "3302000", n, n * 10) for n in range(2)]
    start = _share_of(engine, tag, versions)
    with engine.connect() as conn:
        assert upstream(conn, start, limit=10).source_count == 2
    # A correction run writes one of the shared pupil versions again from a new file: it is upstream now.
    extra = dataset("file", f"/landing/{tag}/late.xml", version=sha(tag + "late"))
    store_event(
        engine,
        run_event(
            job=(NS, "ingest.correct"),
            inputs=[extra],
            outputs=[dataset("wh", f"{tag}.pupil", version=versions[0])],
            event_time=at(950),
        ),
    )
    with engine.connect() as conn:
        found = upstream(conn, start, limit=10)
    assert found.source_count == 3
    assert f"/landing/{tag}/late.xml" in {s["name"] for s in found.page}
    # A census facet arriving late on a file already upstream changes the schools.
    named = dataset("file", f"/landing/{tag}/late.xml", version=sha(tag + "late"))
    named["facets"]["censusExtract"] = facet(None, sha256=sha(tag + "late"), laestab="8814002")
    store_event(
        engine, run_event(job=(NS, "ingest.describe"), inputs=[named], outputs=[], event_time=at(960))
    )
    with engine.connect() as conn:
        assert upstream(conn, start, limit=10).schools.get("8814002") == 1
