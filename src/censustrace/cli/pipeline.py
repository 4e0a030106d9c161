"""``censustrace pipeline``: set up, generate and deliver the sample, and run the DAGs once."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censustrace.cli.common import JsonFlag, Term, emit, load_settings
from censustrace.cli.ingest import deliver, extract_counts, generate
from censustrace.cli.ops import migrate
from censustrace.errors import CensustraceError, UsageError

if TYPE_CHECKING:
    from censustrace.config import Settings


def pipeline(
    sample: Annotated[
        Path | None, typer.Option(help="Generated sample folder (default: $CENSUSTRACE_HOME/sample).")
    ] = None,
    use_executor: Annotated[
        bool,
        typer.Option("--use-executor", help="Run tasks on the LocalExecutor (same as --executor local)."),
    ] = False,
    executor: Annotated[
        str | None,
        typer.Option(
            help="inline (in the runner, the default), local (LocalExecutor) or celery (CeleryExecutor: "
            "starts and stops CENSUSTRACE_CELERY_WORKERS workers on CENSUSTRACE_CELERY_BROKER_URL)."
        ),
    ] = None,
    create_databases: Annotated[
        bool,
        typer.Option("--create-databases", help="Create missing PostgreSQL databases named in the URLs."),
    ] = False,
    ingest_only: Annotated[
        bool, typer.Option("--ingest-only", help="Run census_ingest only (no consents, no shares).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set up, generate the sample census if missing, deliver it and run the pipeline DAGs once:
    census_ingest, then the sample's consent files, then one run of every share DAG."""
    from censustrace.airflow.share_dags import share_dag_specs
    from censustrace.census.codes import term_containing
    from censustrace.config import _default_policies_dir
    from censustrace.consent.clock import release_day
    from censustrace.consent.demo import render_demo_policies
    from censustrace.consent.objections import ingest_consent_file
    from censustrace.lineage.emit import emit_step

    settings = load_settings()
    mode = executor or ("local" if use_executor else "inline")
    if mode not in ("inline", "local", "celery"):
        raise UsageError(f"--executor {mode}: expected inline, local or celery")
    if mode == "celery":
        from censustrace.airflow.workers import check_broker, check_metadata_db

        # Before anything changes: a dead broker or a SQLite metadata DB is a clear error, not a hang.
        check_metadata_db(settings)
        check_broker(settings.celery_broker_url)
    if create_databases:
        _create_databases(settings)
    migrate(settings)
    today = release_day()
    term, year = term_containing(today)
    shipped = _default_policies_dir({"home": str(settings.home)}).resolve()
    demo_dir = settings.home / "policies"
    # The checkout's demo agreements, dated onto the academic year containing today (docs/policies.md);
    # an installed package's policies already live in the home and are used as they are.
    if settings.policies_dir.resolve() == shipped != demo_dir.resolve():
        demo = render_demo_policies(settings.policies_dir, demo_dir, today)
        settings = settings.model_copy(update={"policies_dir": demo})
        os.environ["CENSUSTRACE_POLICIES_DIR"] = str(demo)  # for the Airflow runs below
    sample = sample or settings.home / "sample"
    if not (sample / "manifest.json").is_file():
        generate(
            out=sample,
            schools=12,
            pupils_per_school=340,
            term=Term(term),
            year=year,
            faults=0.01,
            consents=True,
            as_json=as_json,
        )
    # Files of the same names still waiting from an earlier run are refused: this run ingests those.
    with contextlib.suppress(typer.Exit):
        deliver(sample, as_json=as_json)
    log = settings.home / "logs" / "pipeline.log"
    runs = _run_dags(settings, ["census_ingest"], log, executor=mode)
    counts = extract_counts(settings)
    ingest = runs.get("census_ingest", {})
    ingest_state = str(ingest.get("state", "failed"))
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no files"
    lines = [f"census_ingest: {ingest_state} in {ingest.get('seconds')} s; extracts: {summary}"]
    result: dict[str, Any] = {
        "dag": "census_ingest",
        "state": ingest_state,
        "seconds": ingest.get("seconds"),
        "extracts": counts,
        "log": str(log),
        "executor": mode,
    }
    if mode == "celery":
        from censustrace.airflow.workers import redacted

        lines.append(
            f"executor: celery, {settings.celery_workers} workers x {settings.celery_worker_concurrency} "
            f"slots, broker {redacted(settings.celery_broker_url)} (worker logs in {log.parent})"
        )
    if ingest_only:
        emit(result, as_json, lines)
        raise typer.Exit(0 if ingest_state == "success" else 1)
    manifest = json.loads((sample / "manifest.json").read_text(encoding="utf-8"))
    consents: Counter[str] = Counter()
    for consent in manifest.get("consents", []):
        outcome = ingest_consent_file(sample / consent["file"], settings)
        emit_step(settings, "censustrace.consent_ingest", outcome.lineage)
        consents.update({f"files_{outcome.status}": 1, "decisions_applied": outcome.rows_applied})
        consents["rows_rejected"] += outcome.rows_rejected
    lines.append("consents: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(consents.items())))
    share_dags = [spec.dag_id for spec in share_dag_specs(settings.policies_dir, today)]
    runs |= _run_dags(settings, share_dags, log, executor=mode)
    shares = {dag: str(runs.get(dag, {}).get("state", "failed")) for dag in share_dags}
    lines.append(
        "shares: "
        + ", ".join(f"{n} {state}" for state, n in sorted(Counter(shares.values()).items()))
        + " (a failed share DAG is a refused agreement: see the register)"
    )
    result |= {"consents": dict(consents), "shares": shares}
    lines.append(f"log: {log}")
    emit(result, as_json, lines)
    if ingest_state != "success":
        raise typer.Exit(1)


def _run_dags(
    settings: Settings, dag_ids: list[str], log: Path, *, executor: str = "inline"
) -> dict[str, dict[str, Any]]:
    """Run DAGs once each in one Airflow process (``censustrace.airflow.runner``): dag id ->
    ``{"state", "tasks", "seconds"}``. ``executor``: inline, local or celery (workers started here)."""
    from contextlib import ExitStack

    from censustrace.airflow.workers import CeleryWorkers

    airflow_executor = "CeleryExecutor" if executor == "celery" else "LocalExecutor"
    env = {**os.environ, **settings.airflow_env(airflow_executor)}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [sys.executable, "-m", "censustrace.airflow.runner", *dag_ids]
    if executor != "inline":
        cmd.append("--use-executor")
    if executor == "celery":
        cmd.append("--requeue-lost")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh, ExitStack() as stack:
        if executor != "inline":
            # The executor's workers run each task as its own process that talks to the API server.
            server = _start_api_server(settings, env, fh)
            stack.callback(_stop, server)
        if executor == "celery":
            stack.enter_context(CeleryWorkers(settings, env))
        proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=fh, check=False)
        fh.write(proc.stdout)
    states: dict[str, dict[str, Any]] = {}
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith('{"dag"'):
            item = json.loads(line)
            states[item["dag"]] = item
    if proc.returncode != 0:
        raise CensustraceError(
            f"the DAG runner stopped (exit {proc.returncode}) after {len(states)} of {len(dag_ids)} DAGs; "
            f"see {log}",
            code="CT-PIPELINE",
        )
    return states


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _start_api_server(settings: Settings, env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    """Airflow's API server (execution API for the executor's workers), up and answering."""
    import time

    import httpx

    airflow = str(Path(sys.executable).parent / "airflow")
    server = subprocess.Popen(
        [airflow, "api-server", "--port", str(settings.airflow_port)], env=env, stdout=log, stderr=log
    )
    url = f"http://localhost:{settings.airflow_port}/api/v2/version"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CensustraceError(
                f"Airflow's API server stopped (exit {server.returncode}); is port "
                f"{settings.airflow_port} free (CENSUSTRACE_AIRFLOW_PORT)?",
                code="CT-PIPELINE",
            )
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(1)
    server.terminate()
    raise CensustraceError("Airflow's API server did not answer within 120 s", code="CT-PIPELINE")


def _create_databases(settings: Settings) -> None:
    """Create the PostgreSQL databases named by the warehouse, lineage and Airflow URLs if missing."""
    from censustrace.db import create_postgres_database

    for url in (settings.warehouse_db_url, settings.lineage_db_url, settings.airflow_metadata_url):
        create_postgres_database(url)
