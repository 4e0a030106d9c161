"""One real Airflow run of census_ingest (dag.test()) on generated census files.

Asserts what a data engineer and an auditor rely on: every landed file is archived byte for byte under
its sha256 and read-only, the landing folder is cleared, a resubmitted identical file is stored once,
and the run's OpenLineage events link each landed file to its archived version.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.intake.archive import copy_into, sha256_of

pytestmark = pytest.mark.dagrun


def _events(path: Path, start: int) -> list[dict]:
    lines = path.read_text().splitlines()[start:] if path.exists() else []
    return [json.loads(line) for line in lines]


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

    events_file = settings.home / "lineage-events.jsonl"
    seen = len(events_file.read_text().splitlines()) if events_file.exists() else 0

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

    events = _events(events_file, seen)
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
