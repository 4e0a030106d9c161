"""``censustrace quarantine list|show|retry|discard``: decide about quarantined extracts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from censustrace.cli.common import JsonFlag, emit, load_settings

if TYPE_CHECKING:
    from censustrace.config import Settings
    from censustrace.lineage.model import StepLineage

quarantine_app = typer.Typer(
    help="Quarantined extracts: list, show, retry through today's code, discard with a reason.",
    no_args_is_help=True,
)

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

    entries = [e.as_dict() for e in list_quarantined(load_settings(), include_all=include_all)]
    lines = [f"{e['extract_id']}  {e['state']:<9}  {e['file']}  {' '.join(e['codes'])}" for e in entries] or [
        "no quarantined extracts"
    ]
    emit({"quarantined": entries}, as_json, lines)


@quarantine_app.command("show")
def quarantine_show(extract_id: ExtractId, as_json: JsonFlag = False) -> None:
    """One quarantined extract: its files, every reason (code, message, place), and what was done."""
    from censustrace.intake.quarantine_ops import show_quarantined

    entry = show_quarantined(load_settings(), extract_id).as_dict(detail=True)
    lines = [f"{entry['extract_id']} ({entry['state']}): {entry['file']}"]
    lines += [f"  {r['code']}: {r['message']}" for r in entry["reasons"]]
    lines += [
        f"  {a['action']} {a['acted_at']} {a['reason'] or a['result_extract_id'] or ''}"
        for a in entry["actions"]
    ]
    emit(entry, as_json, lines)


@quarantine_app.command("retry")
def quarantine_retry(extract_id: ExtractId, as_json: JsonFlag = False) -> None:
    """Run the archived original bytes again through today's code, suites and thresholds.

    Prints what ``ingest --json`` prints, one object per file; exit 1 if quarantined again."""
    from censustrace.intake.quarantine_ops import retry

    settings = load_settings()
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

    entry = discard(load_settings(), extract_id, reason).as_dict(detail=True)
    emit(entry, as_json, [f"{entry['extract_id']}: discarded ({reason})"])
