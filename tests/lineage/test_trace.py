"""Tracing a dataset version back to its sources by exact versions, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import itertools
import random
import time
from typing import Any

import pytest
from sqlalchemy import Engine, Table, event, insert
from sqlalchemy.engine import Connection

from censustrace.lineage.store import LineageNotFound, TraceResult, store_event, trace_upstream
from censustrace.lineage.store.tables import (
    dataset_versions,
    datasets,
    jobs,
    namespaces,
    run_dataset_versions,
    runs,
)
from tests.plugins.helpers.lineage_events import at, dataset, facet, new_run_id, run_event

NS = "censustrace"


def submit_census(engine: Engine, school: str, sha: str, extract: str, pupils_version: str, t: float) -> None:
    """One received census file through archive -> parse -> load, each a run with START and COMPLETE."""
    landing = dataset("file", f"/landing/{school}.xml", version=sha)
    archived = dataset("file", f"file:///srv/archive/{sha[:2]}/{sha}", version=sha)
    steps = [
        ("census_ingest.archive", [landing], [archived]),
        ("census_ingest.parse", [archived], [dataset("censustrace", "extracts", version=extract)]),
        (
            "census_ingest.load",
            [dataset("censustrace", "extracts", version=extract)],
            [dataset("warehouse", "pupils", version=pupils_version)],
        ),
    ]
    for offset, (job, inputs, outputs) in enumerate(steps):
        run_id = new_run_id()
        start_facets = {"censusExtract": facet(None, sha256=sha, size=1234)} if offset == 0 else {}
        store_event(
            engine,
            run_event(
                "START",
                run_id=run_id,
                job=(NS, job),
                event_time=at(t + offset),
                inputs=[{**inputs[0], "facets": {**inputs[0]["facets"], **start_facets}}],
            ),
        )
        complete_facets = {"receipt": facet(None, school=school)} if offset == 0 else {}
        store_event(
            engine,
            run_event(
                "COMPLETE",
                run_id=run_id,
                job=(NS, job),
                event_time=at(t + offset + 0.5),
                inputs=[{**inputs[0], "facets": {**inputs[0]["facets"], **complete_facets}}],
                outputs=outputs,
            ),
        )


def share(engine: Engine, pupils_version: str, share_version: str, t: float) -> None:
    store_event(
        engine,
        run_event(
            "COMPLETE",
            job=(NS, "share.la_health"),
            event_time=at(t),
            inputs=[dataset("warehouse", "pupils", version=pupils_version)],
            outputs=[dataset("sftp", "health/pupils.csv", version=share_version)],
        ),
    )


def source_keys(result: TraceResult) -> list[tuple[str, str, str]]:
    return [(s.namespace, s.name, s.version) for s in result.sources]


def test_trace_follows_exact_versions_through_a_resubmission(engine: Engine) -> None:
    submit_census(engine, "school-a", "aa11", "extract-1", "pupils-v1", t=0)
    share(engine, "pupils-v1", "share-1", t=10)
    # The school resubmits: a new file makes a new latest version of the same warehouse table.
    submit_census(engine, "school-a", "bb22", "extract-2", "pupils-v2", t=20)

    latest = trace_upstream(engine, "warehouse", "pupils")
    assert latest.start.version == "pupils-v2"
    assert source_keys(latest) == [("file", "/landing/school-a.xml", "bb22")]

    old = trace_upstream(engine, "warehouse", "pupils", "pupils-v1")
    assert source_keys(old) == [("file", "/landing/school-a.xml", "aa11")]

    shared = trace_upstream(engine, "sftp", "health/pupils.csv")
    assert source_keys(shared) == [("file", "/landing/school-a.xml", "aa11")]
    # Facets from every event that mentioned the source version, merged.
    [source] = shared.sources
    assert source.version_source == "facet"
    assert source.facets["censusExtract"] == {"sha256": "aa11", "size": 1234}
    assert source.facets["receipt"] == {"school": "school-a"}
    assert source.facets["version"]["datasetVersion"] == "aa11"

    graph = shared.graph
    ids = {node["id"]: node for node in graph["nodes"]}
    chain = [
        "dataset:file:/landing/school-a.xml#aa11",
        "dataset:file:file:///srv/archive/aa/aa11#aa11",
        "dataset:censustrace:extracts#extract-1",
        "dataset:warehouse:pupils#pupils-v1",
        "dataset:sftp:health/pupils.csv#share-1",
    ]
    assert [ids[node]["type"] for node in chain] == ["dataset_version"] * 5
    runs_in_graph = [node for node in graph["nodes"] if node["type"] == "run"]
    assert len(runs_in_graph) == 4
    assert {node["state"] for node in runs_in_graph} == {"COMPLETE"}
    edges = {(edge["from"], edge["to"]) for edge in graph["edges"]}
    assert len(edges) == 8
    for upstream, downstream in itertools.pairwise(chain):
        [run] = [e_to for e_from, e_to in edges if e_from == upstream]
        assert (run, downstream) in edges
        assert run.startswith("run:")
    assert shared.to_dict()["sources"][0]["id"] == chain[0]


def test_an_input_without_a_version_is_an_honest_dead_end(engine: Engine) -> None:
    store_event(
        engine,
        run_event(inputs=[dataset("file", "/unversioned.csv")], outputs=[dataset("db", "t", version="1")]),
    )
    [source] = trace_upstream(engine, "db", "t").sources
    assert (source.name, source.version_source) == ("/unversioned.csv", "derived")


def test_a_run_without_inputs_makes_its_output_a_source(engine: Engine) -> None:
    store_event(
        engine,
        run_event(job=(NS, "generator"), outputs=[dataset("file", "/landing/gen.xml", version="cc33")]),
    )
    store_event(
        engine,
        run_event(
            inputs=[dataset("file", "/landing/gen.xml", version="cc33")],
            outputs=[dataset("db", "t", version="1")],
        ),
    )
    assert source_keys(trace_upstream(engine, "db", "t")) == [("file", "/landing/gen.xml", "cc33")]


def test_cycles_end(engine: Engine) -> None:
    store_event(
        engine,
        run_event(
            job=(NS, "a"), inputs=[dataset("db", "x", version="1")], outputs=[dataset("db", "y", version="1")]
        ),
    )
    store_event(
        engine,
        run_event(
            job=(NS, "b"), inputs=[dataset("db", "y", version="1")], outputs=[dataset("db", "x", version="1")]
        ),
    )
    result = trace_upstream(engine, "db", "x", "1")
    assert result.sources == []
    assert len([n for n in result.graph["nodes"] if n["type"] == "run"]) == 2


def test_unknown_datasets_and_versions(engine: Engine) -> None:
    store_event(engine, run_event(outputs=[dataset("db", "t", version="1")]))
    with pytest.raises(LineageNotFound, match="no dataset db:nope"):
        trace_upstream(engine, "db", "nope")
    with pytest.raises(LineageNotFound, match="no version 2 of dataset db:t"):
        trace_upstream(engine, "db", "t", "2")


def bulk_insert(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Plain executemany on SQLite; COPY on PostgreSQL, which is ten times faster there."""
    if conn.dialect.name != "postgresql":
        conn.execute(insert(table), rows)
        return
    columns = list(dict.fromkeys(key for row in rows for key in row))
    buffer = io.StringIO()
    csv.writer(buffer).writerows([["" if row.get(c) is None else row[c] for c in columns] for row in rows])
    buffer.seek(0)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.copy_expert(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)", buffer)


def load_big_store(engine: Engine, seed: int = 7) -> int:
    """10,000 runs over 105,000 dataset versions in five layers, inserted directly; returns the id of a
    last-layer version. Run k of a layer reads 2 versions of the layer before and writes 10."""
    rng = random.Random(seed)
    base = 10_000_000  # ids far from what the tables' sequences hand out
    at0 = at(0)
    with engine.begin() as conn:
        conn.execute(insert(namespaces), [{"id": base, "name": "bench", "created_at": at0}])
        conn.execute(
            insert(jobs),
            [
                {"id": base + k, "namespace_id": base, "name": f"layer{k}", "created_at": at0}
                for k in range(5)
            ],
        )
        conn.execute(
            insert(datasets),
            [{"id": base + i, "namespace_id": base, "name": f"d{i}", "created_at": at0} for i in range(1000)],
        )
        versions: list[dict[str, Any]] = []
        links: list[dict[str, Any]] = []
        run_rows: list[dict[str, Any]] = []
        layer_versions: list[list[int]] = [[]]
        for v in range(5000):
            vid = base + len(versions)
            versions.append(
                {
                    "id": vid,
                    "dataset_id": base + v % 200,
                    "version": f"s{v}",
                    "version_source": "facet",
                    "created_at": at0,
                }
            )
            layer_versions[0].append(vid)
        for k in range(1, 5):
            layer_versions.append([])
            for r in range(2500):
                run_id = base + len(run_rows)
                run_rows.append(
                    {
                        "id": run_id,
                        "run_uuid": new_run_id(),
                        "job_id": base + k,
                        "state": "COMPLETE",
                        "created_at": at0,
                        "updated_at": at0,
                    }
                )
                for source in rng.sample(layer_versions[k - 1], 2):
                    links.append(
                        {
                            "run_id": run_id,
                            "dataset_version_id": source,
                            "direction": "input",
                            "created_at": at0,
                        }
                    )
                for n in range(10):
                    vid = base + len(versions)
                    versions.append(
                        {
                            "id": vid,
                            "dataset_id": base + 200 * k + (r + n) % 200,
                            "version": f"k{k}r{r}n{n}",
                            "version_source": "facet",
                            "created_by_run_id": run_id,
                            "created_at": at0,
                            "produced_at": at0,
                        }
                    )
                    links.append(
                        {
                            "run_id": run_id,
                            "dataset_version_id": vid,
                            "direction": "output",
                            "created_at": at0,
                        }
                    )
                    layer_versions[k].append(vid)
        bulk_insert(conn, runs, run_rows)
        bulk_insert(conn, dataset_versions, versions)
        bulk_insert(conn, run_dataset_versions, links)
    return layer_versions[4][0]


def test_trace_is_fast_on_a_big_store(engine: Engine) -> None:
    last = load_big_store(engine)
    statements: list[str] = []

    def count_statement(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count_statement)
    try:
        started = time.perf_counter()
        result = trace_upstream(engine, "bench", f"d{800 + 0}", "k4r0n0")
        elapsed = time.perf_counter() - started
    finally:
        event.remove(engine, "before_cursor_execute", count_statement)
    assert last  # the version traced is the first one of the last layer
    run_nodes = [n for n in result.graph["nodes"] if n["type"] == "run"]
    assert 4 <= len(run_nodes) <= 15
    assert 1 <= len(result.sources) <= 16
    assert all(source.version.startswith("s") for source in result.sources)
    assert len(statements) <= 16, statements  # two queries per level, then a few batched lookups
    print(f"trace over 10,000 runs and 105,000 versions: {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5, f"trace took {elapsed:.3f}s"
