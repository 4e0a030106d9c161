"""A PostgreSQL connection cut mid-batch (``pg_terminate_backend``, as a server restart or a network fault
would do): the file whose publish lost its connection rolls back whole and fails with its reason, the
batch's other files are loaded, and a retry of the batch (what Airflow does) finishes it, once. The
failure's text names no pupil: the statement's parameters are hidden and PostgreSQL's row detail cut."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from censustrace.config import Settings
from censustrace.intake import publish
from censustrace.intake.batch import ingest_batch
from censustrace.intake.registry import list_extracts
from censustrace.warehouse.tables import pupil, staged_pupil
from tests.plugins.helpers.privacy import identifiers_in
from tests.plugins.helpers.warehouse import generated, rows_of


def test_a_connection_cut_during_publish_fails_that_file_only_and_a_retry_finishes_it(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not wh.warehouse_db_url.startswith("postgresql"):
        pytest.skip("a cut connection is a PostgreSQL server's (SQLite has none)")
    folder, manifest = generated(tmp_path_factory, schools=3, pupils_per_school=30, seed=9, fmt="xml")
    items = []
    for entry in manifest["files"]:
        landed = wh.landing_dir / entry["file"]
        landed.write_bytes((folder / entry["file"]).read_bytes())
        items.append(str(landed))
    admin = create_engine(wh.warehouse_db_url, isolation_level="AUTOCOMMIT")
    copy = publish._copy_to_final
    published: list[str] = []

    def copy_then_cut(conn: Any, extract_id: str) -> Any:
        result = copy(conn, extract_id)  # every row copied; COMMIT is next
        published.append(extract_id)
        if len(published) == 2:
            pid = conn.connection.dbapi_connection.get_backend_pid()
            with admin.connect() as other:
                other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return result

    monkeypatch.setattr(publish, "_copy_to_final", copy_then_cut)
    try:
        result = ingest_batch(items, wh, emit=False)
    finally:
        admin.dispose()
    [failed] = result.failed
    assert failed.extract_id == published[1]
    reason = json.dumps([e.as_dict() if hasattr(e, "as_dict") else str(e) for e in failed.errors])
    assert "OperationalError" in reason
    assert "connection" in reason.lower()
    assert not identifiers_in([folder / entry["file"] for entry in manifest["files"]]) & set(
        reason.replace('"', " ").split()
    )
    # Nothing of the cut file reached the warehouse; the batch's other files did.
    rows = {r.extract_id: r for r in list_extracts(wh)}
    assert rows[published[1]].status != "loaded"
    assert sorted(r.status for r in rows.values()) == ["loaded", "loaded", "staged"]
    assert rows_of(wh, pupil, published[1]) == 0
    assert rows_of(wh, pupil) == sum(r.pupil_count or 0 for r in rows.values() if r.status == "loaded")

    monkeypatch.undo()
    retry = ingest_batch(items, wh, emit=False)  # Airflow's retry of the same batch task
    assert retry.failed == []
    after = list_extracts(wh)
    assert {r.status for r in after} == {"loaded"}
    assert rows_of(wh, pupil) == sum(r.pupil_count or 0 for r in after)
    assert rows_of(wh, staged_pupil) == 0
    assert Path(items[0]).exists() is False  # received once, from the archive on retry
