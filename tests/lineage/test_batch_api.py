"""``POST /api/v1/lineage/batch`` and the group-commit intake, over a real uvicorn on SQLite and
PostgreSQL: one outcome per event, every stored event's raw text exactly as it sat in the array, and
concurrent single-event requests all stored (no deadlock, nothing lost)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from censustrace.lineage.batch import BatchNotArray, split_array
from censustrace.lineage.spec import EventValidator
from censustrace.lineage.store.parse import _lenient_validator
from censustrace.lineage.store.tables import raw_events
from tests.plugins.helpers.lineage_events import dataset, dataset_event, new_run_id, run_event, unique

BATCH = "/api/v1/lineage/batch"


@pytest.fixture
def api(api_url: str, engine: Engine) -> Any:
    with httpx.Client(base_url=api_url, timeout=60) as client:
        yield client


def bodies(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(select(raw_events.c.body).order_by(raw_events.c.id)))


def test_batch_answers_each_event_and_keeps_raw_text(api: httpx.Client, engine: Engine) -> None:
    good = run_event("START", job=("censustrace", unique("job")), outputs=[dataset("db", unique("t"))])
    other = dataset_event(dataset("db", unique("d")))
    bad_uuid = run_event("START")
    bad_uuid["run"]["runId"] = "not-a-uuid"
    # Odd spacing inside an element: the store keeps it exactly, not a re-serialisation.
    good_text = json.dumps(good, indent=1)
    body = f'[ {good_text} ,{json.dumps(bad_uuid)},\n{json.dumps(other)}, {good_text}, {{"eventTime": 1}} ]'
    response = api.post(BATCH, content=body.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 200
    report = response.json()
    statuses = [r["status"] for r in report["results"]]
    assert statuses == [201, 422, 201, 200, 422]
    assert [r["index"] for r in report["results"]] == [0, 1, 2, 3, 4]
    assert report["results"][1]["code"] == "CT-LINEAGE-INVALID"
    assert any("runId" in p for p in report["results"][1]["problems"])
    assert (report["received"], report["stored"], report["duplicates"], report["rejected"]) == (5, 2, 1, 2)
    assert bodies(engine) == [good_text, json.dumps(other)]


@pytest.mark.parametrize(
    "body",
    [b'{"eventTime": "2026-01-01T00:00:00Z"}', b"", b"[1, 2", b"[1] [2]", b"\xff[]", b'"[]"'],
)
def test_batch_body_not_an_array_is_400(api: httpx.Client, engine: Engine, body: bytes) -> None:
    response = api.post(BATCH, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["code"] == "CT-LINEAGE-BATCH"
    assert bodies(engine) == []


def test_empty_batch_is_fine(api: httpx.Client) -> None:
    response = api.post(BATCH, content=b" [ ] ")
    assert response.status_code == 200
    assert response.json()["results"] == []


def test_batch_conflict_costs_only_that_event(api: httpx.Client, engine: Engine) -> None:
    run_id = new_run_id()
    first = run_event("START", run_id=run_id, job=("censustrace", unique("a")))
    reused = run_event("COMPLETE", run_id=run_id, job=("censustrace", unique("b")))  # same run, other job
    fine = run_event("START", job=("censustrace", unique("c")))
    response = api.post(BATCH, content=json.dumps([first, reused, fine]).encode())
    statuses = [r["status"] for r in response.json()["results"]]
    assert statuses == [201, 409, 201]
    assert response.json()["results"][1]["code"] == "CT-LINEAGE-CONFLICT"
    assert len(bodies(engine)) == 2


def test_concurrent_single_posts_are_all_stored(api_url: str, engine: Engine) -> None:
    events = [
        json.dumps(
            run_event(state, run_id=run_id, job=("censustrace", f"job{i}"), outputs=[dataset("db", f"t{i}")])
        )
        for i in range(40)
        for run_id in [new_run_id()]
        for state in ("START", "COMPLETE")
    ]

    def post(text: str) -> int:
        with httpx.Client(base_url=api_url, timeout=60) as client:
            return client.post("/api/v1/lineage", content=text.encode()).status_code

    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, events))
    assert codes == [201] * len(events)
    assert sorted(bodies(engine)) == sorted(events)


def test_split_array_slices_exact_texts() -> None:
    assert split_array(b' [ {"a": [1, {"b": "]"}]} ,\n{ } ] ') == ['{"a": [1, {"b": "]"}]}', "{ }"]
    with pytest.raises(BatchNotArray):
        split_array(b"[1,]")


def test_compiled_check_never_changes_the_verdict() -> None:
    """The same problems with and without the compiled fast path, for valid and broken events."""
    fast = _lenient_validator()
    assert isinstance(fast, EventValidator)
    slow = EventValidator(extra_schemas=None, lenient=True)
    slow._fast = None
    good = run_event("COMPLETE", outputs=[dataset("db", "t")])
    broken: list[dict[str, Any]] = []
    for path, value in [
        (("eventTime",), "yesterday"),
        (("run", "runId"), "x"),
        (("producer",), 7),
        (("eventType",), "DONE"),
        (("job", "name"), None),
        (("outputs",), "t"),
    ]:
        event = json.loads(json.dumps(good))
        target = event
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        broken.append(event)
    nominal = json.loads(json.dumps(good))
    nominal["run"]["facets"]["nominalTime"] = {
        "_producer": "https://example.org/p",
        "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet",
        "nominalStartTime": "not a time",
    }
    broken.append(nominal)
    assert fast.validate(good) == slow.validate(good) == []
    for event in broken:
        assert fast.validate(event) == slow.validate(event)
        assert fast.validate(event), event


@pytest.mark.postgres
def test_connections_cut_mid_run_fail_clearly_or_recover(new_postgres_database: Any) -> None:
    """pg_terminate_backend on this test's own database between group commits: no request hangs or
    gets an unexplained error; each event is either stored or refused with CT-LINEAGE-STORE, and sending
    the refused ones again stores them (nothing half-written: one transaction per group)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from censustrace.lineage.group_commit import GroupCommitter
    from censustrace.lineage.store.db import make_engine, upgrade
    from censustrace.lineage.store.ingest import LineageStoreUnavailable
    from censustrace.lineage.store.parse import parse_event
    from censustrace.lineage.store.writer import StoreResult

    url = new_postgres_database()
    upgrade(url)
    engine = make_engine(url)
    committer = GroupCommitter(engine)
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    database = make_url(url).database
    sent = [json.dumps(run_event("START", job=("censustrace", f"cut{i}"))) for i in range(6)]
    refused: list[str] = []
    try:
        for index, payload in enumerate(sent):
            if index % 2 == 1:  # cut every connection to our database, then go on
                with admin.connect() as conn:
                    conn.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": database},
                    )
            (outcome,) = committer.submit([parse_event(payload)])
            if isinstance(outcome, LineageStoreUnavailable):
                assert "could not be written" in outcome.message
                refused.append(payload)
            else:
                assert isinstance(outcome, StoreResult)
                assert outcome.stored
        for payload in refused:  # the rerun
            (outcome,) = committer.submit([parse_event(payload)])
            assert isinstance(outcome, StoreResult)
        assert sorted(export_raw_events_text(engine)) == sorted(sent)
    finally:
        admin.dispose()
        engine.dispose()


def export_raw_events_text(engine: Engine) -> list[str]:
    from censustrace.lineage.store import export_raw_events

    return list(export_raw_events(engine))
