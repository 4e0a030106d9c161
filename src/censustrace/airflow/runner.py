"""Run DAGs once, one after another, in ONE Airflow process (``dag.test()``): the demo pipeline's
driver. Started by ``censustrace pipeline`` as ``python -m censustrace.airflow.runner DAG_ID...`` with the
embedded Airflow's environment; prints one JSON line per DAG run (``{"dag", "state", "tasks"}``).

One process instead of one ``airflow dags test`` per DAG saves Airflow's start-up (seconds) per DAG;
``--use-executor`` hands the tasks to the configured executor (LocalExecutor, its parallelism) instead
of running them in this process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def run(dag_ids: list[str], dags_dir: Path, *, use_executor: bool = False) -> list[dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(dags_dir))
    if bag.import_errors:
        raise SystemExit(f"DAG import errors: {json.dumps(bag.import_errors)[:2000]}")
    results = []
    for dag_id in dag_ids:
        dag = bag.dags[dag_id]
        run_ = dag.test(use_executor=use_executor)
        tasks: dict[str, int] = {}
        for ti in run_.get_task_instances():
            state = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
            tasks[state] = tasks.get(state, 0) + 1
        state = str(run_.state.value if hasattr(run_.state, "value") else run_.state)
        seconds = None
        if run_.start_date and run_.end_date:
            seconds = round((run_.end_date - run_.start_date).total_seconds(), 1)
        result = {"dag": dag_id, "state": state, "tasks": tasks, "seconds": seconds}
        print(json.dumps(result), flush=True)
        results.append(result)
    return results


def main(argv: list[str]) -> int:
    use_executor = "--use-executor" in argv
    dag_ids = [a for a in argv if not a.startswith("--")]
    from censustrace.config import get_settings

    run(dag_ids, get_settings().dags_dir, use_executor=use_executor)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
