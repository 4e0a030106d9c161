"""What every command module shares: the ``--json`` option, the census enums, settings, printing, the
embedded Airflow, and the mapping of failures to one line and an exit code.

Light on purpose: building the command tree for ``censustrace --help`` imports only this module, typer
and the standard library. Settings (pydantic), SQLAlchemy and the rest are imported where they are used.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censustrace.errors import CensustraceError

if TYPE_CHECKING:
    from pydantic import ValidationError

    from censustrace.config import Settings

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


class Term(StrEnum):
    AUT = "AUT"
    SPR = "SPR"
    SUM = "SUM"


class Format(StrEnum):
    xml = "xml"
    ctf = "ctf"
    csv = "csv"


def load_settings() -> Settings:
    """This home's settings, its state folders created."""
    from censustrace.config import get_settings

    settings = get_settings()
    settings.ensure_dirs()
    return settings


def emit(result: dict[str, Any], as_json: bool, lines: list[str]) -> None:
    """Print ``result`` as JSON with ``--json``, else the lines for people."""
    if as_json:
        typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str))
    else:
        for line in lines:
            typer.echo(line)


def day_of(as_of: datetime | None) -> date:
    """The ``--as-of`` day, or today in Europe/London."""
    from censustrace.consent.clock import release_day

    return as_of.date() if as_of is not None else release_day()


def run_airflow(settings: Settings, *args: str, log: Path | None = None) -> int:
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


def failure_exit_code(exc: Exception) -> int | None:
    """Print a known failure as one line on standard error and return its documented exit code; None
    for anything else (a bug: the caller lets it raise)."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError, OperationalError

    from censustrace.config import ConfigError

    if isinstance(exc, ValidationError):
        typer.echo(f"error CT-CONFIG: {_settings_error(exc)}", err=True)
        return 2
    if isinstance(exc, ConfigError):
        typer.echo(f"error CT-CONFIG: {exc}", err=True)
        return 2
    if isinstance(exc, CensustraceError):
        typer.echo(f"error {exc}", err=True)
        return exc.exit_code
    if isinstance(exc, OperationalError):
        typer.echo(f"error CT-DB-UNREACHABLE: {_unreachable_databases()}", err=True)
        return 1
    if isinstance(exc, DBAPIError):
        # Reached, but it refused the statement (e.g. a database that is not censustrace's): one line.
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        typer.echo(f"error CT-DB-ERROR: {type(exc.orig).__name__}: {reason[:300]}", err=True)
        return 1
    return None


def _settings_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else "?"
        parts.append(f"CENSUSTRACE_{field.upper()}: {err['msg']}")
    return "; ".join(parts)


def _unreachable_databases() -> str:
    """Which configured database cannot be reached, by setting name, with the password hidden."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    settings = load_settings()
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
