"""Every DAG file imports cleanly, carries its metadata, and does no work at parse time (the ``dagbag``
fixture, tests/plugins/dags.py, parses dags/ once with the DB and the network refused)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def test_dagbag_parses_without_db_or_network(dagbag: dict[str, Any]) -> None:
    result = dagbag
    assert result["errors"] == {}
    dag_files = sorted(p.stem for p in (REPO / "dags").glob("*.py") if not p.name.startswith("_"))
    assert dag_files, "no DAG files found"
    assert "census_ingest" in result["dags"]
    for dag_id, dag in result["dags"].items():
        assert dag["tags"], f"{dag_id} has no tags"
        assert dag["doc_md"], f"{dag_id} has no doc_md"
        for task_id, task in dag["tasks"].items():
            assert task["owner"] not in ("", "airflow"), f"{dag_id}.{task_id} has no owner"
            assert task["retries"] >= 1, f"{dag_id}.{task_id} has no retries"


def test_one_share_dag_per_agreement_file(dagbag: dict[str, Any]) -> None:
    result = dagbag
    agreements = sorted(p.stem for p in (REPO / "policies" / "agreements").glob("*.yaml"))
    assert agreements
    for agreement in agreements:
        dag = result["dags"][f"census_share__{agreement}"]
        assert sorted(dag["tasks"]) == ["build", "check", "release"]
        assert "share" in dag["tags"]
