"""The ``censustrace`` command: everything done outside the Airflow UI.

Exit codes: 0 ok, 1 the work found problems (e.g. a file quarantined, a DAG run failed), 2 usage or
configuration error. Commands that report results take ``--json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
from collections import Counter
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, OperationalError

from censustrace.audit.cli import audit_app
from censustrace.compliance.cli import article30, notices
from censustrace.config import ConfigError, Settings, get_settings
from censustrace.consent.cli import policy_app
from censustrace.errors import CensustraceError, UsageError
from censustrace.shares.cli import consent_app, disclosures, retention, share, shares_app
from censustrace.viewer.cli import tokens_app, users_app, viewer

if TYPE_CHECKING:
    from censustrace.lineage.model import StepLineage

app = typer.Typer(
    help="censustrace: lawful, checked and traceable onward sharing of school census data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

lineage_app = typer.Typer(help="The lineage store: delivery status, retries, export.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.command("viewer")(viewer)
app.add_typer(policy_app, name="policy")
app.command("share")(share)
app.add_typer(shares_app, name="shares")
app.command("disclosures")(disclosures)
app.command("retention")(retention)
app.add_typer(consent_app, name="consent")
app.add_typer(audit_app, name="audit")
app.command("article30")(article30)
app.command("notices")(notices)


class Term(StrEnum):
    AUT = "AUT"
    SPR = "SPR"
    SUM = "SUM"


class Format(StrEnum):
    xml = "xml"
    ctf = "ctf"
    csv = "csv"


def _settings() -> Settings:
    settings = get_settings()
    settings.ensure_dirs()
    return settings


def _emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        for line in lines:
            typer.echo(line)


def _airflow(settings: Settings, *args: str, log: Path | None = None) -> int:
    """Run the ``airflow`` CLI of this venv against the embedded Airflow of this home."""
    env = {**os.environ, **settings.airflow_env()}
    # airflow standalone starts its parts as `airflow ...` from PATH.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    cmd = [str(Path(bin_dir) / "airflow"), *args]
    if log is None:
        return subprocess.call(cmd, env=env)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        return subprocess.call(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)


@app.command()
def init(as_json: JsonFlag = False) -> None:
    """Create the state folders under CENSUSTRACE_HOME and initialise Airflow's metadata DB."""
    settings = _settings()
    upgraded = _migrate(settings)
    result = {
        "home": str(settings.home),
        "airflow_home": str(settings.airflow_home),
        "status": "ready",
        "instance": settings.instance_name,
        "renamed_datasets": upgraded["renamed"],
    }
    lines = [f"censustrace home ready: {settings.home}"]
    if upgraded["renamed"]:
        lines.append(f"renamed {len(upgraded['renamed'])} datasets to {settings.instance_name}.<table>")
    _emit(result, as_json, lines)


@app.command()
def generate(
    out: Annotated[Path, typer.Option(help="Folder to write the census files and manifest.json to.")],
    schools: Annotated[int, typer.Option(help="Number of schools.")] = 12,
    pupils_per_school: Annotated[int, typer.Option(help="Pupils on roll per school.")] = 340,
    term: Annotated[Term, typer.Option(help="Census term.", case_sensitive=False)] = Term.AUT,
    year: Annotated[int, typer.Option(help="Calendar year of the census day.")] = 2026,
    la: Annotated[str, typer.Option(help="3-digit LA number.")] = "330",
    seed: Annotated[int, typer.Option(help="Random seed: same arguments and seed, same bytes.")] = 1,
    fmt: Annotated[Format, typer.Option("--format", help="File layout.", case_sensitive=False)] = Format.xml,
    faults: Annotated[float, typer.Option(help="Share of pupils with an injected defect (0 to 1).")] = 0.0,
    consents: Annotated[bool, typer.Option("--consents", help="Also write consent/objection files.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Write a synthetic, deterministic census (with known injected faults) for tests and demos."""
    from censustrace.census.generator import GeneratorOptions
    from censustrace.census.generator import generate as run_generator

    options = GeneratorOptions(
        schools=schools,
        pupils_per_school=pupils_per_school,
        term=term.value,
        year=year,
        la=la,
        seed=seed,
        fmt=fmt.value,
        faults=faults,
        consents=consents,
        out=out,
    )
    manifest = run_generator(options)
    files = manifest["files"]
    summary = {
        "out": str(out),
        "files": len(files),
        "pupils": sum(int(f["pupils"]) for f in files),
        "faults": len(manifest["faults"]),
        "manifest": str(out / "manifest.json"),
    }
    _emit(
        summary,
        as_json,
        [f"wrote {summary['files']} files ({summary['pupils']} pupils, {summary['faults']} faults) to {out}"],
    )


@app.command()
def deliver(
    source: Annotated[Path, typer.Argument(help="A generated folder (with manifest.json) or one file.")],
    as_json: JsonFlag = False,
) -> None:
    """Put census files into the landing folder, as a school's upload would.

    A same-named file still waiting there is never replaced: that file is refused (CT-LANDING-EXISTS,
    exit 1) and the others are delivered."""
    from censustrace.intake.landing import LandingError, deliver_into

    settings = _settings()
    if source.is_file():
        files = [source]
    elif (source / "manifest.json").is_file():
        manifest = json.loads((source / "manifest.json").read_text())
        files = [source / f["file"] for f in manifest["files"]]
    elif source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in (".xml", ".csv"))
    else:
        raise UsageError(f"SOURCE {source}: no such file or folder")
    delivered: list[str] = []
    refused: list[dict[str, str]] = []
    for f in files:
        try:
            delivered.append(str(deliver_into(f, settings.landing_dir)))
        except LandingError as exc:
            refused.append({"file": f.name, **exc.as_dict()})
    lines = [f"delivered {len(delivered)} files to {settings.landing_dir}"]
    lines += [f"refused {r['file']}: {r['code']} {r['message']}" for r in refused]
    _emit({"delivered": delivered, "refused": refused}, as_json, lines)
    if refused:
        raise typer.Exit(1)


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """What is waiting, archived and quarantined in this home, and extracts by status."""
    from censustrace.intake.landing import pending_files

    settings = _settings()
    result = {
        "home": str(settings.home),
        "landing": len(pending_files(settings.landing_dir)),
        "archived": sum(1 for p in settings.archive_dir.glob("??/*") if not p.name.startswith(".")),
        "quarantined": sum(1 for _ in settings.quarantine_dir.glob("*/reason.json")),
        "extracts": _extract_counts(settings),
    }
    _emit(result, as_json, [f"{k}: {v}" for k, v in result.items()])


def _extract_counts(settings: Settings) -> dict[str, int]:
    from censustrace.intake.registry import list_extracts

    counts: dict[str, int] = {}
    for row in list_extracts(settings):
        counts[row.status] = counts.get(row.status, 0) + 1
    return dict(sorted(counts.items()))


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Census files to ingest (they are archived first).")],
    as_json: JsonFlag = False,
) -> None:
    """Ingest files now, through the same code path as census_ingest: archive, register, stage,
    validate, publish, in batches of CENSUSTRACE_INGEST_BATCH_FILES (one GX run per suite per batch,
    each file's lineage written in one transaction per batch).

    Each file is first copied into the landing folder's claim folder (your copy is left alone; a
    same-named upload waiting in the landing folder is not touched). One JSON object per
    file with --json. Exit code 1 if any file was quarantined or failed."""
    import uuid

    from censustrace.intake.batch import FAILED, ingest_batch, plan_batches
    from censustrace.intake.landing import claim_copy
    from censustrace.lineage.bulk import ParentRef, emit_bulk, parent_events

    settings = _settings()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"PATH: no such file: {', '.join(missing)}")
    bad = False
    landed = {str(claim_copy(path, settings.landing_dir)): path for path in paths}
    for batch in plan_batches(list(landed), settings.ingest_batch_files, settings.ingest_batch_bytes):
        # The files' runs are children of one run of this command per batch, as of a task in Airflow.
        parent = ParentRef(settings.lineage_namespace, "census_ingest.ingest_batch", str(uuid.uuid4()))
        done = ingest_batch(batch, settings, parent=parent)
        emit_bulk(settings, parent_events(settings, parent, failed=bool(done.failed)))
        for outcome in done.outcomes:
            item = {**outcome.as_dict(), "file": str(landed.get(outcome.file, outcome.file))}
            bad |= item["status"] in ("quarantined", FAILED)
            if as_json:
                typer.echo(json.dumps(item, sort_keys=True))
            else:
                codes = " ".join(e["code"] for e in item["errors"])
                name = Path(item["file"]).name
                typer.echo(f"{name}: {item['status']} {item['extract_id'] or ''} {codes}".rstrip())
    if bad:
        raise typer.Exit(1)


quarantine_app = typer.Typer(
    help="Quarantined extracts: list, show, retry through today's code, discard with a reason.",
    no_args_is_help=True,
)
app.add_typer(quarantine_app, name="quarantine")
ExtractId = Annotated[str, typer.Argument(help="The extract id (ext_...) of the quarantined extract.")]


@quarantine_app.command("list")
def quarantine_list(
    include_all: Annotated[
        bool, typer.Option("--all", help="Also those already retried or discarded.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Quarantined extracts waiting for a decision (retry or discard), oldest first."""
    from censustrace.intake.quarantine_ops import list_quarantined

    entries = [e.as_dict() for e in list_quarantined(_settings(), include_all=include_all)]
    lines = [f"{e['extract_id']}  {e['state']:<9}  {e['file']}  {' '.join(e['codes'])}" for e in entries] or [
        "no quarantined extracts"
    ]
    _emit({"quarantined": entries}, as_json, lines)


@quarantine_app.command("show")
def quarantine_show(extract_id: ExtractId, as_json: JsonFlag = False) -> None:
    """One quarantined extract: its files, every reason (code, message, place), and what was done."""
    from censustrace.intake.quarantine_ops import show_quarantined

    entry = show_quarantined(_settings(), extract_id).as_dict(detail=True)
    lines = [f"{entry['extract_id']} ({entry['state']}): {entry['file']}"]
    lines += [f"  {r['code']}: {r['message']}" for r in entry["reasons"]]
    lines += [
        f"  {a['action']} {a['acted_at']} {a['reason'] or a['result_extract_id'] or ''}"
        for a in entry["actions"]
    ]
    _emit(entry, as_json, lines)


@quarantine_app.command("retry")
def quarantine_retry(extract_id: ExtractId, as_json: JsonFlag = False) -> None:
    """Run the archived original bytes again through today's code, suites and thresholds.

    Prints what ``ingest --json`` prints, one object per file; exit 1 if quarantined again."""
    from censustrace.intake.quarantine_ops import retry

    settings = _settings()
    done = retry(settings, extract_id)
    for name, step in done.steps:
        _emit_retry_step(settings, name, step)
    for outcome in done.outcomes:
        result = outcome.as_dict()
        if as_json:
            typer.echo(json.dumps(result, sort_keys=True))
        else:
            codes = " ".join(e["code"] for e in result["errors"])
            typer.echo(f"{result['file']}: {result['status']} {result['extract_id']} {codes}".rstrip())
    if done.status == "quarantined":
        raise typer.Exit(1)


def _emit_retry_step(settings: Settings, name: str, step: StepLineage) -> None:
    from censustrace.lineage.emit import emit_step

    job = "censustrace.quarantine.retry" if name == "retry" else f"census_ingest.ingest.{name}"
    emit_step(settings, job, step)


@quarantine_app.command("discard")
def quarantine_discard(
    extract_id: ExtractId,
    reason: Annotated[str, typer.Option("--reason", help="Why it will not be retried (recorded).")],
    as_json: JsonFlag = False,
) -> None:
    """Record that a quarantined extract will not be retried, and why (its bytes are kept)."""
    from censustrace.intake.quarantine_ops import discard

    entry = discard(_settings(), extract_id, reason).as_dict(detail=True)
    _emit(entry, as_json, [f"{entry['extract_id']}: discarded ({reason})"])


@app.command()
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

    settings = _settings()
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
    _migrate(settings)
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
    counts = _extract_counts(settings)
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
        _emit(result, as_json, lines)
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
    _emit(result, as_json, lines)
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


@app.command()
def backup(
    folder: Annotated[Path, typer.Argument(help="New, empty folder for the dumps and manifest.json.")],
    as_json: JsonFlag = False,
) -> None:
    """Back up the warehouse and the lineage store (SQLite online copy or pg_dump), with a manifest."""
    from censustrace.ops.backup import backup as run_backup

    manifest = run_backup(_settings(), folder)
    lines = [
        f"{i['store']}: {i['file']} ({i['size']:,} bytes, revision {i['revision']})"
        for i in manifest["stores"]
    ]
    _emit(manifest, as_json, lines)


@app.command()
def restore(
    folder: Annotated[Path, typer.Argument(help="A folder written by `censustrace backup`.")],
    as_json: JsonFlag = False,
) -> None:
    """Restore the warehouse and the lineage store from a backup (stop the pipeline first)."""
    from censustrace.ops.backup import restore as run_restore

    result = run_restore(_settings(), folder)
    _emit(result, as_json, [f"restored {', '.join(result['restored'])} from {folder}"])


@app.command()
def rekey(
    new_secret_file: Annotated[
        Path, typer.Option(help="File holding the new pupil-key secret (never pass a secret as an argument).")
    ],
    as_json: JsonFlag = False,
) -> None:
    """Rotate the pupil-key secret: re-key every stored pupil key so past disclosures stay findable."""
    from censustrace.ops.rekey import rekey as run_rekey

    try:
        secret = new_secret_file.read_bytes()
    except OSError as exc:
        raise UsageError(f"--new-secret-file: cannot read {new_secret_file} ({exc.strerror})") from None
    result = run_rekey(_settings(), secret)
    _emit(result, as_json, [f"re-keyed {result['pupils']} pupils; secret: {result['secret']}"])


def _migrate(settings: Settings) -> dict[str, Any]:
    """Bring Airflow's metadata DB, the lineage store and the warehouse to the current schema, then
    upgrade the data a previous release left (dataset names): see docs/operations.md, Upgrading."""
    from censustrace.audit.heads import publish_heads
    from censustrace.audit.register import CHAIN_REVISION, seal_existing
    from censustrace.lineage.store.db import make_engine, upgrade
    from censustrace.lineage.store.upgrades import rename_legacy_datasets
    from censustrace.warehouse.db import current_revision, warehouse_engine
    from censustrace.warehouse.db import make_engine as make_warehouse_engine
    from censustrace.warehouse.db import upgrade as upgrade_warehouse

    log = settings.home / "logs" / "init.log"
    rc = _airflow(settings, "db", "migrate", log=log)
    if rc != 0:
        raise CensustraceError(f"airflow db migrate failed (exit {rc}); see {log}", code="CT-INIT")
    upgrade(settings.lineage_db_url)
    plain = make_warehouse_engine(settings.warehouse_db_url)  # warehouse_engine() would migrate first
    try:
        before = current_revision(plain)
    finally:
        plain.dispose()
    upgrade_warehouse(settings.warehouse_db_url)
    if before is not None and before < CHAIN_REVISION:
        # A home made before the audit trail: its finished shares enter the chain now, once.
        seal_existing(warehouse_engine(settings.warehouse_db_url))
        publish_heads(settings)
    engine = make_engine(settings.lineage_db_url)
    try:
        return rename_legacy_datasets(engine, settings.instance_name)
    finally:
        engine.dispose()


@app.command()
def serve() -> None:
    """Serve the Airflow UI (scheduler, API server, DAG processor, triggerer) and the viewer."""
    from censustrace.viewer.cli import ensure_demo_login

    settings = _settings()
    user, password = _ui_login(settings)
    viewer_user, viewer_password = ensure_demo_login(settings)
    typer.echo(f"Airflow UI:  http://localhost:{settings.airflow_port}  login: {user} / {password}")
    typer.echo(f"Viewer:      http://localhost:{settings.airflow_port}/censustrace/  (inside Airflow)")
    typer.echo(
        f"Viewer:      http://127.0.0.1:{settings.api_port}/  login: {viewer_user} / "
        f"{viewer_password or '(your own viewer user)'}"
    )
    api_server = subprocess.Popen(
        [sys.executable, "-m", "censustrace.cli", "viewer", "--port", str(settings.api_port)],
        env={**os.environ, "CENSUSTRACE_HOME": str(settings.home)},
    )
    try:
        rc = _airflow(settings, "standalone")
    finally:
        api_server.terminate()
        api_server.wait(timeout=30)
    raise typer.Exit(rc)


def _ui_login(settings: Settings) -> tuple[str, str]:
    """The embedded Airflow's login: generated once per home, kept where Airflow's simple auth reads it."""
    import secrets

    path = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    users = json.loads(path.read_text()) if path.exists() else {}
    if "admin" not in users:
        users["admin"] = secrets.token_urlsafe(12)
        path.write_text(json.dumps(users))
        path.chmod(0o600)
    return "admin", str(users["admin"])


@app.command(
    "airflow",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def airflow_cli(ctx: typer.Context) -> None:
    """Run an airflow CLI command on this home's Airflow (e.g. `censustrace airflow dags list`)."""
    raise typer.Exit(_airflow(_settings(), *ctx.args))


@app.command()
def env() -> None:
    """Print shell exports for this home's embedded Airflow (eval "$(censustrace env)")."""
    for key, value in sorted(_settings().airflow_env().items()):
        typer.echo(f"export {key}={shlex.quote(value)}")


def _transport(settings: Settings) -> Any:
    from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

    return CensustraceTransport(CensustraceTransportConfig.from_dict(settings.openlineage_transport()))


@lineage_app.command("status")
def lineage_status(as_json: JsonFlag = False) -> None:
    """Lineage events waiting in the outbox (pending) or refused by a destination (failed)."""
    from censustrace.lineage.outbox import Outbox

    settings = _settings()
    entries = [e.as_dict() for e in Outbox(settings.outbox_dir).entries()]
    result = {
        "destinations": ["store", "http"] if settings.lineage_http_url else ["store"],
        "pending": sum(1 for e in entries if e["state"] == "pending"),
        "failed": sum(1 for e in entries if e["state"] == "failed"),
        "entries": entries,
    }
    lines = [f"pending: {result['pending']}, failed: {result['failed']}"]
    lines += [
        f"  {e['state']:7} {e['destination']:5} {e['file']} x{e['attempts']}: {e['last_error']}"
        for e in entries
    ]
    _emit(result, as_json, lines)
    if result["pending"] or result["failed"]:
        raise typer.Exit(1)


@lineage_app.command("flush")
def lineage_flush(as_json: JsonFlag = False) -> None:
    """Retry delivery of every pending lineage event now."""
    result = _transport(_settings()).flush()
    _emit(result, as_json, [f"{dest}: {counts}" for dest, counts in result.items()])
    if any(counts["pending"] or counts["rejected"] for counts in result.values()):
        raise typer.Exit(1)


@lineage_app.command("export")
def lineage_export(
    out: Annotated[Path | None, typer.Option(help="Write to this file instead of standard output.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every stored raw event, exactly as received, one JSON document per line."""
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events

    engine = make_engine(_settings().lineage_db_url)
    if out is None:
        for line in export_raw_events(engine):
            typer.echo(line)
        return
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for line in export_raw_events(engine):
            fh.write(line + "\n")
            count += 1
    _emit({"events": count, "out": str(out)}, as_json, [f"exported {count} events to {out}"])


@app.command()
def trace(
    target: Annotated[
        str,
        typer.Argument(
            help="Anything you hold: a share id, an outbound file path, an extract id, a received file's "
            "sha256 (or a copy of the file), dataset:<namespace>:<name> or a dataset name; @VERSION optional."
        ),
    ],
    version: Annotated[str | None, typer.Option(help="Exact dataset version (default: latest).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Trace it back to the exact census files it came from, and forward to the shares made from it."""
    from censustrace.lineage.store.db import make_engine
    from censustrace.shares.traceback import trace_any

    settings = _settings()
    engine = make_engine(settings.lineage_db_url)
    try:
        result = trace_any(settings, engine, target, version)
    finally:
        engine.dispose()
    resolved = result["resolved"]
    lines = [f"{resolved['kind']} {target}: {result['target']['id']}"]
    lines.append(f"comes from {len(result['sources'])} received file(s):")
    lines += [
        f"  {s['original_name'] or s['path']} sha256={s['sha256'] or s['version']} at {s['received_at']}"
        for s in result["sources"]
    ]
    lines.append(f"went into {len(result['consumers'])} share(s):")
    lines += [
        f"  {c['share_id']} to {c['recipient']} ({c['agreement']}) sha256={c['sha256']}"
        for c in result["consumers"]
    ]
    _emit(result, as_json, lines)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default CENSUSTRACE_API_PORT).")
    ] = None,
) -> None:
    """Serve the lineage HTTP API (OpenLineage intake, Marquez-compatible queries) behind the viewer's
    login and tokens: the same app as `censustrace viewer`."""
    from censustrace.viewer.cli import serve_viewer

    settings = _settings()
    serve_viewer(settings, host, port or settings.api_port)


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        parts.append(f"CENSUSTRACE_{field.upper()}: {err['msg']}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every failure to a one-line message and the documented exit code."""
    from censustrace.lineage.spec import require_schemas

    try:
        require_schemas()
        rv = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.exceptions.TyperException as exc:
        # Typer's own usage errors (bad option value, unknown command): message and usage, exit 2.
        show = getattr(exc, "show", None)
        if show is None:
            typer.echo(str(exc), err=True)
        else:
            show()
        return 2
    except ValidationError as exc:
        typer.echo(f"error CT-CONFIG: {_settings_error(exc)}", err=True)
        return 2
    except ConfigError as exc:
        typer.echo(f"error CT-CONFIG: {exc}", err=True)
        return 2
    except CensustraceError as exc:
        typer.echo(f"error {exc}", err=True)
        return exc.exit_code
    except OperationalError:
        typer.echo(f"error CT-DB-UNREACHABLE: {_unreachable_databases()}", err=True)
        return 1
    except DBAPIError as exc:
        # Reached, but it refused the statement (e.g. a database that is not censustrace's): one line.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        typer.echo(f"error CT-DB-ERROR: {type(exc.orig).__name__}: {reason[:300]}", err=True)
        return 1
    return rv if isinstance(rv, int) else 0


def _unreachable_databases() -> str:
    """Which configured database cannot be reached, by setting name, with the password hidden."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    settings = _settings()
    problems = []
    for variable, url in (
        ("CENSUSTRACE_WAREHOUSE_URL", settings.warehouse_db_url),
        ("CENSUSTRACE_LINEAGE_URL", settings.lineage_db_url),
    ):
        parsed = make_url(url)
        args = {"connect_timeout": 5} if parsed.get_backend_name() == "postgresql" else {}
        engine = create_engine(parsed, connect_args=args)
        try:
            with engine.connect():
                pass
        except OperationalError as exc:
            # The driver's first line names user, host and database; never the password.
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            problems.append(f"{variable} ({parsed.render_as_string(hide_password=True)}): {reason}")
        finally:
            engine.dispose()
    return "; ".join(problems) or "a database connection failed and then recovered: run the command again"


if __name__ == "__main__":
    sys.exit(main())
