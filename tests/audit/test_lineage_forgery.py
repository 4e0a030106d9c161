"""Lineage evidence that cannot be forged: an external producer token cannot add versions or edges to
the datasets and jobs the pipeline owns (403 CT-LINEAGE-FORBIDDEN), keeps full use of its own
namespaces, and the trace says which producer wrote each edge; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from censustrace.audit.heads import store_engine
from censustrace.config import Settings
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.lineage.store.trace import trace_upstream
from censustrace.shares.register import find_share
from censustrace.shares.steps import run_share
from censustrace.viewer import auth
from censustrace.viewer.app import create_viewer_app
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from tests.plugins.helpers.lineage_events import dataset, dataset_event, job_event, run_event
from tests.plugins.helpers.shares import Census, ingest_census


@pytest.fixture
def world(sh: Settings, census: Callable[..., Census]) -> Iterator[dict[str, Any]]:
    """A delivered share traced to its census files; the viewer; an external and a pipeline token."""
    ingest_census(sh, census())
    share = find_share(sh, str(run_share("t-research", sh)["share_id"]))
    engine = store_engine(sh)
    tokens = {
        "external": auth.add_token(engine, "acme-lineage", "producer"),
        "pipeline": auth.add_token(engine, "airflow-workers", "pipeline"),
    }
    with TestClient(create_viewer_app(sh)) as client:
        yield {"settings": sh, "share": share, "client": client, "tokens": tokens}


def post(world: dict[str, Any], who: str, event: dict[str, Any]) -> Any:
    return world["client"].post(
        "/api/v1/lineage", json=event, headers={"Authorization": f"Bearer {world['tokens'][who]}"}
    )


def sources(world: dict[str, Any]) -> list[str]:
    share = world["share"]
    found = trace_upstream(store_engine(world["settings"]), FILE_NAMESPACE, share.file_path, share.sha256)
    return sorted(source.name for source in found.sources)


def test_an_external_token_cannot_add_a_source_to_a_share(world: dict[str, Any]) -> None:
    share = world["share"]
    before = sources(world)
    forged = run_event(
        job=("acme", "forge"),
        inputs=[dataset(FILE_NAMESPACE, "/srv/census/invented.xml", version="f" * 64)],
        outputs=[dataset(FILE_NAMESPACE, share.file_path, version=share.sha256)],
    )
    response = post(world, "external", forged)
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "CT-LINEAGE-FORBIDDEN"
    assert body["message"].startswith("$.outputs[0]: dataset file:")
    assert sources(world) == before  # still the same census files, nothing invented


@pytest.mark.parametrize(
    "what",
    [
        "our job",
        "our warehouse table as input",
        "a received file",
        "a dataset event",
        "a job event",
        "parent",
    ],
)
def test_every_way_of_naming_our_lineage_is_refused(world: dict[str, Any], what: str) -> None:
    settings = world["settings"]
    url = settings.warehouse_db_url
    table = dataset(warehouse_namespace(url), warehouse_dataset_name(url, "pupil"), version="x")
    received = dataset(FILE_NAMESPACE, str(settings.archive_dir / "ab" / ("a" * 64)), version="a" * 64)
    theirs = dataset("acme", "reports.attainment", version="1")
    events = {
        "our job": run_event(job=("censustrace", "census_share__t-research.release"), outputs=[theirs]),
        "our warehouse table as input": run_event(job=("acme", "etl"), inputs=[table], outputs=[theirs]),
        "a received file": run_event(job=("acme", "etl"), inputs=[received], outputs=[theirs]),
        "a dataset event": dataset_event(table),
        "a job event": job_event(("acme", "etl"), outputs=[table]),
        "parent": run_event(
            job=("acme", "etl"),
            outputs=[theirs],
            run_facets={
                "parent": {
                    "run": {"runId": "01935f3b-7c4a-7c1e-9f00-000000000001"},
                    "job": {"namespace": "censustrace", "name": "census_ingest"},
                }
            },
        ),
    }
    response = post(world, "external", events[what])
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "CT-LINEAGE-FORBIDDEN"


def test_external_producers_keep_their_own_namespaces_and_the_trace_names_producers(
    world: dict[str, Any],
) -> None:
    own = run_event(
        job=("acme", "etl"),
        inputs=[dataset("acme", "raw.attainment", version="1")],
        outputs=[dataset("acme", "reports.attainment", version="2")],
    )
    assert post(world, "external", own).status_code == 201
    found = trace_upstream(store_engine(world["settings"]), "acme", "reports.attainment", "2")
    assert {edge["producer"] for edge in found.graph["edges"]} == {"external:acme-lineage"}
    # The share's own trace: every edge written by the pipeline's transport.
    share = world["share"]
    ours = trace_upstream(store_engine(world["settings"]), FILE_NAMESPACE, share.file_path, share.sha256)
    assert {edge["producer"] for edge in ours.graph["edges"]} == {"pipeline:transport"}


def test_a_pipeline_token_may_write_our_lineage(world: dict[str, Any]) -> None:
    settings = world["settings"]
    url = settings.warehouse_db_url
    event = run_event(
        job=("censustrace", "census_ingest.publish"),
        inputs=[dataset(FILE_NAMESPACE, str(settings.archive_dir / "cd" / ("c" * 64)), version="c" * 64)],
        outputs=[
            dataset(warehouse_namespace(url), warehouse_dataset_name(url, "pupil"), version="new-extract")
        ],
    )
    assert post(world, "pipeline", event).status_code == 201
    found = trace_upstream(
        store_engine(settings), warehouse_namespace(url), warehouse_dataset_name(url, "pupil"), "new-extract"
    )
    assert {edge["producer"] for edge in found.graph["edges"]} == {"pipeline:airflow-workers"}
