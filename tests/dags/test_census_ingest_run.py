"""One real Airflow run of census_ingest (dag.test()) on generated census files.

Asserts what a data engineer and an auditor rely on, from one run: every landed file is archived byte
for byte; good files are loaded, a resubmitted identical file is a duplicate, a broken file is
quarantined byte for byte while the others go on; mapped instances are labelled by file name; every
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
from tests.privacy import identifiers_in, leaks

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


def _run_census_ingest() -> object:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "census_ingest.py"))
    assert bag.import_errors == {}
    return bag.dags["census_ingest"].test()


def test_scheduled_run_with_nothing_landed_succeeds(airflow_db: Settings, clean_state: Settings) -> None:
    # Most scheduled runs find an empty landing folder: that is a success, not a failure to retry.
    run = _run_census_ingest()
    assert str(run.state) in ("success", "DagRunState.SUCCESS")  # type: ignore[attr-defined]


def test_census_ingest_loads_quarantines_and_traces(
    airflow_db: Settings, clean_state: Settings, tmp_path: Path
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

    run: Any = _run_census_ingest()
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

    # UI: mapped instances are labelled by file name; the broken file's publish is visibly skipped.
    with create_session() as session:
        tis = session.query(TaskInstance).filter(TaskInstance.run_id == run.run_id).all()
    index = {ti.rendered_map_index: ti.map_index for ti in tis if ti.task_id == "ingest.receive"}
    assert set(index) == {p.name for p in [*good, duplicate, broken]}
    state = {(ti.task_id, ti.map_index): str(ti.state) for ti in tis if ti.map_index >= 0}
    second_copy = copies[0].original_name
    for name, outcome in [(broken.name, "skipped"), (second_copy, "skipped"), (good[1].name, "success")]:
        for step in ("stage", "validate", "publish"):
            assert outcome in state[(f"ingest.{step}", index[name])], (name, step)

    # Data quality: the validate instance links to its Data Docs page, which exists and names the suite.
    from airflow.models.xcom import XComModel

    with create_session() as session:
        query = XComModel.get_many(
            run_id=run.run_id,
            key="_link_DataDocsLink",
            task_ids="ingest.validate",
            map_indexes=index[good[1].name],
        )
        link = session.scalars(query).one()
        url = str(XComModel.deserialize_value(link))
        query = XComModel.get_many(
            run_id=run.run_id,
            key="_link_TraceLink",
            task_ids="ingest.publish",
            map_indexes=index[good[1].name],
        )
        trace_link = str(XComModel.deserialize_value(session.scalars(query).one()))
    assert url.startswith(settings.viewer_base_url + "/data-docs/")
    assert trace_link.startswith(settings.viewer_base_url + "/trace?")
    assert f"version={rows[good[1].name].extract_id}" in trace_link
    page = settings.data_docs_dir / url.removeprefix(settings.viewer_base_url + "/data-docs/")
    assert page.is_file()
    assert "pupil" in page.read_text(encoding="utf-8")

    # Lineage: everything delivered, spec-valid, no pupil identifier anywhere.
    assert Outbox(settings.outbox_dir).entries() == []
    events = _wait_for_dag_complete(settings, seen)
    assert any(e["job"]["name"] == "census_ingest" and e["eventType"] == "COMPLETE" for e in events)
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
