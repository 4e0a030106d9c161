"""The lineage store on SQLite and PostgreSQL: migrations, dedupe, raw round trip, merging, versions."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from openlineage.client.serde import Serde
from sqlalchemy import Engine, func, select

from censustrace.errors import CensustraceError
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.store import (
    LineageConflict,
    LineageEventInvalid,
    LineageEventMalformed,
    export_raw_events,
    parse_event,
    store_event,
    store_events,
    upgrade,
    write_transaction,
)
from censustrace.lineage.store import writer as ingest
from censustrace.lineage.store.db import VERSION_TABLE, current_revision
from censustrace.lineage.store.queries import get_run, get_run_facets
from censustrace.lineage.store.tables import (
    column_lineage,
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    jobs,
    metadata,
    namespaces,
    raw_events,
    run_dataset_versions,
    runs,
)
from tests.plugins.helpers.lineage_events import (
    InputField,
    at,
    column_lineage_facet,
    dataset,
    dataset_event,
    facet,
    job_event,
    new_run_id,
    parent_facet,
    run_event,
)


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def read(engine: Engine, query: Any, *args: Any) -> Any:
    with engine.connect() as conn:
        return query(conn, *args)


def run_row(engine: Engine, run_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(runs).where(runs.c.run_uuid == run_id)).one()


def versions_of(engine: Engine, name: str) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(dataset_versions.c.version, dataset_versions.c.version_source)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .where(datasets.c.name == name)
            .order_by(dataset_versions.c.id)
        ).all()
    return [(version, source) for version, source in rows]


# Schema -----------------------------------------------------------------------------------------------
def test_migrations_match_the_tables_and_rerun_cleanly(db_url: str, engine: Engine) -> None:
    upgrade(db_url)  # a second upgrade is a no-op
    assert current_revision(engine) == "0007"
    # Every table of the database against the lineage store's metadata (with the audit trail's access log):
    # a fresh lineage store has none of the viewer's tables (they have their own chain, tests/viewer).
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"version_table": VERSION_TABLE, "compare_type": True}
        )
        assert compare_metadata(context, metadata) == []


# Storing, dedupe, raw text ----------------------------------------------------------------------------
def test_the_same_event_is_stored_once(engine: Engine) -> None:
    event = run_event("START", inputs=[dataset("file", "/a.xml", version="1")])
    first = store_event(engine, json.dumps(event))
    again = store_event(engine, json.dumps(event, indent=2, sort_keys=True))  # other text, same JSON
    assert (first.stored, first.duplicate, first.kind) == (True, False, "run")
    assert (again.stored, again.duplicate) == (False, True)
    assert count(engine, raw_events) == 1
    assert count(engine, run_dataset_versions) == 1


def test_raw_events_come_back_byte_for_byte(engine: Engine) -> None:
    texts = [
        '{"eventTime":"2026-11-28T10:00:00.123456789Z","producer":"https://p","run":{"runId":"%s"},'
        '"job":{"namespace":"écoles","name":"recensement ☃"},"eventType":"START", "zz": 1.50}'.replace(
            "%s", new_run_id()
        ),
        json.dumps(dataset_event(dataset("file", "/données/élèves.xml", version="v1")), ensure_ascii=True),
        json.dumps(job_event(("ns", "job"), outputs=[dataset("db", "t")]), separators=(", ", " : ")),
    ]
    for text in texts:
        store_event(engine, text.encode("utf-8"))
    assert list(export_raw_events(engine, batch_size=2)) == texts


def test_events_in_one_batch_are_all_or_nothing(engine: Engine) -> None:
    good = run_event("START")
    with pytest.raises(LineageEventInvalid) as caught:
        store_events(engine, [good, run_event("BOGUS")])
    assert caught.value.problems[0].startswith("$[1].eventType:")
    assert count(engine, raw_events) == 0
    results = store_events(engine, [good, good, run_event("COMPLETE", run_id=good["run"]["runId"])])
    assert [r.duplicate for r in results] == [False, True, False]
    assert count(engine, raw_events) == 2


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"{not json", "$: malformed JSON"),
        (b"\xff\xfe{}", "$: body is not UTF-8"),
        ('{"eventTime": NaN}', "$: malformed JSON: NaN is not a JSON number"),
        ("[" * 100_000 + "]" * 100_000, "$: malformed JSON"),
    ],
)
def test_malformed_bodies_are_rejected(engine: Engine, raw: bytes | str, expected: str) -> None:
    with pytest.raises(LineageEventMalformed) as caught:
        store_event(engine, raw)
    assert caught.value.problems[0].startswith(expected)
    assert caught.value.code == "CT-LINEAGE-MALFORMED"


def test_invalid_events_store_nothing_and_say_where(engine: Engine) -> None:
    event = run_event("START", outputs=[dataset("db", "t")])
    event["run"]["runId"] = "12345"
    event["outputs"][0]["facets"]["schema"] = "not an object"
    event["job"]["name"] = ""
    with pytest.raises(LineageEventInvalid) as caught:
        store_event(engine, event)
    assert isinstance(caught.value, CensustraceError)
    assert caught.value.code == "CT-LINEAGE-INVALID"
    assert "$.run.runId: not a valid uuid" in caught.value.problems
    assert "$.outputs[0].facets.schema: expected object, got string" in caught.value.problems
    assert count(engine, raw_events) == 0


def test_names_the_database_cannot_index_are_rejected(engine: Engine) -> None:
    for bad, message in (("x" * 2000, "longer than 1024 bytes"), ("a\x00b", "NUL")):
        with pytest.raises(LineageEventInvalid, match=message):
            store_event(engine, run_event(outputs=[dataset("db", bad)]))
    with pytest.raises(LineageEventInvalid, match="unpaired UTF-16 surrogate"):
        store_event(
            engine,
            '{"eventTime":"2026-11-28T10:00:00Z","producer":"https://p","run":{"runId":"%s"},'
            '"job":{"namespace":"n","name":"j"},"x":"\\ud800"}'.replace("%s", new_run_id()),
        )


def test_a_run_id_reused_for_another_job_stores_nothing(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(engine, run_event("START", run_id=run_id, job=("ns", "first")))
    with pytest.raises(LineageConflict, match=run_id):
        store_event(
            engine, run_event("COMPLETE", run_id=run_id, job=("ns", "second"), outputs=[dataset("db", "t")])
        )
    assert count(engine, raw_events) == 1
    with engine.connect() as conn:
        assert conn.execute(select(jobs.c.name)).scalars().all() == ["first"]
    assert count(engine, datasets) == 0


# Runs: out-of-order merge -------------------------------------------------------------------------------
def test_run_state_merges_whatever_the_arrival_order(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(engine, run_event("COMPLETE", run_id=run_id, event_time=at(60, nanos=5)))
    store_event(engine, run_event("RUNNING", run_id=run_id, event_time=at(30)))
    store_event(engine, run_event("START", run_id=run_id, event_time=at(0, nanos=123456789)))
    store_event(engine, run_event("OTHER", run_id=run_id, event_time=at(90)))
    row = run_row(engine, run_id)
    assert row.state == "COMPLETE"
    assert row.started_at == "2026-11-28T10:00:00.123456789Z"
    assert row.ended_at == "2026-11-28T10:01:00.000000005Z"
    assert (row.created_at, row.updated_at) == (at(0, nanos=123456789), at(90))


def test_of_two_terminal_states_the_later_event_wins(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(engine, run_event("FAIL", run_id=run_id, event_time=at(20)))
    store_event(engine, run_event("COMPLETE", run_id=run_id, event_time=at(10)))
    assert run_row(engine, run_id).state == "FAIL"


def test_parent_run_and_nominal_time_are_recorded(engine: Engine) -> None:
    parent_id, run_id = new_run_id(), new_run_id()
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            job=("airflow", "census_ingest.archive"),
            run_facets={
                "parent": parent_facet(parent_id, "airflow", "census_ingest"),
                "nominalTime": facet(None, nominalStartTime="2026-11-28T00:00:00+00:00"),
            },
        ),
    )
    row = run_row(engine, run_id)
    assert row.parent_run_uuid == parent_id
    assert row.nominal_start_time == "2026-11-28T00:00:00.000000000Z"
    with engine.connect() as conn:
        parent = jobs.alias()
        pair = conn.execute(
            select(jobs.c.name, parent.c.name).join(parent, parent.c.id == jobs.c.parent_job_id)
        ).one()
    assert tuple(pair) == ("census_ingest.archive", "census_ingest")


def test_facets_merge_in_event_time_order(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(
        engine,
        run_event("COMPLETE", run_id=run_id, event_time=at(10), run_facets={"stage": facet(None, n=2)}),
    )
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            event_time=at(0),
            run_facets={"stage": facet(None, n=1), "gone": facet(None)},
            job_facets={"owner": facet(None, team="data")},
        ),
    )
    store_event(
        engine, run_event("OTHER", run_id=run_id, event_time=at(20), run_facets={"gone": {"_deleted": True}})
    )
    found = read(engine, get_run_facets, run_id)
    assert found["runFacets"] == {"stage": {"n": 2}}
    assert found["jobFacets"] == {"owner": {"team": "data"}}


# Dataset versions -----------------------------------------------------------------------------------
def test_versions_come_from_the_version_facet_or_are_derived(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            inputs=[dataset("file", "/a.xml", version="sha256:aa")],
            outputs=[dataset("db", "pupils")],
        ),
    )
    assert versions_of(engine, "/a.xml") == [("sha256:aa", "facet")]
    [(derived, source)] = versions_of(engine, "pupils")
    assert source == "derived"
    # The same run's later event without a version reuses the derived one...
    store_event(
        engine, run_event("RUNNING", run_id=run_id, event_time=at(1), outputs=[dataset("db", "pupils")])
    )
    assert versions_of(engine, "pupils") == [(derived, "derived")]
    # ...and one that names the version replaces it, keeping what was attached to it.
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(2),
            outputs=[dataset("db", "pupils", version="extract-7")],
        ),
    )
    assert versions_of(engine, "pupils") == [("extract-7", "facet")]
    run = read(engine, get_run, run_id)
    assert [v["datasetVersionId"]["version"] for v in run["outputDatasetVersions"]] == ["extract-7"]
    with engine.connect() as conn:
        version = conn.execute(
            select(dataset_versions).where(dataset_versions.c.version == "extract-7")
        ).one()
    assert version.produced_at == at(0)  # from the START event, merged in


def test_a_named_version_arriving_first_is_not_replaced_by_a_derived_one(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(
        engine,
        run_event("COMPLETE", run_id=run_id, event_time=at(5), outputs=[dataset("db", "t", version="v9")]),
    )
    store_event(engine, run_event("START", run_id=run_id, event_time=at(0), outputs=[dataset("db", "t")]))
    assert versions_of(engine, "t") == [("v9", "facet")]
    assert count(engine, run_dataset_versions) == 1


def test_column_lineage_links_exact_input_versions(engine: Engine) -> None:
    run_id = new_run_id()
    lineage = column_lineage_facet(
        {"pupil_key": [InputField("file", "/a.xml", "UPN", subtype="HASH", masking=True)]}
    )
    # Column lineage first (COMPLETE), the input only in the later-arriving START.
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(5),
            outputs=[dataset("db", "pupils", version="v1", facets={"columnLineage": lineage})],
        ),
    )
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            event_time=at(0),
            inputs=[dataset("file", "/a.xml", version="sha256:aa")],
            outputs=[dataset("db", "pupils", version="v1", facets={"columnLineage": lineage})],
        ),
    )
    with engine.connect() as conn:
        rows = conn.execute(
            select(column_lineage, dataset_versions.c.version).join(
                dataset_versions, dataset_versions.c.id == column_lineage.c.input_dataset_version_id
            )
        ).all()
    assert len(rows) == 1  # reported twice, stored once
    row = rows[0]
    assert (row.output_field, row.input_name, row.input_field, row.version) == (
        "pupil_key",
        "/a.xml",
        "UPN",
        "sha256:aa",
    )
    assert (row.transformation_type, row.transformation_subtype, row.masking) == ("DIRECT", "HASH", True)


def test_dataset_and_job_events_are_indexed(engine: Engine) -> None:
    store_event(
        engine, dataset_event(dataset("file", "/a.xml", version="1", facets={"owner": facet(None, by="LA")}))
    )
    store_event(engine, dataset_event(dataset("file", "/b.xml", facets={"owner": facet(None, by="school")})))
    store_event(
        engine,
        job_event(("ns", "share"), inputs=[dataset("db", "pupils")], outputs=[dataset("sftp", "out.csv")]),
    )
    assert versions_of(engine, "/a.xml") == [("1", "facet")]
    with engine.connect() as conn:
        owners = conn.execute(select(facets.c.owner, facets.c.name).order_by(facets.c.id)).all()
        links = (
            conn.execute(select(job_datasets.c.direction).order_by(job_datasets.c.direction)).scalars().all()
        )
    assert [tuple(o) for o in owners] == [
        ("dataset_version", "owner"),
        ("dataset_version", "version"),
        ("dataset", "owner"),
    ]
    assert links == ["input", "output"]


def test_unicode_names_and_nanosecond_times(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            job=("écoles", "集計"),
            event_time="2026-11-28T10:00:00.123456789Z",
            outputs=[dataset("fichiers", "/données/👩‍🎓.csv", version="v")],
        ),
    )
    run = read(engine, get_run, run_id)
    assert run["job"] == {"namespace": "écoles", "name": "集計"}
    assert run["startedAt"] == "2026-11-28T10:00:00.123456789Z"
    assert run["outputDatasetVersions"][0]["datasetVersionId"]["name"] == "/données/👩‍🎓.csv"


def test_concurrent_writers_share_namespaces_and_datasets(engine: Engine) -> None:
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(5):
                store_event(
                    engine,
                    run_event(
                        "COMPLETE",
                        job=("ns", f"job{worker}"),
                        inputs=[
                            dataset("file", "/shared.xml", version="1"),
                            dataset("file", f"/own{worker}", version="1"),
                        ],
                        outputs=[dataset("db", "shared", version=f"{worker}.{i}")],
                    ),
                )
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert count(engine, raw_events) == 30
    assert len(versions_of(engine, "shared")) == 30


# Our own facets are checked too ---------------------------------------------------------------------------
def census_extract(sha256: str) -> dict[str, Any]:
    facet_ = CensusExtractDatasetFacet(
        sha256=sha256, size=1234, originalName="SC_330_4000_AUT_2026.xml", receivedAt=at(-60)
    )
    return dict(Serde.to_dict(facet_))


def test_our_own_facets_are_checked_against_their_schemas(engine: Engine) -> None:
    sha = "ab" * 32
    good = run_event(
        inputs=[dataset("file", "/a.xml", version=sha, facets={"censusExtract": census_extract(sha)})]
    )
    assert store_event(engine, good).stored
    bad = run_event(
        inputs=[dataset("file", "/b.xml", version="x", facets={"censusExtract": census_extract("x")})]
    )
    with pytest.raises(LineageEventInvalid) as caught:
        store_event(engine, bad)
    assert [p.split(":")[0] for p in caught.value.problems] == ["$.inputs[0].facets.censusExtract.sha256"]
    assert count(engine, raw_events) == 1


# Version bookkeeping: the paths the write path takes short cuts on ------------------------------------------
def version_row(engine: Engine, name: str, version: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(
            select(dataset_versions, runs.c.run_uuid)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .outerjoin(runs, runs.c.id == dataset_versions.c.created_by_run_id)
            .where(datasets.c.name == name, dataset_versions.c.version == version)
        ).one()


def test_replacing_a_derived_version_moves_its_facets_and_column_lineage(engine: Engine) -> None:
    run_id = new_run_id()
    source = dataset("file", "/a.xml", version="sha256:aa")
    lineage = column_lineage_facet({"upn": [InputField("file", "/a.xml", "UPN")]})
    started = dataset("db", "pupils", facets={"columnLineage": lineage, "owner": facet(None, by="LA")})
    store_event(
        engine, run_event("START", run_id=run_id, event_time=at(0), inputs=[source], outputs=[started])
    )
    [(derived, source_kind)] = versions_of(engine, "pupils")
    assert source_kind == "derived"
    written = dataset("db", "pupils", version="v1", facets={"columnLineage": lineage})
    store_event(
        engine, run_event("COMPLETE", run_id=run_id, event_time=at(9), inputs=[source], outputs=[written])
    )
    assert versions_of(engine, "pupils") == [("v1", "facet")]
    version = version_row(engine, "pupils", "v1")
    assert (version.created_at, version.produced_at, version.run_uuid) == (at(0), at(0), run_id)
    with engine.connect() as conn:
        attached = conn.execute(
            select(facets.c.name, facets.c.event_time)
            .where(facets.c.dataset_version_id == version.id)
            .order_by(facets.c.id)
        ).all()
        rows = conn.execute(select(column_lineage)).all()
    assert [tuple(row) for row in attached] == [
        ("columnLineage", at(0)),
        ("owner", at(0)),
        ("columnLineage", at(9)),
        ("version", at(9)),
    ]
    assert len(rows) == 1  # reported by both events, kept once, on the named version
    assert rows[0].output_dataset_version_id == version.id
    assert rows[0].input_dataset_version_id == version_row(engine, "/a.xml", "sha256:aa").id
    run = read(engine, get_run, run_id)
    assert [v["datasetVersionId"]["version"] for v in run["outputDatasetVersions"]] == ["v1"]
    assert derived not in {v for v, _ in versions_of(engine, "pupils")}


def test_a_dataset_listed_twice_in_one_event_gets_one_version(engine: Engine) -> None:
    run_id = new_run_id()
    lineage = column_lineage_facet({"upn": [InputField("file", "/a.xml", "UPN")]})
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            inputs=[dataset("file", "/a.xml", version="1")],
            outputs=[
                dataset("db", "t", facets={"columnLineage": lineage}),
                dataset("db", "t", version="v1"),
                dataset("db", "t"),
            ],
        ),
    )
    assert versions_of(engine, "t") == [("v1", "facet")]
    with engine.connect() as conn:
        rows = conn.execute(select(column_lineage.c.output_dataset_version_id)).scalars().all()
    assert rows == [version_row(engine, "t", "v1").id]
    assert count(engine, run_dataset_versions) == 2


def test_a_whole_run_in_one_batch(engine: Engine) -> None:
    run_id, other = new_run_id(), new_run_id()
    source = dataset("file", "/a.xml", version="1")
    results = store_events(
        engine,
        [
            run_event(
                "COMPLETE",
                run_id=run_id,
                event_time=at(5),
                inputs=[source],
                outputs=[dataset("db", "t", version="v")],
            ),
            run_event(
                "START", run_id=run_id, event_time=at(0), inputs=[source], outputs=[dataset("db", "t")]
            ),
            run_event("START", run_id=other, event_time=at(1), inputs=[source], outputs=[dataset("db", "u")]),
            run_event("COMPLETE", run_id=other, event_time=at(2), outputs=[dataset("db", "u", version="w")]),
        ],
    )
    assert [r.stored for r in results] == [True] * 4
    assert versions_of(engine, "t") == [("v", "facet")]
    assert versions_of(engine, "u") == [("w", "facet")]
    assert run_row(engine, run_id).state == "COMPLETE"
    assert run_row(engine, run_id).started_at == at(0)
    assert version_row(engine, "t", "v").produced_at == at(0)
    assert version_row(engine, "u", "w").produced_at == at(1)
    assert count(engine, datasets) == 3
    assert count(engine, job_datasets) == 3
    assert count(engine, run_dataset_versions) == 4


def test_late_events_move_first_seen_times_earlier(engine: Engine) -> None:
    run_id, other = new_run_id(), new_run_id()
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(10),
            job=("late", "job"),
            run_facets={"parent": parent_facet(new_run_id(), "late", "dag")},
            inputs=[dataset("late", "in", version="1")],
            outputs=[dataset("late", "out", version="2")],
        ),
    )
    # Another run wrote the same version earlier: it is the one that produced it.
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=other,
            event_time=at(3),
            job=("late", "other"),
            outputs=[dataset("late", "out", version="2")],
        ),
    )
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            event_time=at(1),
            job=("late", "job"),
            inputs=[dataset("late", "in", version="1")],
        ),
    )
    with engine.connect() as conn:
        assert conn.execute(
            select(namespaces.c.created_at).where(namespaces.c.name == "late")
        ).scalar_one() == at(1)
        assert set(conn.execute(select(datasets.c.name, datasets.c.created_at)).all()) == {
            ("in", at(1)),
            ("out", at(3)),
        }
        assert set(conn.execute(select(jobs.c.name, jobs.c.created_at)).all()) == {
            ("job", at(1)),
            ("dag", at(10)),
            ("other", at(3)),
        }
    assert version_row(engine, "in", "1").created_at == at(1)
    produced = version_row(engine, "out", "2")
    assert (produced.created_at, produced.produced_at, produced.run_uuid) == (at(3), at(3), other)


def test_rows_another_writer_created_first_are_used(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    store_event(
        engine,
        run_event(
            job=("ns", "job"),
            event_time=at(5),
            inputs=[dataset("file", "/a", version="1")],
            outputs=[dataset("db", "t")],
        ),
    )
    # As if a concurrent writer had committed them after this writer looked: the INSERTs find them.
    monkeypatch.setattr(ingest._Writer, "look_up", lambda *_: None)
    store_event(
        engine,
        run_event(
            job=("ns", "job"),
            event_time=at(1),
            run_facets={"parent": parent_facet(new_run_id(), "ns", "dag")},
            inputs=[dataset("file", "/a", version="1")],
            outputs=[dataset("db", "t", version="2")],
        ),
    )
    assert (count(engine, namespaces), count(engine, datasets), count(engine, jobs)) == (3, 2, 2)
    with engine.connect() as conn:
        assert set(conn.execute(select(datasets.c.name, datasets.c.created_at)).all()) == {
            ("/a", at(1)),
            ("t", at(1)),
        }
        child, parent = conn.execute(
            select(jobs.c.id, jobs.c.parent_job_id).order_by(jobs.c.name.desc())
        ).all()
    assert child.parent_job_id == parent.id
    assert version_row(engine, "/a", "1").created_at == at(1)


def test_a_run_a_concurrent_writer_creates_first_is_merged(engine: Engine) -> None:
    run_id = new_run_id()
    store_event(engine, run_event(run_id=new_run_id(), job=("ns", "job"), outputs=[dataset("db", "t")]))
    first = parse_event(
        run_event("START", run_id=run_id, job=("ns", "job"), event_time=at(0), outputs=[dataset("db", "t")])
    )
    second = run_event(
        "COMPLETE",
        run_id=run_id,
        job=("ns", "job"),
        event_time=at(9),
        outputs=[dataset("db", "t", version="v")],
    )
    errors: list[BaseException] = []

    def write_second() -> None:
        try:
            store_event(engine, second)
        except BaseException as exc:  # reported below
            errors.append(exc)

    with write_transaction(engine) as conn:
        ingest._store(conn, first, ingest._Seen())
        # PostgreSQL: the second writer finds no run, then waits on this one's INSERT of it. SQLite: it waits
        # for the write lock.
        thread = threading.Thread(target=write_second)
        thread.start()
        time.sleep(0.3)
    thread.join(timeout=30)
    assert errors == []
    row = run_row(engine, run_id)
    assert (row.state, row.started_at, row.ended_at) == ("COMPLETE", at(0), at(9))
    assert versions_of(engine, "t")[-1] == ("v", "facet")
    assert version_row(engine, "t", "v").produced_at == at(0)


def test_concurrent_events_of_one_run_merge(engine: Engine) -> None:
    run_id = new_run_id()
    source = dataset("file", "/a.xml", version="1")
    events = [
        run_event("START", run_id=run_id, event_time=at(0), inputs=[source], outputs=[dataset("db", "t")]),
        run_event("RUNNING", run_id=run_id, event_time=at(1), outputs=[dataset("db", "t")]),
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(2),
            inputs=[source],
            outputs=[dataset("db", "t", version="v")],
        ),
        run_event("OTHER", run_id=run_id, event_time=at(3), outputs=[dataset("db", "t")]),
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(events))

    def write(event: dict[str, Any]) -> None:
        try:
            barrier.wait(timeout=10)
            store_event(engine, event)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    row = run_row(engine, run_id)
    assert (row.state, row.started_at, row.ended_at, row.updated_at) == ("COMPLETE", at(0), at(2), at(3))
    assert versions_of(engine, "t") == [("v", "facet")]
    assert version_row(engine, "t", "v").produced_at == at(0)
    assert count(engine, run_dataset_versions) == 2


def test_run_facets_arriving_with_a_later_event_are_merged(engine: Engine) -> None:
    run_id, parent_id = new_run_id(), new_run_id()
    store_event(engine, run_event("START", run_id=run_id, event_time=at(0)))
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(5),
            run_facets={
                "parent": parent_facet(parent_id, "censustrace", "dag"),
                "nominalTime": facet(None, nominalStartTime=at(-60), nominalEndTime=at(-30)),
            },
        ),
    )
    row = run_row(engine, run_id)
    assert (row.parent_run_uuid, row.nominal_start_time, row.nominal_end_time) == (
        parent_id,
        at(-60),
        at(-30),
    )
    assert (row.state, row.started_at, row.ended_at) == ("COMPLETE", at(0), at(5))


def test_a_derived_input_version_named_later_keeps_its_column_lineage(engine: Engine) -> None:
    run_id = new_run_id()
    lineage = column_lineage_facet({"upn": [InputField("file", "/a.xml", "UPN")]})
    output = dataset("db", "t", version="v", facets={"columnLineage": lineage})
    store_event(
        engine, run_event("START", run_id=run_id, inputs=[dataset("file", "/a.xml")], outputs=[output])
    )
    store_event(
        engine,
        run_event(
            "COMPLETE", run_id=run_id, event_time=at(5), inputs=[dataset("file", "/a.xml", version="1")]
        ),
    )
    assert versions_of(engine, "/a.xml") == [("1", "facet")]
    with engine.connect() as conn:
        [row] = conn.execute(select(column_lineage)).all()
    assert row.input_dataset_version_id == version_row(engine, "/a.xml", "1").id


def test_an_event_naming_thousands_of_datasets(engine: Engine) -> None:
    known = [dataset(f"ns{i % 3}", f"t{i}", version="1") for i in range(0, 1200, 2)]
    store_event(engine, job_event(("ns", "seed"), inputs=known))
    inputs = [dataset(f"ns{i % 3}", f"t{i}", version="1") for i in range(1200)]
    outputs = [dataset(f"out{i % 2}", f"t{i}") for i in range(700)]
    run_id = new_run_id()
    store_event(engine, run_event("START", run_id=run_id, inputs=inputs, outputs=outputs))
    assert count(engine, datasets) == 1900
    assert count(engine, dataset_versions) == 1900
    assert count(engine, run_dataset_versions) == 1900
    assert len(read(engine, get_run, run_id)["inputDatasetVersions"]) == 1200


def test_an_input_named_twice_keeps_the_column_lineage_waiting_for_it(engine: Engine) -> None:
    run_id = new_run_id()
    lineage = column_lineage_facet({"upn": [InputField("file", "/a.xml", "UPN")]})
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(5),
            outputs=[dataset("db", "t", version="v", facets={"columnLineage": lineage})],
        ),
    )
    # The first mention derives a version and fills the waiting lineage in; the second names the version.
    store_event(
        engine,
        run_event(
            "START",
            run_id=run_id,
            event_time=at(0),
            inputs=[dataset("file", "/a.xml"), dataset("file", "/a.xml", version="1")],
        ),
    )
    assert versions_of(engine, "/a.xml") == [("1", "facet")]
    with engine.connect() as conn:
        [row] = conn.execute(select(column_lineage)).all()
    assert row.input_dataset_version_id == version_row(engine, "/a.xml", "1").id


def test_column_lineage_lands_on_its_own_output_when_a_replaced_id_is_reused(engine: Engine) -> None:
    # SQLite reuses the largest rowid once it is deleted: the derived input version replaced below is the
    # newest row, so the output version created after it gets its id.
    store_event(engine, dataset_event(dataset("n1", "a", version="v2")))
    run_id = new_run_id()
    store_event(engine, run_event("START", run_id=run_id, event_time=at(0), inputs=[dataset("n1", "a")]))
    lineage = column_lineage_facet({"o": [InputField("n1", "a", "u")]})
    store_event(
        engine,
        run_event(
            "COMPLETE",
            run_id=run_id,
            event_time=at(5),
            inputs=[dataset("n1", "a", version="v2")],
            outputs=[dataset("n2", "b", version="v3", facets={"columnLineage": lineage})],
        ),
    )
    with engine.connect() as conn:
        [row] = conn.execute(select(column_lineage)).all()
    assert row.output_dataset_version_id == version_row(engine, "b", "v3").id
    assert row.input_dataset_version_id == version_row(engine, "a", "v2").id
