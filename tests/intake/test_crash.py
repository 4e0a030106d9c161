"""Crash safety: a process doing ``stage`` or ``publish`` is killed with a real SIGKILL part way; no
partial extract is ever visible, and a rerun gives exact counts. On SQLite and PostgreSQL.

The child process slows itself down by wrapping the production code (small batches and a pause after
each flush while staging; a pause after the final-table copy while publishing): no sleep or hook in
the production code itself.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from censustrace.census.formats import parse_extract
from censustrace.config import Settings
from censustrace.intake.publish import publish
from censustrace.intake.receive import receive
from censustrace.intake.registry import find_extract, register
from censustrace.intake.stage import stage
from censustrace.warehouse.current import current_pupils
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import fsm_period, pupil, pupil_address, staged_pupil
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET, generated, land, rows_of

PUPILS = 2000
CHILD = r"""
import sys, time
from censustrace.config import Settings
from censustrace.intake import publish, stage
from censustrace.warehouse import load

phase, extract_id = sys.argv[1], sys.argv[2]
settings = Settings()
if phase == "stage":
    init, flush = load.BulkWriter.__init__, load.BulkWriter.flush

    def small_batches(self, connection, tables, batch_size=0):
        init(self, connection, tables, 200)

    def slow_flush(self):
        flush(self)
        print(f"flushed {self.batches}", flush=True)
        time.sleep(0.2)

    load.BulkWriter.__init__, load.BulkWriter.flush = small_batches, slow_flush
    stage.stage(extract_id, settings)
else:
    copy = publish._copy_to_final

    def copy_then_wait(conn, eid):
        result = copy(conn, eid)
        print("copied", flush=True)
        time.sleep(60)
        return result

    publish._copy_to_final = copy_then_wait
    publish.publish(extract_id, {}, settings)
print("finished", flush=True)
"""


def _kill_at(settings: Settings, tmp_path: Path, phase: str, extract_id: str, marker: str) -> None:
    """Run ``phase`` in a child process and SIGKILL it as soon as it prints ``marker``."""
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(settings.home),
        "CENSUSTRACE_WAREHOUSE_URL": settings.warehouse_db_url,
        "CENSUSTRACE_PUPIL_KEY_SECRET": PUPIL_KEY_SECRET,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, phase, extract_id],
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
        for line in child.stdout:
            if line.strip() == marker:
                os.kill(child.pid, signal.SIGKILL)
                break
        else:
            pytest.fail(f"the child ended before {marker!r}: {child.stderr.read() if child.stderr else ''}")
        child.wait(timeout=30)
    finally:
        watchdog.cancel()
        child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL


def test_killed_stage_and_publish_leave_nothing_partial(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=PUPILS, fmt="xml", seed=9)
    source = folder / manifest["files"][0]["file"]
    addresses = sum(1 for p in parse_extract(source) if p.record.address_lines)
    periods = sum(len(p.record.fsm_periods) for p in parse_extract(source))
    receipt = receive(land(wh, source), wh)
    extract_id = register(receipt.archived, receipt.received_at, wh).ready
    assert extract_id is not None

    # Killed while staging, after 3 of 10 batches were written in the (open) staging transaction.
    _kill_at(wh, tmp_path, "stage", extract_id, "flushed 3")
    assert find_extract(wh, extract_id).status == "received"
    assert rows_of(wh, staged_pupil, extract_id) == 0
    assert rows_of(wh, pupil, extract_id) == 0
    assert stage(extract_id, wh).rows.read == PUPILS  # the rerun is exact
    assert rows_of(wh, staged_pupil, extract_id) == PUPILS

    # Killed while publishing, after every final row was copied but before COMMIT.
    _kill_at(wh, tmp_path, "publish", extract_id, "copied")
    assert find_extract(wh, extract_id).status == "staged"
    assert rows_of(wh, pupil, extract_id) == rows_of(wh, pupil_address, extract_id) == 0
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        assert current_pupils(conn) == []
    assert rows_of(wh, staged_pupil, extract_id) == PUPILS  # staging survives for the rerun

    result = publish(extract_id, {}, wh)
    assert result.rows.loaded == manifest["files"][0]["pupils"] == PUPILS
    assert rows_of(wh, pupil, extract_id) == PUPILS
    assert rows_of(wh, pupil_address, extract_id) == addresses
    assert rows_of(wh, fsm_period, extract_id) == periods
    assert rows_of(wh, staged_pupil, extract_id) == 0
    assert find_extract(wh, extract_id).status == "loaded"
