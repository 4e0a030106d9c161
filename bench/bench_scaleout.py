"""Scale-out: the same census set through census_ingest on the LocalExecutor with parallelism 1, then 2,
or (``--executor celery``) on the CeleryExecutor with 1, then 2 Celery workers (Redis as broker).

Each run gets a fresh home and fresh PostgreSQL databases (Airflow metadata DB, warehouse, lineage
store) and runs ``censustrace pipeline --ingest-only --use-executor --create-databases``: Airflow's API
server plus the LocalExecutor's workers, one mapped task instance per file, exactly as in production
without Docker. Reported: the DAG run's duration (start to end, from Airflow), pupils per second, and
the speed-up of parallelism 2 over 1. The databases are dropped afterwards.

    .venv/bin/python bench/bench_scaleout.py --schools 24 --pupils 340
    .venv/bin/python bench/bench_scaleout.py --executor celery --schools 1200 --pupils 150

With Celery, each level's workers get ``CENSUSTRACE_CELERY_WORKER_CONCURRENCY`` task slots each (default
1, so that 1 and 2 workers are 1 and 2 slots, as the LocalExecutor's parallelism levels are); the broker
is ``--broker`` (its own Redis database number, flushed before each run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import subprocess
import sys
import tempfile
from pathlib import Path

from sqlalchemy import create_engine, text

SERVER = os.environ.get(
    "CENSUSTRACE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


def run(
    parallelism: int, sample: Path, server: str, executor: str = "local", broker: str = ""
) -> dict[str, object]:
    tag = secrets.token_hex(4)
    names = {k: f"censustrace_bench_{k}_{tag}" for k in ("warehouse", "lineage", "airflow")}
    base = server.rsplit("/", 1)[0]
    home = Path(tempfile.mkdtemp(prefix=f"scaleout-p{parallelism}-"))
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(home),
        "CENSUSTRACE_WAREHOUSE_URL": f"{base}/{names['warehouse']}",
        "CENSUSTRACE_LINEAGE_URL": f"{base}/{names['lineage']}",
        "CENSUSTRACE_AIRFLOW_DB_URL": f"{base}/{names['airflow']}",
        "CENSUSTRACE_AIRFLOW_PARALLELISM": str(parallelism),
        "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    }
    how = ["--use-executor"]
    if executor == "celery":
        import redis

        redis.Redis.from_url(broker).flushdb()
        env |= {
            "CENSUSTRACE_CELERY_BROKER_URL": broker,
            "CENSUSTRACE_CELERY_WORKERS": str(parallelism),
            "CENSUSTRACE_AIRFLOW_PARALLELISM": str(max(parallelism, 2)),
            "CENSUSTRACE_AIRFLOW_PORT": "8097",
        }
        env.setdefault("CENSUSTRACE_CELERY_WORKER_CONCURRENCY", "1")
        how = ["--executor", "celery"]
    cmd = [sys.executable, "-m", "censustrace.cli", "pipeline", "--ingest-only", *how,
           "--create-databases", "--sample", str(sample), "--json"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        # The DAG runner's one line per run (state, task counts, seconds from Airflow) is in the log.
        log = (home / "logs" / "pipeline.log").read_text(encoding="utf-8", errors="replace")
        lines = [ln for ln in log.splitlines() if ln.startswith('{"dag"')]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"pipeline failed (p={parallelism}): {proc.stderr[-2000:]}")
        return dict(json.loads(lines[-1]))
    finally:
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in names.values():
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_naive(sample: Path, pupils: int) -> dict[str, float]:
    """``bench_batch_ingest``'s naive script (ElementTree, pandas, one GX run, ``to_sql``) on the sample's
    files, in a fresh process: its work time (imports excluded) and pupils per second."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_batch_ingest as batch

    work = Path(tempfile.mkdtemp(prefix="scaleout-naive-"))
    files = sorted(str(p) for p in sample.iterdir() if p.suffix == ".xml")
    result, wall = batch._child(
        batch.NAIVE, [str(work / "archive"), str(work / "naive.db"), *files], batch._env(work / "home")
    )
    seconds = float(result["work_s"])
    return {
        "seconds": round(seconds, 1),
        "with_imports_s": round(wall, 1),
        "pupils_per_s": round(pupils / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--schools", type=int, default=24)
    parser.add_argument("--pupils", type=int, default=340, help="pupils per school")
    parser.add_argument("--server", default=SERVER, help="a PostgreSQL URL on the server to use")
    parser.add_argument(
        "--levels", default="1,2", help="parallelism levels (Celery: workers), comma-separated"
    )
    parser.add_argument("--executor", choices=("local", "celery"), default="local")
    parser.add_argument(
        "--naive", action="store_true", help="also run bench_batch_ingest's naive script on the same files"
    )
    parser.add_argument(
        "--broker", default="redis://127.0.0.1:6379/9", help="Celery broker (its own DB number)"
    )
    args = parser.parse_args()
    sample = Path(tempfile.mkdtemp(prefix="scaleout-sample-"))
    subprocess.run(
        [sys.executable, "-m", "censustrace.cli", "generate", "--out", str(sample), "--schools",
         str(args.schools), "--pupils-per-school", str(args.pupils), "--json"],
        check=True, capture_output=True,
    )  # fmt: skip
    pupils = args.schools * args.pupils
    results: dict[int, dict[str, float]] = {}
    for parallelism in [int(x) for x in args.levels.split(",")]:
        result = run(parallelism, sample, args.server, args.executor, args.broker)
        seconds = float(str(result["seconds"]))
        results[parallelism] = {"seconds": seconds, "pupils_per_s": round(pupils / seconds)}
        label = "workers" if args.executor == "celery" else "parallelism"
        print(
            f"{label} {parallelism}: {seconds:.1f} s, {pupils / seconds:,.0f} pupils/s, {result}", flush=True
        )
    speedup = results[1]["seconds"] / results[2]["seconds"] if {1, 2} <= set(results) else 0.0
    naive = run_naive(sample, pupils) if args.naive else None
    if naive:
        for level in results.values():
            level["vs_naive"] = round(level["pupils_per_s"] / naive["pupils_per_s"], 2)
        print(f"naive script on the same files: {naive}", flush=True)
    summary = {"machine": platform.platform(), "cpus": os.cpu_count(), "executor": args.executor,
               "files": args.schools,
               "pupils": pupils, "runs": results, "speedup": round(speedup, 2), "naive": naive}  # fmt: skip
    print(json.dumps(summary, default=str))


if __name__ == "__main__":
    main()
