"""One real Airflow run of census_ingest (dag.test()) on generated census files.

Asserts what a data engineer and an auditor rely on, from one run: every landed file is archived byte
for byte; good files are loaded, a resubmitted identical file is a duplicate, a broken file is
quarantined byte for byte while the others of its batch go on; the batch task is labelled with its files
and each file's lineage runs are children of the batch task's run; every
lineage event went through the real provider and our transport into the store, validates against the
OpenLineage schemas, carries no pupil identifier, and the warehouse table traces back to the exact files.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.intake.archive import copy_into, sha256_of
from censustrace.intake.registry import list_extracts
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.outbox import Outbox
from censustrace.lineage.spec import validate_event
from tests.plugins.helpers.privacy import identifiers_in, leaks

pytestmark = pytest.mark.dagrun


def _stored_events(settings: Settings) -> list[dict]:
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events

    return [json.loads(body) for body in export_raw_events(make_engine(settings.lineage_db_url))]


def _wait_for_dag_complete(settings: Settings, seen: int) -> list[dict]:
    """The provider emits DAG-run events from a worker pool after the run ends: wait for it (bounded)."""
    deadline = time.monotonic() + 60
    while True:
        events = _stored_events(settings)[seen:]
        if any(e["job"]["name"] == "census_ingest" and e["eventType"] == "COMPLETE" for e in events):
            return events
        if time.monotonic() > deadline:
            return events
        time.sleep(0.5)


def _run_census_ingest(dags: dict[str, Any]) -> object:
    return dags["census_ingest"].test()


def test_scheduled_run_with_nothing_landed_succeeds(
    airflow_db: Settings, clean_state: Settings, dags: dict[str, Any]
) -> None:
    # Most scheduled runs find an empty landing folder: that is a success, not a failure to retry.
    run = _run_census_ingest(dags)
    assert str(run.state) in ("success", "DagRunState.SUCCESS")  # type: ignore[attr-defined]


def test_census_ingest_loads_quarantines_and_traces(
    airflow_db: Settings, clean_state: Settings, tmp_path: Path, dags: dict[str, Any]
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    settings = clean_state
    manifest = generate(
        GeneratorOptions(
            schools=2, pupils_per_school=30, term="AUT", year=2026, la="330", seed=7,
            fmt="xml", faults=0.0, consents=False, out=tmp_path / "gen",
        )
    )  # fmt: skip
    good = [tmp_path / "gen" / f["file"] for f in manifest["files"]]
    duplicate = tmp_path / "resubmitted.xml"
    duplicate.write_bytes(good[0].read_bytes())
    broken = tmp_path / "SC_cut_in_transit.xml"  # outside the naming convention: header alone counts
    broken.write_bytes(good[1].read_bytes()[:-400])  # cut off in transit
    for src in [*good, duplicate, broken]:
        copy_into(src, settings.landing_dir)
    seen = len(_stored_events(settings))

    run: Any = _run_census_ingest(dags)
    assert str(run.state) in ("success", "DagRunState.SUCCESS")

    # Files: all archived byte for byte and read-only; the broken one quarantined with its bytes.
    assert list(settings.landing_dir.iterdir()) == []
    archived = {p.name: p for p in settings.archive_dir.glob("??/*") if not p.name.startswith(".")}
    expected = {sha256_of(p): p for p in [*good, broken]}
    assert set(archived) == set(expected)
    for sha, path in archived.items():
        assert path.read_bytes() == expected[sha].read_bytes()
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    (kept,) = settings.quarantine_dir.glob(f"{sha256_of(broken)}/{broken.name}")
    assert kept.read_bytes() == broken.read_bytes()

    # Registry: the two schools loaded, the second copy of the same bytes a duplicate of the first (which
    # copy is first depends on which task ran first), the broken file quarantined with a stable code.
    rows = {r.original_name: r for r in list_extracts(settings)}
    copies = sorted([rows[good[0].name], rows[duplicate.name]], key=lambda r: r.status)
    assert [r.status for r in copies] == ["duplicate", "loaded"]
    assert copies[0].duplicate_of == copies[1].extract_id
    assert rows[good[1].name].status == "loaded"
    assert rows[broken.name].status == "quarantined"
    assert [r["code"] for r in rows[broken.name].reasons] == ["CT-PARSE-TRUNCATED"]
    assert sum(r.pupil_count or 0 for r in rows.values() if r.status == "loaded") == 60

    # UI: one batch task for the four files (one bad file does not fail it), labelled with its files.
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id).all()
    batch_tis = [ti for ti in tis if ti.task_id == "ingest_batch"]
    assert len(batch_tis) == 1
    assert "success" in str(batch_tis[0].state)
    label = str(batch_tis[0].rendered_map_index)
    assert all(p.name in label for p in [*good, duplicate, broken]), label
    states = {ti.task_id: str(ti.state) for ti in tis}
    assert "success" in states["summarise"]
    assert "success" in states["verdict"]

    # The batch links to the Data Docs and to its lineage run; its log names each file's pages.
    from airflow.models.xcom import XComModel

    with create_session() as session:

        def xcom(key: str, task_id: str) -> Any:
            query = XComModel.get_many(run_id=run.run_id, key=key, task_ids=task_id)
            return XComModel.deserialize_value(session.scalars(query).first())

        url = str(xcom("_link_DataDocsLink", "ingest_batch"))
        trace_link = str(xcom("_link_TraceLink", "ingest_batch"))
        summary = xcom("return_value", "summarise")
    assert url.startswith(settings.viewer_base_url + "/data-docs/")
    assert trace_link.startswith(settings.viewer_base_url + "/runs/")
    by_file = {f["file"]: f for f in summary["files"]}
    assert by_file[broken.name]["status"] == "quarantined"
    assert by_file[broken.name]["codes"] == ["CT-PARSE-TRUNCATED"]
    assert by_file[good[1].name]["status"] == "loaded"
    assert summary["counts"] == {"loaded": 2, "duplicate": 1, "quarantined": 1}
    from censustrace.quality.docs import page_path

    page = settings.data_docs_dir / page_path("pupil", rows[good[1].name].extract_id)
    assert page.is_file()
    assert "pupil" in page.read_text(encoding="utf-8")

    # Lineage: everything delivered, spec-valid, no pupil identifier anywhere.
    assert Outbox(settings.outbox_dir).entries() == []
    events = _wait_for_dag_complete(settings, seen)
    assert any(e["job"]["name"] == "census_ingest" and e["eventType"] == "COMPLETE" for e in events)
    # One run per file and step, each a child of the batch task's own run (as the provider reported it).
    batch_runs = {e["run"]["runId"] for e in events if e["job"]["name"] == "census_ingest.ingest_batch"}
    assert trace_link.removeprefix(settings.viewer_base_url + "/runs/") in batch_runs
    per_file = [e for e in events if e["job"]["name"].startswith("census_ingest.ingest.")]
    publishes = [e for e in per_file if e["job"]["name"] == "census_ingest.ingest.publish"]
    assert len(publishes) == 2  # the two loaded files
    assert len(per_file) >= 4 + 2 * 3  # receive for all four; stage, validate, publish for two
    for event in per_file:
        assert event["run"]["facets"]["parent"]["run"]["runId"] in batch_runs
    for event in events:
        assert validate_event(event, extra_schemas=schema_documents()) == [], event["job"]["name"]
    pupil_ids = identifiers_in(good)
    assert len(pupil_ids) > 100
    assert leaks(events, pupil_ids) == []
    assert (
        leaks(
            [p.read_text(errors="replace") for p in settings.quarantine_dir.glob("*/reason.json")], pupil_ids
        )
        == []
    )

    # Trace-back: each loaded extract's version of the pupil table reaches exactly its landed file.
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.traceback import trace_target
    from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

    engine = make_engine(settings.lineage_db_url)
    pupil = f"dataset:{warehouse_namespace(settings.warehouse_db_url)}:" + warehouse_dataset_name(
        settings.warehouse_db_url, "pupil"
    )
    for extract in [copies[1], rows[good[1].name]]:
        traced = trace_target(engine, pupil, version=extract.extract_id)
        assert {s["sha256"] for s in traced["sources"]} == {extract.sha256}
        assert extract.original_name in {s["original_name"] for s in traced["sources"]}
        # ... through the validated staging table, whose data-quality outcome the trace shows.
        staged = [n for n in traced["graph"]["nodes"] if n.get("name", "").endswith("staged_pupil")]
        assert [n["version"] for n in staged] == [extract.extract_id]
        assert staged[0]["dataQuality"]["success"] is True
        assert staged[0]["dataQuality"]["assertions"] >= 20
        for source in traced["sources"]:
            assert source["path"].startswith(str(settings.landing_dir))
            assert source["laestab"] == extract.laestab
            assert source["term"] == "AUT"


def test_a_failing_discover_turns_the_run_red(
    airflow_db: Settings, clean_state: Settings, dags: dict[str, Any]
) -> None:
    """Red means red: summarise runs whatever happened (all_done), but the run must end failed."""
    settings = clean_state
    settings.landing_dir.rmdir()
    settings.landing_dir.write_text("a mount gone wrong: the landing folder is a file\n")
    try:
        run: Any = _run_census_ingest(dags)
        from airflow.models.taskinstance import TaskInstance
        from airflow.utils.session import create_session

        with create_session() as session:
            tis = session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id).all()
        states = {ti.task_id: str(ti.state) for ti in tis}
    finally:
        settings.landing_dir.unlink()
        settings.landing_dir.mkdir()
    assert "failed" in states["discover"]
    assert "failed" in str(run.state).lower(), states
