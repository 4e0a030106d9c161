"""``censustrace consent ingest FILE... [--json]``: pupils' objections and consents from consent files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from censustrace.cli.common import JsonFlag, load_settings

consent_app = typer.Typer(
    help="Pupils' recorded objections and consents (consent files).", no_args_is_help=True
)


@consent_app.command("ingest")
def consent_ingest(
    files: Annotated[list[Path], typer.Argument(help="Consent files (CSV upn, purpose, decision, ...).")],
    as_json: JsonFlag = False,
) -> None:
    """Archive consent files and apply their decisions, by pupil key (one JSON object per file).

    Bad rows are reported by row number and left out; exit 1 if any row or file was not applied."""
    from censustrace.consent.objections import ingest_consent_file
    from censustrace.errors import UsageError
    from censustrace.lineage.emit import emit_step

    settings = load_settings()
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise UsageError(f"FILE: no such file: {', '.join(missing)}")
    problems = False
    for path in files:
        outcome = ingest_consent_file(path, settings)
        emit_step(settings, "censustrace.consent_ingest", outcome.lineage)
        result = outcome.as_dict()
        problems |= outcome.status == "refused" or outcome.rows_rejected > 0
        if as_json:
            typer.echo(json.dumps(result, sort_keys=True))
        else:
            codes = " ".join(e["code"] for e in result["errors"])
            rows = result["rows"]
            applied = f"{rows['applied']}/{rows['read']} rows applied"
            typer.echo(f"{path.name}: {result['status']} {applied} {codes}".rstrip())
    if problems:
        raise typer.Exit(1)
