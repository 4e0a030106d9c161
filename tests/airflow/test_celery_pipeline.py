"""The pipeline on CeleryExecutor on this machine: Redis (its own DB number) as broker, Airflow's
metadata DB, the warehouse and the lineage store on throwaway PostgreSQL databases, two Celery workers
started and stopped by ``censustrace pipeline --executor celery`` (what ``make pipeline-celery`` runs).

Bad input: a broker on a dead port is refused before anything starts; a worker killed mid-task (its
whole process group, like a machine dying) loses its task, which is retried on the other worker, and
the run ends with every file loaded or quarantined exactly as in a clean run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from censustrace.census.generator import GeneratorOptions, generate

REDIS_DB = 7  # this test's own Redis database: the machine's Redis is shared
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"


def _redis_or_skip() -> None:
    import redis

    try:
        redis.Redis.from_url(BROKER, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"Redis at {BROKER} unreachable ({exc}) (CI=true: the Celery tests must run)")
        pytest.skip(f"Redis at {BROKER} unreachable: {exc}")


@pytest.fixture
def celery_env(tmp_path: Path, new_postgres_database: Callable[[], str]) -> Iterator[dict[str, str]]:
    import redis

    _redis_or_skip()
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(tmp_path / "home"),
        "CENSUSTRACE_WAREHOUSE_URL": new_postgres_database(),
        "CENSUSTRACE_LINEAGE_URL": new_postgres_database(),
        "CENSUSTRACE_AIRFLOW_DB_URL": new_postgres_database(),
        "CENSUSTRACE_CELERY_BROKER_URL": BROKER,
        "CENSUSTRACE_CELERY_WORKERS": "2",
        "CENSUSTRACE_AIRFLOW_PORT": "8094",
        "CENSUSTRACE_TASK_HEARTBEAT_TIMEOUT": "20",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    yield env
    for proc in _started:  # a failed test must not leave a pipeline (and its workers) running
        if proc.poll() is None:
            proc.terminate()  # SIGTERM: the command stops its workers on the way out
            proc.wait(timeout=120)
    _started.clear()
    redis.Redis.from_url(BROKER).flushdb()  # only our own DB number


def _sample(folder: Path, schools: int) -> dict:
    return generate(
        GeneratorOptions(
            schools=schools, pupils_per_school=25, term="AUT", year=2026, la="330", seed=17,
            fmt="xml", faults=0.0, consents=True, out=folder,
        )
    )  # fmt: skip


_started: list[subprocess.Popen[str]] = []


def _pipeline(env: dict[str, str], sample: Path, *extra: str) -> subprocess.Popen[str]:
    cmd = [sys.executable, "-m", "censustrace.cli", "pipeline", "--executor", "celery", "--json"]
    proc = subprocess.Popen(
        [*cmd, "--sample", str(sample), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _started.append(proc)
    return proc


def _summary(stdout: str) -> dict:
    """The pipeline's --json result: the last (indented) JSON document on standard output."""
    start = stdout.rfind("\n{\n")
    return json.loads(stdout[start + 1 if start >= 0 else 0 :])


def _tasks_of(env: dict[str, str], group: int) -> list[int]:
    """Pids of running task processes that worker ``group`` started (the supervisor, in the worker's
    process group, starts each task process in a session of its own)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(env["CENSUSTRACE_AIRFLOW_DB_URL"])
    try:
        with engine.connect() as conn:
            pids = conn.scalars(
                text("SELECT pid FROM task_instance WHERE state = 'running' AND pid IS NOT NULL")
            ).all()
    except SQLAlchemyError:  # not migrated yet
        return []
    finally:
        engine.dispose()
    found = []
    for pid in map(int, pids):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if group in (os.getpgid(pid), os.getpgid(parent)):
                found.append(pid)
        except (OSError, ValueError, IndexError):
            continue
    return found


def _extract_states(env: dict[str, str]) -> dict[str, str]:
    from sqlalchemy import create_engine, text

    engine = create_engine(env["CENSUSTRACE_WAREHOUSE_URL"])
    try:
        with engine.connect() as conn:
            return dict(conn.execute(text("SELECT original_name, status FROM extracts")).all())  # type: ignore[arg-type]
    finally:
        engine.dispose()


@pytest.mark.dagrun
def test_pipeline_on_celery_runs_every_dag_and_stops_its_workers(
    celery_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = _sample(tmp_path / "sample", schools=2)
    proc = _pipeline(celery_env, tmp_path / "sample")
    stdout, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr[-3000:]
    summary = _summary(stdout)
    assert summary["state"] == "success"
    assert summary["extracts"] == {"loaded": len(manifest["files"])}
    assert summary["shares"], "every share DAG ran"
    home = Path(celery_env["CENSUSTRACE_HOME"])
    logs = [(home / "logs" / f"celery-worker-{n}.log").read_text() for n in (1, 2)]
    # Both workers ran tasks, and both were stopped (their pid files removed, processes gone).
    assert all("succeeded in" in log for log in logs)
    assert not list((home / "celery").glob("worker-*.json"))


@pytest.mark.dagrun
def test_worker_killed_mid_task_its_task_finishes_on_the_other(
    celery_env: dict[str, str], tmp_path: Path
) -> None:
    manifest = _sample(tmp_path / "sample", schools=4)
    proc = _pipeline(celery_env, tmp_path / "sample", "--ingest-only")
    home = Path(celery_env["CENSUSTRACE_HOME"])
    info = home / "celery" / "worker-1.json"
    deadline = time.monotonic() + 900
    killed = False
    while not killed and time.monotonic() < deadline and proc.poll() is None:
        # Worker 1 runs a task: kill the worker and its task processes, as if its machine died.
        group = json.loads(info.read_text())["pid"] if info.exists() else None
        tasks = _tasks_of(celery_env, group) if group else []
        if tasks:
            os.killpg(group, signal.SIGKILL)
            for pid in tasks:
                os.kill(pid, signal.SIGKILL)
            killed = True
        time.sleep(0.5)
    assert killed, "worker 1 never started a task"
    stdout, stderr = proc.communicate(timeout=1800)
    assert proc.returncode == 0, stderr[-3000:]
    assert _summary(stdout)["state"] == "success"
    # The lost task was failed with its reason and retried: every file is loaded, none half-done.
    pipeline_log = (home / "logs" / "pipeline.log").read_text(errors="replace")
    assert '"lost": "census_ingest.' in pipeline_log
    states = _extract_states(celery_env)
    assert sorted(states) == sorted(f["file"] for f in manifest["files"])
    assert set(states.values()) == {"loaded"}


def test_broker_down_is_a_clear_error_before_anything_starts(tmp_path: Path, postgres_url: str) -> None:
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(tmp_path / "home"),
        "CENSUSTRACE_AIRFLOW_DB_URL": postgres_url,
        "CENSUSTRACE_CELERY_BROKER_URL": "redis://:s3cret@127.0.0.1:1/7",
    }
    cmd = [sys.executable, "-m", "censustrace.cli", "pipeline", "--executor", "celery"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert "CT-BROKER" in proc.stderr
    assert "127.0.0.1:1/7" in proc.stderr
    assert "s3cret" not in proc.stderr + proc.stdout  # the broker password is never printed
    assert not (tmp_path / "home" / "sample").exists()  # refused before generating or migrating


def test_celery_needs_a_shared_metadata_db(tmp_path: Path) -> None:
    env = {**os.environ, "CENSUSTRACE_HOME": str(tmp_path / "home")}
    env.pop("CENSUSTRACE_AIRFLOW_DB_URL", None)
    cmd = [sys.executable, "-m", "censustrace.cli", "pipeline", "--executor", "celery"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "CT-CONFIG" in proc.stderr
    assert "CENSUSTRACE_AIRFLOW_DB_URL" in proc.stderr
