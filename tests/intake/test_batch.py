"""A batch of files as the unit of work: every file keeps its own outcome (the same as ingested alone,
bad input included), batches stay under Airflow's map limit, and a batch killed with a real SIGKILL
leaves no partial extract; a retry of the same batch and a new run's discovery both finish it, once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from censustrace.config import Settings
from censustrace.intake.batch import (
    EXTRACT_ITEM,
    batch_label,
    discover_work,
    ingest_batch,
    plan_batches,
)
from censustrace.intake.ingest import ingest_file
from censustrace.intake.registry import list_extracts
from censustrace.warehouse.db import upgrade, warehouse_engine
from censustrace.warehouse.tables import pupil, staged_pupil
from tests.plugins.helpers.intake import BAD_XML, one_school
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET, generated, rows_of, sqlite_home


def _write_batch_inputs(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Good files, a resubmission (other bytes, same school), the same bytes twice, and every kind of
    bad XML the single-file tests know, under distinct names."""
    good_folder, manifest = generated(
        tmp_path_factory, schools=3, pupils_per_school=25, seed=21, fmt="xml", faults=0.0
    )
    names = []
    for entry in manifest["files"]:
        (folder / entry["file"]).write_bytes((good_folder / entry["file"]).read_bytes())
        names.append(entry["file"])
    first = (good_folder / manifest["files"][0]["file"]).read_bytes()
    (folder / "again_same_bytes.xml").write_bytes(first)
    (folder / "resubmitted.xml").write_bytes(first.replace(b"</Message>", b"</Message>\n"))
    names += ["again_same_bytes.xml", "resubmitted.xml"]
    source = one_school(tmp_path_factory).read_bytes()
    for case, (_name, mutate, _code) in BAD_XML.items():
        if case in ("odd_name", "dotdot_name"):
            continue
        (folder / f"bad_{case}.xml").write_bytes(mutate(source))
        names.append(f"bad_{case}.xml")
    return names


def _comparable(outcome: Any) -> dict[str, Any]:
    data = outcome.as_dict()
    data["file"] = Path(data["file"]).name
    return data


def test_a_batch_gives_each_file_the_outcome_it_gets_alone(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    names = _write_batch_inputs(sources, tmp_path_factory)
    alone, batched = sqlite_home(tmp_path, "alone"), sqlite_home(tmp_path, "batched")
    one_by_one = []
    for name in names:
        landed = alone.landing_dir / name
        landed.write_bytes((sources / name).read_bytes())
        one_by_one.append(ingest_file(landed, alone))
    items = []
    for name in names:
        (batched.landing_dir / name).write_bytes((sources / name).read_bytes())
        items.append(str(batched.landing_dir / name))
    result = ingest_batch(items, batched)

    assert [_comparable(o) for o in result.outcomes] == [_comparable(o) for o in one_by_one]
    statuses = [o.status for o in result.outcomes]
    assert statuses.count("loaded") == 4  # three schools and the resubmission
    assert statuses.count("duplicate") == 1
    assert statuses.count("quarantined") == len(names) - 5
    assert result.failed == []
    assert rows_of(batched, pupil) == rows_of(alone, pupil)
    resubmitted = next(o for o in result.outcomes if Path(o.file).name == "resubmitted.xml")
    assert resubmitted.supersedes == result.outcomes[0].extract_id
    # Each file has its own runs (receive for every file; stage, validate, publish for loaded ones).
    assert result.events >= len(names) + 4 * 3


def test_more_than_1024_files_make_few_batches(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", warehouse_url=f"sqlite:///{tmp_path / 'w.db'}")
    settings.ensure_dirs()
    upgrade(settings.warehouse_db_url)
    for i in range(1100):
        (settings.landing_dir / f"SC_330_{i:04d}_AUT_2026.xml").write_bytes(b"<Message/>\n<!-- %d -->\n" % i)
    items = discover_work(settings)
    assert len(items) == 1100
    batches = plan_batches(items, settings.ingest_batch_files, settings.ingest_batch_bytes)
    assert len(batches) == 6  # 200 files each at most; Airflow maps at most 1,024 instances
    assert [i for b in batches for i in b] == items
    assert batch_label(batches[0]) == "200 files: SC_330_0000_AUT_2026.xml … SC_330_0199_AUT_2026.xml"
    assert batch_label(batches[0][:3]) == (
        "3 files: SC_330_0000_AUT_2026.xml, SC_330_0001_AUT_2026.xml, SC_330_0002_AUT_2026.xml"
    )
    # Bytes cut batches too, and a file larger than the limit is a batch of its own.
    assert [len(b) for b in plan_batches(items[:5], 200, 50)] == [2, 2, 1]
    # The files of a batch are really ingested: each cheap file is quarantined, none fails the batch.
    done = ingest_batch(batches[0][:50], settings, emit=False)
    assert {o.status for o in done.outcomes} == {"quarantined"}


def test_csv_tables_of_one_school_stay_in_one_batch() -> None:
    items = [
        "/l/a.xml",
        "/l/SC_330_2000_AUT_2026_addressesonroll.csv",
        "/l/SC_330_2000_AUT_2026_fsmperiod.csv",
        "/l/SC_330_2000_AUT_2026_pupilonroll.csv",
    ]
    # A batch may grow past its size to keep a school's tables together (its extract completes).
    assert plan_batches([*items, "/l/b.xml"], 2, 10**9) == [items, ["/l/b.xml"]]


CHILD = r"""
import os, signal, sys
from censustrace.config import Settings
from censustrace.intake import batch, publish

settings = Settings()
items = sys.argv[1:]
published = 0
copy = publish._copy_to_final

def copy_then_die(conn, extract_id):
    # The second file's publish dies after copying its rows, before COMMIT: a real SIGKILL.
    global published
    result = copy(conn, extract_id)
    published += 1
    if published == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return result

publish._copy_to_final = copy_then_die
batch.ingest_batch(items, settings)
"""


def _kill_mid_batch(settings: Settings, items: list[str], tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(settings.home),
        "CENSUSTRACE_WAREHOUSE_URL": settings.warehouse_db_url,
        "CENSUSTRACE_PUPIL_KEY_SECRET": PUPIL_KEY_SECRET,
    }
    child = subprocess.run(
        [sys.executable, "-c", CHILD, *items], env=env, cwd=tmp_path, capture_output=True, timeout=300
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]


@pytest.mark.parametrize("resume", ["retry", "new_run"])
def test_sigkill_mid_batch_leaves_nothing_partial_and_is_finished_once(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, resume: str
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=4, pupils_per_school=40, seed=5, fmt="xml")
    items = []
    for entry in manifest["files"]:
        landed = wh.landing_dir / entry["file"]
        landed.write_bytes((folder / entry["file"]).read_bytes())
        items.append(str(landed))
    _kill_mid_batch(wh, items, tmp_path)

    # One file was loaded; the second's publish rolled back whole; the others are archived, not loaded.
    rows = {r.original_name: r for r in list_extracts(wh)}
    assert [rows[Path(i).name].status for i in items] == ["loaded", "staged", "staged", "staged"]
    assert list(wh.landing_dir.iterdir()) == []
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        loaded_ids = {r.extract_id for r in rows.values() if r.status == "loaded"}
        in_pupil = {
            e for (e,) in conn.execute(pupil.select().with_only_columns(pupil.c.extract_id).distinct())
        }
    assert in_pupil == loaded_ids
    loaded_before = rows_of(wh, pupil)
    assert loaded_before == rows[Path(items[0]).name].pupil_count

    if resume == "retry":  # Airflow retries the same batch task: its landed files are gone
        result = ingest_batch(items, wh)
    else:  # a new DAG run discovers the unfinished extracts
        work = discover_work(wh)
        assert work == [f"{EXTRACT_ITEM}{rows[Path(i).name].extract_id}" for i in items[1:]]
        result = ingest_batch(work, wh)
    assert result.failed == []
    assert {o.status for o in result.outcomes} == {"loaded"}
    after = {r.original_name: r for r in list_extracts(wh)}
    assert {r.status for r in after.values()} == {"loaded"}
    assert rows_of(wh, pupil) == sum(r.pupil_count or 0 for r in after.values())
    assert rows_of(wh, pupil) == sum(r.rows_read or 0 for r in after.values()) - sum(
        r.rows_rejected or 0 for r in after.values()
    )
    assert rows_of(wh, staged_pupil) == 0
    # Once: a second retry changes nothing.
    again = ingest_batch(items, wh)
    assert {o.status for o in again.outcomes} == {"loaded"}
    assert rows_of(wh, pupil) == sum(r.pupil_count or 0 for r in after.values())


def test_each_file_of_a_batch_traces_to_itself_alone(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Lineage is per file even when written per batch: an extract's version of ``pupil`` traces to
    exactly its own file, never to the batch; every file's runs name the batch's run as parent."""
    import json

    from censustrace.lineage.bulk import ParentRef
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events
    from censustrace.lineage.traceback import trace_target
    from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

    settings = sqlite_home(tmp_path, "traced")
    folder, manifest = generated(tmp_path_factory, schools=3, pupils_per_school=15, seed=23, fmt="xml")
    items = []
    for entry in manifest["files"]:
        (settings.landing_dir / entry["file"]).write_bytes((folder / entry["file"]).read_bytes())
        items.append(str(settings.landing_dir / entry["file"]))
    parent = ParentRef("censustrace", "census_ingest.ingest_batch", "01930000-0000-7000-8000-000000000001")
    result = ingest_batch(items, settings, parent=parent)
    assert {o.status for o in result.outcomes} == {"loaded"}
    engine = make_engine(settings.lineage_db_url)
    url = settings.warehouse_db_url
    pupil_dataset = f"dataset:{warehouse_namespace(url)}:{warehouse_dataset_name(url, 'pupil')}"
    for outcome in result.outcomes:
        traced = trace_target(engine, pupil_dataset, version=outcome.extract_id)
        assert {s["sha256"] for s in traced["sources"]} == {outcome.sha256}
    events = [json.loads(e) for e in export_raw_events(engine)]
    assert len(events) == result.events
    assert {e["run"]["facets"]["parent"]["run"]["runId"] for e in events} == {parent.run_id}
