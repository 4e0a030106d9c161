"""The current view: per school and census, the rows of the latest accepted extract only."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from censustrace.config import Settings
from censustrace.intake.ingest import ingest_file
from censustrace.warehouse.current import current_fsm_period, current_pupil_address, current_pupils
from censustrace.warehouse.db import warehouse_engine
from tests.plugins.helpers.warehouse import generated, land


def test_current_view_per_school_and_census(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    autumn, manifest = generated(tmp_path_factory, schools=2, pupils_per_school=10, fmt="xml", seed=21)
    spring, spring_manifest = generated(
        tmp_path_factory, schools=1, pupils_per_school=6, fmt="xml", seed=21, term="SPR", year=2027
    )
    first, second = (autumn / f["file"] for f in manifest["files"])
    outcomes = [
        ingest_file(land(wh, p), wh) for p in (first, second, spring / spring_manifest["files"][0]["file"])
    ]
    assert [o.status for o in outcomes] == ["loaded"] * 3
    # The first school resends its autumn census with one pupil fewer.
    data = first.read_bytes()
    resent = tmp_path / first.name
    resent.write_bytes(data[: data.rindex(b"<PupilOnRoll>")] + data[data.rindex(b"</Pupils>") :])
    resend = ingest_file(land(wh, resent), wh)
    assert resend.supersedes == outcomes[0].extract_id
    laestab = manifest["files"][0]["laestab"]
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        everything = current_pupils(conn)
        assert len(everything) == 9 + 10 + 6
        assert len(current_pupils(conn, laestab)) == 9 + 6
        assert len(current_pupils(conn, laestab, term="AUT", year=2026)) == 9
        assert len(current_pupils(conn, term="SPR")) == 6
        assert conn.execute(text("SELECT count(*) FROM current_pupil")).scalar_one() == 25
        addresses = conn.execute(select(func.count()).select_from(current_pupil_address)).scalar_one()
        periods = conn.execute(select(func.count()).select_from(current_fsm_period)).scalar_one()
    assert 0 < addresses <= 25
    # Every FSM period of the current files (the resent one, not the one it supersedes), one row each.
    current_files = (resent, second, spring / spring_manifest["files"][0]["file"])
    assert periods == sum(p.read_bytes().count(b"<FSMperiod>") for p in current_files) > 0
    assert {row["extract_id"] for row in everything} == {
        resend.extract_id,
        outcomes[1].extract_id,
        outcomes[2].extract_id,
    }
