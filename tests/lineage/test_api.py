"""The lineage HTTP API over a real uvicorn server, fed by the real OpenLineage client and by httpx."""

from __future__ import annotations

import gzip
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import (
    DatasetEvent,
    InputDataset,
    Job,
    JobEvent,
    OutputDataset,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import dataset_version_dataset, nominal_time_run, parent_run
from openlineage.client.transport.http import HttpCompression, HttpConfig, HttpTransport
from sqlalchemy import Engine, func, select

from censustrace.config import Settings
from censustrace.lineage.store import export_raw_events
from censustrace.lineage.store.tables import raw_events
from censustrace.viewer.lineage_api import DEFAULT_MAX_BODY_BYTES, create_app
from tests.plugins.helpers.lineage_events import PRODUCER, at, dataset, facet, new_run_id, run_event, unique

LINEAGE = "/api/v1/lineage"


@pytest.fixture
def api(api_url: str, engine: Engine) -> Iterator[httpx.Client]:
    """An httpx client on the API, over an empty store."""
    with httpx.Client(base_url=api_url, timeout=30) as client:
        yield client


def ol_client(api_url: str, *, gzip_body: bool = False) -> OpenLineageClient:
    config = HttpConfig(
        url=api_url,
        timeout=10,
        retry={"total": 0},
        compression=HttpCompression.GZIP if gzip_body else None,
    )
    return OpenLineageClient(transport=HttpTransport(config))


def stored(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(raw_events)).scalar_one())


# The OpenLineage client ------------------------------------------------------------------------------
def test_the_openlineage_client_can_post_every_event_kind(
    api_url: str, api: httpx.Client, engine: Engine
) -> None:
    run_id, parent_id = new_run_id(), new_run_id()
    client = ol_client(api_url)
    client.emit(
        RunEvent(
            eventType=RunState.START,
            eventTime=at(0, nanos=123456789),
            run=Run(
                runId=run_id,
                facets={
                    "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=at(0)),
                    "parent": parent_run.ParentRunFacet(
                        run=parent_run.Run(runId=parent_id),
                        job=parent_run.Job(namespace="airflow", name="census_ingest"),
                    ),
                },
            ),
            job=Job(namespace="airflow", name="census_ingest.archive"),
            inputs=[
                InputDataset(
                    "file",
                    "/landing/a.xml",
                    facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet("aa")},
                )
            ],
            outputs=[OutputDataset("file", "/archive/aa/aa")],
            producer=PRODUCER,
        )
    )
    client.emit(
        RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=at(1),
            run=Run(runId=run_id),
            job=Job(namespace="airflow", name="census_ingest.archive"),
            outputs=[
                OutputDataset(
                    "file",
                    "/archive/aa/aa",
                    facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet("aa")},
                )
            ],
            producer=PRODUCER,
        )
    )
    client.emit(
        DatasetEvent(eventTime=at(2), dataset=StaticDataset("file", "/landing/b.xml"), producer=PRODUCER)
    )
    client.emit(JobEvent(eventTime=at(3), job=Job(namespace="airflow", name="share"), producer=PRODUCER))
    ol_client(api_url, gzip_body=True).emit(
        RunEvent(
            eventType=RunState.OTHER,
            eventTime=at(4),
            run=Run(runId=run_id),
            job=Job(namespace="airflow", name="census_ingest.archive"),
            producer=PRODUCER,
        )
    )
    assert stored(engine) == 5

    run = api.get(f"/api/v1/jobs/runs/{run_id}").json()
    assert run["state"] == "COMPLETE"
    assert run["startedAt"] == "2026-11-28T10:00:00.123456789Z"
    assert run["endedAt"] == at(1)
    assert run["durationMs"] == 876
    assert run["parentRunId"] == parent_id
    assert run["nominalStartTime"] == at(0)
    assert run["job"] == {"namespace": "airflow", "name": "census_ingest.archive"}
    assert [v["datasetVersionId"] for v in run["inputDatasetVersions"]] == [
        {"namespace": "file", "name": "/landing/a.xml", "version": "aa"}
    ]
    assert [(v["datasetVersionId"]["version"], v["versionSource"]) for v in run["outputDatasetVersions"]] == [
        ("aa", "facet")
    ]
    assert {"nominalTime", "parent"} <= set(run["facets"])  # the client adds its own (tags)


def test_post_answers_201_with_an_empty_body_and_flags_duplicates(api: httpx.Client, engine: Engine) -> None:
    body = json.dumps(run_event("START"))
    first = api.post(LINEAGE, content=body, headers={"Content-Type": "application/json"})
    again = api.post(LINEAGE, content=body, headers={"Content-Type": "application/json"})
    assert (first.status_code, first.content) == (201, b"")
    assert "X-Censustrace-Duplicate" not in first.headers
    assert (again.status_code, again.headers["X-Censustrace-Duplicate"]) == (201, "true")
    assert stored(engine) == 1


def test_raw_text_round_trips_byte_for_byte(api: httpx.Client, engine: Engine) -> None:
    text = (
        '{ "eventType":"START","eventTime":"2026-11-28T10:00:00.123456789Z" ,"producer":"https://p",'
        '"run":{"runId":"%s","facets":{}},"job":{"namespace":"écoles","name":"inscrits/☃:2026"},'
        '"inputs":[],"outputs":[],"n":1.000}'
    ).replace("%s", new_run_id())
    assert api.post(LINEAGE, content=text.encode()).status_code == 201
    assert list(export_raw_events(engine)) == [text]


def test_lax_producers_are_accepted(api: httpx.Client, engine: Engine) -> None:
    """No schemaURL, facets without _schemaURL/_producer, a custom facet, unicode, nanoseconds."""
    event = run_event(
        "COMPLETE",
        job=("écoles", "集計.タスク"),
        event_time="2026-11-28T10:00:00.999999999+01:00",
        run_facets={"censustrace_custom": facet(None, anything={"nested": [1, "two"]})},
        outputs=[dataset("fichiers", "/données/élèves 2026.csv", version="v1", facets={"mine": {"x": 1}})],
    )
    del event["schemaURL"]
    del event["outputs"][0]["facets"]["version"]["_schemaURL"]
    response = api.post(LINEAGE, json=event)
    assert response.status_code == 201, response.text
    run = api.get(f"/api/v1/jobs/runs/{event['run']['runId']}").json()
    assert run["endedAt"] == "2026-11-28T09:00:00.999999999Z"
    assert run["job"]["name"] == "集計.タスク"
    assert run["facets"]["censustrace_custom"]["anything"] == {"nested": [1, "two"]}


# Bad input: 400/422 naming the problem, never a 500, nothing stored ----------------------------------------
def _mutated(change: Any) -> bytes:
    event = run_event("START", outputs=[dataset("db", "t")])
    change(event)
    return json.dumps(event).encode()


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        pytest.param(b'{"eventType": "START",', 400, "$: malformed JSON", id="malformed-json"),
        pytest.param(b"\xc3\x28", 400, "$: body is not UTF-8", id="not-utf8"),
        pytest.param(
            b"[1, 2]", 422, "$: expected an OpenLineage event object, got array", id="not-an-object"
        ),
        pytest.param(
            _mutated(lambda e: e.update(eventTime=1)), 422, "$.eventTime: expected string", id="wrong-type"
        ),
        pytest.param(
            _mutated(lambda e: e.update(inputs="x")), 422, "$.inputs: expected array", id="wrong-type-2"
        ),
        pytest.param(
            _mutated(lambda e: e.update(eventType="DONE")),
            422,
            "$.eventType: 'DONE' is not one of",
            id="unknown-event-type",
        ),
        pytest.param(
            _mutated(lambda e: e["run"].pop("runId")),
            422,
            "$.run.runId: required property is missing",
            id="missing-run-id",
        ),
        pytest.param(
            _mutated(lambda e: e["run"].update(runId="run-42")),
            422,
            "$.run.runId: not a valid uuid",
            id="run-id-not-uuid",
        ),
        pytest.param(
            _mutated(lambda e: e["run"]["facets"].update(x=[1])),
            422,
            "$.run.facets.x: expected object, got array",
            id="facet-not-object",
        ),
        pytest.param(
            _mutated(lambda e: e["outputs"][0]["facets"].update(schema=3)),
            422,
            "$.outputs[0].facets.schema: expected object, got number",
            id="dataset-facet-not-object",
        ),
        pytest.param(
            _mutated(lambda e: e["job"].pop("namespace")),
            422,
            "$.job.namespace: required property",
            id="missing-job-namespace",
        ),
        pytest.param(
            _mutated(lambda e: e["job"].pop("name")),
            422,
            "$.job.name: required property",
            id="missing-job-name",
        ),
        pytest.param(
            _mutated(lambda e: e.pop("eventTime")),
            422,
            "$.eventTime: required property",
            id="missing-event-time",
        ),
    ],
)
def test_bad_events_are_rejected_clearly(
    api: httpx.Client, engine: Engine, body: bytes, status: int, expected: str
) -> None:
    response = api.post(LINEAGE, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] in ("CT-LINEAGE-INVALID", "CT-LINEAGE-MALFORMED")
    assert any(problem.startswith(expected) for problem in error["problems"]), error
    assert expected.split(":")[0] in error["message"]
    assert stored(engine) == 0


def test_a_run_id_reused_for_another_job_is_a_conflict(api: httpx.Client, engine: Engine) -> None:
    run_id = new_run_id()
    assert api.post(LINEAGE, json=run_event("START", run_id=run_id, job=("ns", "a"))).status_code == 201
    response = api.post(LINEAGE, json=run_event("COMPLETE", run_id=run_id, job=("ns", "b")))
    assert response.status_code == 409
    assert response.json()["code"] == "CT-LINEAGE-CONFLICT"
    assert stored(engine) == 1


def big_event(size: int) -> bytes:
    """A valid event of about ``size`` bytes (a large schema facet)."""
    count = size // 60
    fields = [{"name": f"column_{i:07d}", "type": "VARCHAR", "description": "x" * 12} for i in range(count)]
    return json.dumps(
        run_event("COMPLETE", outputs=[dataset("db", "wide", facets={"schema": facet(None, fields=fields)})])
    ).encode()


def test_large_events_up_to_the_limit_are_accepted(api: httpx.Client, engine: Engine) -> None:
    body = big_event(3 * 1024 * 1024)
    assert 2 * 1024 * 1024 < len(body) < DEFAULT_MAX_BODY_BYTES
    assert api.post(LINEAGE, content=body).status_code == 201
    assert list(export_raw_events(engine)) == [body.decode()]


def test_bodies_over_the_limit_are_413(api: httpx.Client, engine: Engine) -> None:
    too_big = b'{"pad": "' + b"x" * DEFAULT_MAX_BODY_BYTES + b'"}'
    declared = api.post(LINEAGE, content=too_big)
    assert declared.status_code == 413
    assert declared.json()["code"] == "CT-LINEAGE-BODY"

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
        yield b'{"pad": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65536 + 2):
            yield b"x" * 65536
        yield b'"}'

    streamed = api.post(LINEAGE, content=chunked())
    assert streamed.status_code == 413
    bomb = gzip.compress(b'{"pad": "' + b"x" * (DEFAULT_MAX_BODY_BYTES + 10) + b'"}')
    inflated = api.post(LINEAGE, content=bomb, headers={"Content-Encoding": "gzip"})
    assert inflated.status_code == 413
    assert stored(engine) == 0


def test_a_lying_content_length_is_not_trusted(api_url: str, engine: Engine) -> None:
    """A client declaring a small Content-Length and sending more gets only what it declared read as the
    event; the rest is never part of it (httpx will not send such a request: a raw socket does)."""
    host, port = api_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /api/v1/lineage HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}" + b" " * 100_000
        )
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 422 ")
    assert stored(engine) == 0


# Reading ---------------------------------------------------------------------------------------------
ARCHIVED = "file:///srv/censustrace/archive/ab/abcd1234:extract"


def seed_lineage(api: httpx.Client) -> tuple[str, str]:
    """landing file -> archive job -> archived file -> load job -> warehouse.pupils (two versions)."""
    first, second = new_run_id(), new_run_id()
    for run_id, version, t in ((first, "v1", 0), (second, "v2", 10)):
        assert (
            api.post(
                LINEAGE,
                json=run_event(
                    "COMPLETE",
                    run_id=run_id,
                    job=("censustrace", "archive"),
                    event_time=at(t),
                    inputs=[dataset("file", f"/landing/{version}.xml", version=f"sha-{version}")],
                    outputs=[
                        dataset(
                            "file", ARCHIVED, version=f"sha-{version}", facets={"size": facet(None, bytes=t)}
                        )
                    ],
                ),
            ).status_code
            == 201
        )
        assert (
            api.post(
                LINEAGE,
                json=run_event(
                    "COMPLETE",
                    job=("censustrace", "load"),
                    event_time=at(t + 1),
                    inputs=[dataset("file", ARCHIVED, version=f"sha-{version}")],
                    outputs=[dataset("warehouse", "pupils", version=version)],
                ),
            ).status_code
            == 201
        )
    return first, second


def test_lineage_graph_has_marquez_shape(api: httpx.Client) -> None:
    seed_lineage(api)
    response = api.get(LINEAGE, params={"nodeId": f"dataset:file:{ARCHIVED}", "depth": 5})
    assert response.status_code == 200, response.text
    graph = response.json()["graph"]
    nodes = {node["id"]: node for node in graph}
    assert set(nodes) == {
        "dataset:file:/landing/v1.xml",
        "dataset:file:/landing/v2.xml",
        f"dataset:file:{ARCHIVED}",
        "dataset:warehouse:pupils",
        "job:censustrace:archive",
        "job:censustrace:load",
    }
    for node in graph:
        assert set(node) == {"id", "type", "data", "inEdges", "outEdges"}
        assert node["type"] == ("JOB" if node["id"].startswith("job:") else "DATASET")
        for edge in node["inEdges"]:
            assert edge["destination"] == node["id"]
            assert edge["origin"] in nodes
        for edge in node["outEdges"]:
            assert edge["origin"] == node["id"]
            assert edge["destination"] in nodes
    archive = nodes["job:censustrace:archive"]
    assert {e["origin"] for e in archive["inEdges"]} == {
        "dataset:file:/landing/v1.xml",
        "dataset:file:/landing/v2.xml",
    }
    assert [e["destination"] for e in archive["outEdges"]] == [f"dataset:file:{ARCHIVED}"]
    assert archive["data"]["latestRun"]["state"] == "COMPLETE"
    assert nodes["dataset:warehouse:pupils"]["data"]["currentVersion"] == "v2"
    # depth 0 around the dataset: just the dataset itself
    alone = api.get(LINEAGE, params={"nodeId": "dataset:warehouse:pupils", "depth": 0}).json()["graph"]
    assert [node["id"] for node in alone] == ["dataset:warehouse:pupils"]
    job = api.get(LINEAGE, params={"nodeId": "job:censustrace:load", "depth": 0}).json()["graph"]
    assert {node["id"] for node in job} == {
        "job:censustrace:load",
        f"dataset:file:{ARCHIVED}",
        "dataset:warehouse:pupils",
    }


def test_dataset_names_with_slashes_and_colons_work_raw_and_encoded(api: httpx.Client) -> None:
    first, _ = seed_lineage(api)
    for path_name in (ARCHIVED, quote(ARCHIVED, safe="")):
        response = api.get(f"/api/v1/namespaces/file/datasets/{path_name}/versions")
        assert response.status_code == 200, (path_name, response.text)
        body = response.json()
        assert body["totalCount"] == 2
        latest, oldest = body["versions"]
        assert (latest["version"], oldest["version"]) == ("sha-v2", "sha-v1")
        assert oldest["id"] == {"namespace": "file", "name": ARCHIVED, "version": "sha-v1"}
        assert oldest["createdByRun"]["id"] == first
        assert oldest["facets"]["size"] == {"bytes": 0}
        assert oldest["facets"]["version"]["datasetVersion"] == "sha-v1"
    dataset_record = api.get(f"/api/v1/namespaces/file/datasets/{quote(ARCHIVED, safe='')}").json()
    assert dataset_record["currentVersion"] == "sha-v2"


def test_a_namespace_with_slashes_works(api: httpx.Client) -> None:
    namespace = "sftp://la.example:22/health"
    api.post(LINEAGE, json=run_event(outputs=[dataset(namespace, "a/datasets/b.csv", version="1")]))
    response = api.get(f"/api/v1/namespaces/{namespace}/datasets/a/datasets/b.csv/versions")
    assert response.status_code == 200, response.text
    assert response.json()["versions"][0]["name"] == "a/datasets/b.csv"
    assert api.get(f"/api/v1/namespaces/{quote(namespace, safe='')}/datasets").json()["totalCount"] == 1


def test_run_facets_endpoint(api: httpx.Client) -> None:
    run_id = new_run_id()
    api.post(
        LINEAGE,
        json=run_event(
            "START",
            run_id=run_id,
            run_facets={"a": facet(None, n=1)},
            job_facets={"owner": facet(None, team="data")},
        ),
    )
    body = api.get(f"/api/v1/jobs/runs/{run_id.upper()}/facets").json()
    assert body == {
        "runId": run_id,
        "runFacets": {"a": {"n": 1}},
        "jobFacets": {"owner": {"team": "data"}},
        "facets": {"a": {"n": 1}},
    }
    job_facets = api.get(f"/api/v1/jobs/runs/{run_id}/facets", params={"type": "job"}).json()["facets"]
    assert job_facets == {"owner": {"team": "data"}}


def test_namespaces_jobs_datasets_trace_and_health(api: httpx.Client) -> None:
    seed_lineage(api)
    assert [ns["name"] for ns in api.get("/api/v1/namespaces").json()["namespaces"]] == [
        "censustrace",
        "file",
        "warehouse",
    ]
    jobs = api.get("/api/v1/namespaces/censustrace/jobs").json()
    assert (jobs["totalCount"], [job["name"] for job in jobs["jobs"]]) == (2, ["archive", "load"])
    assert jobs["jobs"][1]["outputs"] == [{"namespace": "warehouse", "name": "pupils"}]
    found = api.get("/api/v1/namespaces/file/datasets", params={"limit": 1, "offset": 1}).json()
    assert found["totalCount"] == 3
    assert len(found["datasets"]) == 1
    trace = api.get(
        "/api/v1/trace", params={"namespace": "warehouse", "name": "pupils", "version": "v1"}
    ).json()
    assert [(s["name"], s["version"]) for s in trace["sources"]] == [("/landing/v1.xml", "sha-v1")]
    assert api.get("/api/v1/health").json() == {"status": "ok", "database": "ok"}


def test_not_found_and_bad_queries(api: httpx.Client) -> None:
    assert api.get(f"/api/v1/jobs/runs/{new_run_id()}").status_code == 404
    assert api.get("/api/v1/namespaces/nope/datasets/x/versions").json()["code"] == "CT-LINEAGE-NOT-FOUND"
    assert api.get(LINEAGE, params={"nodeId": "dataset:nope:x"}).status_code == 404
    assert api.get(LINEAGE, params={"nodeId": "table:x:y"}).status_code == 400
    assert api.get(LINEAGE).status_code == 422
    assert api.get("/api/v1/trace", params={"namespace": unique("ns"), "name": "x"}).status_code == 404


def test_openapi_docs_are_served(api: httpx.Client) -> None:
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    assert "/api/v1/lineage" in paths
    assert "/api/v1/namespaces/{namespace}/datasets/{name}/versions" in paths


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        pytest.param({"Content-Encoding": "br"}, b"{}", 415, id="unknown-encoding"),
        pytest.param({"Content-Encoding": "gzip"}, b"not gzip at all", 400, id="bad-gzip"),
        pytest.param({"Content-Encoding": "gzip"}, gzip.compress(b'{"a": 1}')[:-6], 400, id="truncated-gzip"),
    ],
)
def test_body_encodings(api: httpx.Client, headers: dict[str, str], body: bytes, status: int) -> None:
    response = api.post(LINEAGE, content=body, headers=headers)
    assert response.status_code == status
    assert response.json()["code"] == "CT-LINEAGE-BODY"


def test_the_app_migrates_its_store_at_startup(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    url = f"sqlite:///{tmp_path / 'fresh' / 'lineage.db'}"
    with TestClient(create_app(Settings(lineage_url=url), max_body_bytes=1024)) as client:
        assert client.get("/api/v1/health").json()["status"] == "ok"
        assert client.post(LINEAGE, json=run_event("START")).status_code == 201
        assert client.post(LINEAGE, content=b" " * 1025).status_code == 413
