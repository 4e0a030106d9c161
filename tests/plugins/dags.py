"""The DAG files of dags/ parsed once per session: ``dagbag`` (in a guarded fresh interpreter, for the
DAG-integrity tests) and ``dags`` (in this process, the DAG objects the run tests call ``.test()`` on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from airflow.sdk import DAG

DAGS = Path(__file__).resolve().parents[2] / "dags"

# Parsing runs in a fresh interpreter whose metadata DB cannot be opened and whose sockets refuse to
# connect: a DAG file that queries the DB or opens a connection at parse time fails loudly here.
_PARSE_SCRIPT = r"""
import json, socket, sys
def _refuse(*a, **k):
    raise RuntimeError("network access at DAG parse time")
socket.socket.connect = _refuse
socket.create_connection = _refuse
from sqlalchemy import event
from sqlalchemy.engine import Engine
def _no_db(*a, **k):
    raise RuntimeError("database access at DAG parse time")
event.listen(Engine, "connect", _no_db)
event.listen(Engine, "before_cursor_execute", _no_db)
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v)[-2000:] for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "tags": sorted(dag.tags),
        "doc_md": bool(dag.doc_md),
        "tasks": {
            t.task_id: {"owner": t.owner, "retries": t.retries} for t in dag.tasks
        },
    }
print("DAGBAG=" + json.dumps(out))
"""


@pytest.fixture(scope="session")
def dagbag(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What a DagBag of dags/ holds (import errors; per DAG its tags, doc and tasks' owner and
    retries), parsed once with the metadata DB unreachable and sockets refusing to connect."""
    tmp_path = tmp_path_factory.mktemp("dagbag")
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path}/no/such/dir/airflow.db",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _PARSE_SCRIPT, str(DAGS)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("DAGBAG="))
    parsed: dict[str, Any] = json.loads(line.removeprefix("DAGBAG="))
    return parsed


@pytest.fixture(scope="session")
def dags() -> dict[str, DAG]:
    """The DAGs of dags/ by id, parsed once in this process (no import errors) for ``dag.test()``."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    return dict(bag.dags)
