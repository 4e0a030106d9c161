"""One real Airflow run of census_ingest (dag.test()) on generated census files.

Asserts what a data engineer and an auditor rely on: every landed file is archived byte for byte under
its sha256 and read-only, the landing folder is cleared, a resubmitted identical file is stored once,
and the run's OpenLineage events link each landed file to its archived version.
"""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.intake.archive import copy_into, sha256_of
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


def test_census_ingest_archives_every_file_with_lineage(
    airflow_db: Settings, clean_state: Settings, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import DagBag

    settings = clean_state
    manifest = generate(
        GeneratorOptions(
            schools=2,
            pupils_per_school=30,
            term="AUT",
            year=2026,
            la="330",
            seed=7,
            fmt="xml",
            faults=0.0,
            consents=False,
            out=tmp_path / "gen",
        )
    )
    sources = [tmp_path / "gen" / f["file"] for f in manifest["files"]]
    for src in sources:
        copy_into(src, settings.landing_dir)
    # The first school resubmits the very same bytes under another name: stored once.
    duplicate = tmp_path / "resubmitted.xml"
    duplicate.write_bytes(sources[0].read_bytes())
    copy_into(duplicate, settings.landing_dir)

    seen = len(_stored_events(settings))

    bag = DagBag(dag_folder=str(Path(__file__).resolve().parents[2] / "dags" / "census_ingest.py"))
    assert bag.import_errors == {}
    run = bag.dags["census_ingest"].test()
    assert str(run.state) in ("success", "DagRunState.SUCCESS")

    assert list(settings.landing_dir.iterdir()) == []
    archived = {p.name: p for p in settings.archive_dir.glob("??/*") if not p.name.startswith(".")}
    expected = {sha256_of(src): src for src in sources}
    assert set(archived) == set(expected)
    for sha, path in archived.items():
        assert path.read_bytes() == expected[sha].read_bytes()
        assert not path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)

    receipts = [json.loads(x) for x in (settings.home / "receipts.jsonl").read_text().splitlines()]
    assert sorted(r["original_name"] for r in receipts) == sorted(
        [*(s.name for s in sources), duplicate.name]
    )
    assert [r["already_archived"] for r in receipts].count(True) == 1

    # Every event went through the real provider and our transport into the lineage store, and
    # nothing is waiting in the outbox.
    assert Outbox(settings.outbox_dir).entries() == []
    events = _wait_for_dag_complete(settings, seen)
    for event in events:
        assert validate_event(event, extra_schemas=schema_documents()) == [], event["job"]["name"]
    # No pupil identifier in any event.
    pupil_ids = identifiers_in(sources)
    assert len(pupil_ids) > 100
    assert leaks(events, pupil_ids) == []
    receive_done = [
        e for e in events if e["job"]["name"] == "census_ingest.receive" and e["eventType"] == "COMPLETE"
    ]
    assert len(receive_done) == 3
    for event in receive_done:
        (inp,) = event["inputs"]
        (out,) = event["outputs"]
        version = inp["facets"]["version"]["datasetVersion"]
        assert out["facets"]["version"]["datasetVersion"] == version
        assert out["name"].endswith(version)
        assert version in expected
    dag_done = [e for e in events if e["job"]["name"] == "census_ingest" and e["eventType"] == "COMPLETE"]
    assert len(dag_done) == 1

    # Trace-back from each archived file reaches exactly the landed file version it came from.
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.traceback import trace_target

    engine = make_engine(settings.lineage_db_url)
    for sha, path in archived.items():
        traced = trace_target(engine, f"dataset:file:{path}")
        # The resubmitted copy has the same bytes: that archive entry came from both landed files.
        names = {expected[sha].name} | ({duplicate.name} if expected[sha] == sources[0] else set())
        assert {s["original_name"] for s in traced["sources"]} == names
        for source in traced["sources"]:
            assert source["sha256"] == source["version"] == sha
            assert source["path"].startswith(str(settings.landing_dir))
