"""The lineage store on SQLite and PostgreSQL: migrations, dedupe, raw round trip, merging, versions."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select

from censustrace.errors import CensustraceError
from censustrace.lineage.store import (
    LineageConflict,
    LineageEventInvalid,
    LineageEventMalformed,
    export_raw_events,
    store_event,
    store_events,
    upgrade,
)
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
    raw_events,
    run_dataset_versions,
    runs,
)

from .factories import (
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
    assert current_revision(engine) == "0001"
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
