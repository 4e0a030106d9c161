"""Share DAG specs from agreement files: schedules by frequency, expired and broken agreements."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from censustrace.airflow.share_dags import SCHEDULES, share_dag_specs

TODAY = dt.date(2026, 11, 28)


def _policies(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "policies" / "agreements"
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return tmp_path / "policies"


AGREEMENT = """id: {id}
recipient: {{name: "Example Council", type: local_authority}}
purpose: education.sen_transport
frequency: {frequency}
valid_from: 2026-09-01
valid_to: {valid_to}
"""


def test_frequency_sets_the_schedule_and_validity_the_start(tmp_path: Path) -> None:
    files = {f"{f}.yaml": AGREEMENT.format(id=f, frequency=f, valid_to="2027-08-31") for f in SCHEDULES}
    specs = {s.agreement_id: s for s in share_dag_specs(_policies(tmp_path, files), TODAY)}
    assert {a: s.schedule for a, s in specs.items()} == SCHEDULES
    assert {s.start_date for s in specs.values()} == {dt.date(2026, 9, 1)}
    assert specs["termly"].dag_id == "census_share__termly"
    assert "Example Council" in specs["termly"].doc


def test_expired_unknown_frequency_and_unreadable_agreements_run_only_by_hand(tmp_path: Path) -> None:
    files = {
        "old.yaml": AGREEMENT.format(id="old", frequency="termly", valid_to="2026-08-31"),
        "odd.yaml": AGREEMENT.format(id="odd", frequency="fortnightly", valid_to="2027-08-31"),
        "broken.yaml": "id: [unclosed\n",
        "list.yaml": "- just\n- a list\n",
    }
    specs = {s.agreement_id: s for s in share_dag_specs(_policies(tmp_path, files), TODAY)}
    assert set(specs) == {"old", "odd", "broken", "list"}
    assert all(s.schedule is None for s in specs.values())
    assert "expired" in specs["old"].tags
    assert "2026-08-31" in specs["old"].doc
    assert "cannot be read" in specs["broken"].doc
    assert "not a mapping" in specs["list"].doc
