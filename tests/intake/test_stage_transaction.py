"""``stage`` parses before it takes SQLite's write lock (into a spool attached to its connection) and
writes in one short transaction: other writers go on while it parses, a kill inside that transaction
leaves nothing, and the spool never outlives the stage. On SQLite and PostgreSQL.

``test_crash.py`` kills a stage while its rows are being written; on SQLite that is now the spool, before
the warehouse transaction. The kill here lands inside the transaction, after every staged row was copied
and before COMMIT, on both backends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from censustrace.config import Settings
from censustrace.intake import stage as stage_module
from censustrace.intake.receive import receive
from censustrace.intake.registry import find_extract, register
from censustrace.intake.stage import stage
from censustrace.warehouse.db import sqlite_staging_engine, warehouse_engine, write_transaction
from censustrace.warehouse.tables import staged_fsm_period, staged_pupil, staged_pupil_address
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET, generated, land, rows_of

PUPILS = 1500
CHILD = r"""
import sys, time
from censustrace.config import Settings
from censustrace.intake import stage

extract_id = sys.argv[1]
mark = stage._mark_staged

def copied_then_wait(conn, *args):
    row = mark(conn, *args)  # every staged row copied, the registry row updated: only COMMIT is left
    print("copied", flush=True)
    time.sleep(60)
    return row

stage._mark_staged = copied_then_wait
stage.stage(extract_id, Settings())
print("finished", flush=True)
"""


def _registered(wh: Settings, tmp_path_factory: pytest.TempPathFactory, seed: int) -> str:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=PUPILS, fmt="xml", seed=seed)
    receipt = receive(land(wh, folder / manifest["files"][0]["file"]), wh)
    extract_id = register(receipt.archived, receipt.received_at, wh).ready
    assert extract_id is not None
    return extract_id


def test_killed_before_commit_the_stage_leaves_nothing(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    extract_id = _registered(wh, tmp_path_factory, seed=21)
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(wh.home),
        "CENSUSTRACE_WAREHOUSE_URL": wh.warehouse_db_url,
        "CENSUSTRACE_PUPIL_KEY_SECRET": PUPIL_KEY_SECRET,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, extract_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    watchdog = threading.Timer(60, child.kill)
    watchdog.start()
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copied", child.stderr.read() if child.stderr else ""
        # The copy is in the open transaction: nobody else sees it yet.
        assert rows_of(wh, staged_pupil, extract_id) == 0
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        watchdog.cancel()
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    assert find_extract(wh, extract_id).status == "received"
    for table in (staged_pupil, staged_pupil_address, staged_fsm_period):
        assert rows_of(wh, table, extract_id) == 0
    assert stage(extract_id, wh).rows.read == PUPILS  # the rerun is exact
    assert rows_of(wh, staged_pupil, extract_id) == PUPILS
    assert find_extract(wh, extract_id).status == "staged"


def test_other_writers_go_on_while_an_extract_is_parsed(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While ``stage`` parses (slowed down here), another write transaction commits at once."""
    extract_id = _registered(wh, tmp_path_factory, seed=22)
    parsing, finish = threading.Event(), threading.Event()
    parse_rows = stage_module._parse_rows

    def slow_parse(*args: object) -> object:
        header = parse_rows(*args)  # type: ignore[arg-type]
        parsing.set()
        assert finish.wait(30)
        return header

    monkeypatch.setattr(stage_module, "_parse_rows", slow_parse)
    staging = threading.Thread(target=stage, args=(extract_id, wh))
    staging.start()
    try:
        assert parsing.wait(30)
        started = time.perf_counter()
        with write_transaction(warehouse_engine(wh.warehouse_db_url)) as conn:
            conn.execute(text("UPDATE extracts SET staged_at = staged_at WHERE extract_id = 'none'"))
        assert time.perf_counter() - started < 5  # not queued behind the parse (busy timeout 120 s)
    finally:
        finish.set()
        staging.join(60)
    assert find_extract(wh, extract_id).status == "staged"
    assert rows_of(wh, staged_pupil, extract_id) == PUPILS


def test_the_spool_never_outlives_a_stage(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not wh.warehouse_db_url.startswith("sqlite"):
        pytest.skip("the spool is SQLite's")
    extract_id = _registered(wh, tmp_path_factory, seed=23)
    engine = sqlite_staging_engine(wh.warehouse_db_url)

    def attached() -> list[str]:
        with engine.connect() as conn:
            return [row[1] for row in conn.exec_driver_sql("PRAGMA database_list")]

    def fail(*args: object) -> object:
        raise RuntimeError("parse failed")

    with monkeypatch.context() as patch:
        patch.setattr(stage_module, "_parse_rows", fail)
        with pytest.raises(RuntimeError):
            stage(extract_id, wh)
    assert attached() == ["main"]
    assert find_extract(wh, extract_id).status == "received"
    assert stage(extract_id, wh).status == "staged"
    assert attached() == ["main"]
    assert rows_of(wh, staged_pupil, extract_id) == PUPILS
