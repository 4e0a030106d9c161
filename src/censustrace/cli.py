"""The ``censustrace`` command: everything done outside the Airflow UI.

Exit codes: 0 ok, 1 the work found problems (e.g. a file quarantined, a DAG run failed), 2 usage or
configuration error. Commands that report results take ``--json``.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from censustrace.config import ConfigError, Settings, get_settings
from censustrace.errors import CensustraceError, UsageError

app = typer.Typer(
    help="censustrace: lawful, checked and traceable onward sharing of school census data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]

lineage_app = typer.Typer(help="The lineage store: delivery status, retries, export.", no_args_is_help=True)
app.add_typer(lineage_app, name="lineage")


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
    _migrate(settings)
    result = {"home": str(settings.home), "airflow_home": str(settings.airflow_home), "status": "ready"}
    _emit(result, as_json, [f"censustrace home ready: {settings.home}"])


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
    """Put census files into the landing folder, as a school's upload would."""
    from censustrace.intake.archive import copy_into

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
    delivered = [str(copy_into(f, settings.landing_dir)) for f in files]
    _emit({"delivered": delivered}, as_json, [f"delivered {len(delivered)} files to {settings.landing_dir}"])


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
    """Ingest files now, through the same code path as census_ingest: archive, register, stage, publish.

    Each file is first copied into the landing folder (your copy is left alone). One JSON object per
    file with --json. Exit code 1 if any file was quarantined."""
    from censustrace.intake.archive import copy_into
    from censustrace.intake.ingest import ingest_file

    settings = _settings()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise UsageError(f"PATH: no such file: {', '.join(missing)}")
    quarantined = False
    for path in paths:
        outcome = {
            **ingest_file(copy_into(path, settings.landing_dir), settings).as_dict(),
            "file": str(path),
        }
        quarantined |= outcome["status"] == "quarantined"
        if as_json:
            typer.echo(json.dumps(outcome, sort_keys=True))
        else:
            codes = " ".join(e["code"] for e in outcome["errors"])
            typer.echo(f"{path.name}: {outcome['status']} {outcome['extract_id'] or ''} {codes}".rstrip())
    if quarantined:
        raise typer.Exit(1)


@app.command()
def pipeline(
    sample: Annotated[
        Path | None, typer.Option(help="Generated sample folder (default: $CENSUSTRACE_HOME/sample).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Set up, generate the sample census if missing, deliver it and run the pipeline DAGs once."""
    settings = _settings()
    _migrate(settings)
    sample = sample or settings.home / "sample"
    if not (sample / "manifest.json").is_file():
        generate(out=sample, schools=12, pupils_per_school=340, faults=0.01, consents=True, as_json=as_json)
    deliver(sample, as_json=as_json)
    log = settings.home / "logs" / "pipeline.log"
    rc = _airflow(settings, "dags", "test", "census_ingest", log=log)
    counts = _extract_counts(settings)
    result = {"dag": "census_ingest", "state": "success" if rc == 0 else "failed", "extracts": counts}
    result["log"] = str(log)
    summary = ", ".join(f"{n} {state}" for state, n in counts.items()) or "no files"
    _emit(result, as_json, [f"census_ingest: {result['state']}; extracts: {summary} (log: {log})"])
    if rc != 0:
        raise typer.Exit(1)


def _migrate(settings: Settings) -> None:
    """Bring Airflow's metadata DB, the lineage store and the warehouse to the current schema."""
    from censustrace.lineage.store.db import upgrade
    from censustrace.warehouse.db import upgrade as upgrade_warehouse

    log = settings.home / "logs" / "init.log"
    rc = _airflow(settings, "db", "migrate", log=log)
    if rc != 0:
        raise CensustraceError(f"airflow db migrate failed (exit {rc}); see {log}", code="CT-INIT")
    upgrade(settings.lineage_db_url)
    upgrade_warehouse(settings.warehouse_db_url)


@app.command()
def serve() -> None:
    """Serve the Airflow UI (scheduler, API server, DAG processor, triggerer) and the lineage API."""
    settings = _settings()
    user, password = _ui_login(settings)
    typer.echo(f"Airflow UI:  http://localhost:{settings.airflow_port}  login: {user} / {password}")
    typer.echo(
        f"Lineage API: http://127.0.0.1:{settings.api_port}/docs  (local only until the viewer's login)"
    )
    api_server = subprocess.Popen(
        [sys.executable, "-m", "censustrace.cli", "api", "--port", str(settings.api_port)],
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
        str, typer.Argument(help="dataset:<namespace>:<name>, or a dataset name; @VERSION optional.")
    ],
    version: Annotated[str | None, typer.Option(help="Exact dataset version (default: latest).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Trace an output back to the exact census files it came from."""
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.traceback import trace_target

    result = trace_target(make_engine(_settings().lineage_db_url), target, version)
    lines = [f"{result['target']['id']} comes from {len(result['sources'])} received file(s):"]
    lines += [
        f"  {s['original_name'] or s['path']} sha256={s['sha256'] or s['version']} at {s['received_at']}"
        for s in result["sources"]
    ]
    _emit(result, as_json, lines)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default CENSUSTRACE_API_PORT).")
    ] = None,
) -> None:
    """Serve the lineage HTTP API (OpenLineage intake, Marquez-compatible queries, /docs)."""
    import uvicorn

    from censustrace.lineage.api import create_app

    settings = _settings()
    uvicorn.run(create_app(settings), host=host, port=port or settings.api_port, log_level="info")


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        parts.append(f"CENSUSTRACE_{field.upper()}: {err['msg']}")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps every failure to a one-line message and the documented exit code."""
    try:
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
        typer.echo(f"configuration error: {_settings_error(exc)}", err=True)
        return 2
    except ConfigError as exc:
        typer.echo(f"configuration error: {exc}", err=True)
        return 2
    except CensustraceError as exc:
        typer.echo(f"error {exc}", err=True)
        return exc.exit_code
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
