"""Looking after a home: ``init``, ``backup``, ``restore``, ``rekey``, ``airflow`` and ``env``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censustrace.cli.common import JsonFlag, emit, load_settings, run_airflow
from censustrace.errors import CensustraceError, UsageError

if TYPE_CHECKING:
    from censustrace.config import Settings


def init(as_json: JsonFlag = False) -> None:
    """Create the state folders under CENSUSTRACE_HOME and initialise Airflow's metadata DB."""
    settings = load_settings()
    upgraded = migrate(settings)
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
    emit(result, as_json, lines)


def backup(
    folder: Annotated[Path, typer.Argument(help="New, empty folder for the dumps and manifest.json.")],
    as_json: JsonFlag = False,
) -> None:
    """Back up the warehouse and the lineage store (SQLite online copy or pg_dump), with a manifest."""
    from censustrace.ops.backup import backup as run_backup

    manifest = run_backup(load_settings(), folder)
    lines = [
        f"{i['store']}: {i['file']} ({i['size']:,} bytes, revision {i['revision']})"
        for i in manifest["stores"]
    ]
    emit(manifest, as_json, lines)


def restore(
    folder: Annotated[Path, typer.Argument(help="A folder written by `censustrace backup`.")],
    as_json: JsonFlag = False,
) -> None:
    """Restore the warehouse and the lineage store from a backup (stop the pipeline first)."""
    from censustrace.ops.backup import restore as run_restore

    result = run_restore(load_settings(), folder)
    emit(result, as_json, [f"restored {', '.join(result['restored'])} from {folder}"])


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
    result = run_rekey(load_settings(), secret)
    emit(result, as_json, [f"re-keyed {result['pupils']} pupils; secret: {result['secret']}"])


def migrate(settings: Settings) -> dict[str, Any]:
    """Bring Airflow's metadata DB, the lineage store (and the viewer's tables beside it) and the warehouse
    to the current schema, then upgrade the data a previous release left (dataset names): see
    docs/operations.md, Upgrading."""
    from censustrace.audit.heads import publish_heads
    from censustrace.audit.register import CHAIN_REVISION, seal_existing
    from censustrace.lineage.store.db import make_engine, upgrade
    from censustrace.lineage.store.upgrades import rename_legacy_datasets
    from censustrace.viewer.db import upgrade as upgrade_viewer
    from censustrace.warehouse.db import current_revision, warehouse_engine
    from censustrace.warehouse.db import make_engine as make_warehouse_engine
    from censustrace.warehouse.db import upgrade as upgrade_warehouse

    log = settings.home / "logs" / "init.log"
    rc = run_airflow(settings, "db", "migrate", log=log)
    if rc != 0:
        raise CensustraceError(f"airflow db migrate failed (exit {rc}); see {log}", code="CT-INIT")
    upgrade(settings.lineage_db_url)
    upgrade_viewer(settings.lineage_db_url)  # the viewer's tables, in the same database
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


#: ``censustrace airflow ...`` hands every further argument to Airflow's own CLI.
AIRFLOW_PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True}


def airflow_cli(ctx: typer.Context) -> None:
    """Run an airflow CLI command on this home's Airflow (e.g. `censustrace airflow dags list`)."""
    raise typer.Exit(run_airflow(load_settings(), *ctx.args))


def env() -> None:
    """Print shell exports for this home's embedded Airflow (eval "$(censustrace env)")."""
    for key, value in sorted(load_settings().airflow_env().items()):
        typer.echo(f"export {key}={shlex.quote(value)}")
