"""Run DAGs once, one after another, in ONE Airflow process (``dag.test()``): the demo pipeline's
driver. Started by ``censustrace pipeline`` as ``python -m censustrace.airflow.runner DAG_ID...`` with the
embedded Airflow's environment; prints one JSON line per DAG run (``{"dag", "state", "tasks"}``).

One process instead of one ``airflow dags test`` per DAG saves Airflow's start-up (seconds) per DAG;
``--use-executor`` hands the tasks to the configured executor (LocalExecutor, its parallelism) instead
of running them in this process. ``--requeue-lost`` (Celery) also watches task heartbeats, as Airflow's
scheduler does: a task whose worker died (no heartbeat for ``CENSUSTRACE_TASK_HEARTBEAT_TIMEOUT``) is
failed with that reason, so its retry runs on a worker that is alive.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def fail_lost_tasks(dag_ids: list[str], timeout_seconds: int) -> list[str]:
    """Tasks RUNNING without a heartbeat for ``timeout_seconds`` (their worker died): failed like a
    task that raised, so they go up for retry (or fail when out of retries). Returns their keys."""
    import datetime as dt

    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState
    from sqlalchemy import select

    limit = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=timeout_seconds)
    lost: list[str] = []
    with create_session() as session:
        tis = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id.in_(dag_ids),
                TaskInstance.state == TaskInstanceState.RUNNING,
                TaskInstance.last_heartbeat_at < limit,
            )
        ).all()
        for ti in tis:
            key = f"{ti.dag_id}.{ti.task_id}[{ti.map_index}] try {ti.try_number}"
            reason = f"worker lost: no heartbeat from {ti.hostname or 'its worker'} for {timeout_seconds} s"
            TaskInstance.fetch_handle_failure_context(ti, error=f"{key}: {reason}", session=session)
            lost.append(key)
        session.commit()
    return lost


def _watch_heartbeats(dag_ids: list[str], timeout_seconds: int, stop: threading.Event) -> None:
    while not stop.wait(min(10.0, timeout_seconds / 3)):
        try:
            for key in fail_lost_tasks(dag_ids, timeout_seconds):
                print(json.dumps({"lost": key}), flush=True)
        except Exception:  # the DB may be briefly unreachable: look again at the next tick
            log.exception("heartbeat watch failed")


def _exit_with_parent(parent: int) -> None:
    """The pipeline command owns this process: when it is gone (killed), stop queueing work."""
    while True:
        time.sleep(2)
        if os.getppid() != parent:
            os._exit(3)


def run(
    dag_ids: list[str], dags_dir: Path, *, use_executor: bool = False, requeue_lost: int | None = None
) -> list[dict[str, Any]]:
    from airflow.dag_processing.dagbag import DagBag

    stop = threading.Event()
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True, name="parent").start()
    if requeue_lost:
        threading.Thread(
            target=_watch_heartbeats, args=(dag_ids, requeue_lost, stop), daemon=True, name="heartbeats"
        ).start()
    try:
        return _run(dag_ids, dags_dir, DagBag, use_executor=use_executor)
    finally:
        stop.set()


def _run(dag_ids: list[str], dags_dir: Path, bag_type: Any, *, use_executor: bool) -> list[dict[str, Any]]:
    bag = bag_type(dag_folder=str(dags_dir))
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

    settings = get_settings()
    requeue = settings.task_heartbeat_timeout if "--requeue-lost" in argv else None
    run(dag_ids, settings.dags_dir, use_executor=use_executor, requeue_lost=requeue)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
