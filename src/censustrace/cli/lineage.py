"""``censustrace lineage status|flush|export`` and ``censustrace trace``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censustrace.cli.common import JsonFlag, emit, load_settings

if TYPE_CHECKING:
    from censustrace.config import Settings

lineage_app = typer.Typer(help="The lineage store: delivery status, retries, export.", no_args_is_help=True)


def _transport(settings: Settings) -> Any:
    from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

    return CensustraceTransport(CensustraceTransportConfig.from_dict(settings.openlineage_transport()))


@lineage_app.command("status")
def lineage_status(as_json: JsonFlag = False) -> None:
    """Lineage events waiting in the outbox (pending) or refused by a destination (failed)."""
    from censustrace.lineage.outbox import Outbox

    settings = load_settings()
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
    emit(result, as_json, lines)
    if result["pending"] or result["failed"]:
        raise typer.Exit(1)


@lineage_app.command("flush")
def lineage_flush(as_json: JsonFlag = False) -> None:
    """Retry delivery of every pending lineage event now."""
    result = _transport(load_settings()).flush()
    emit(result, as_json, [f"{dest}: {counts}" for dest, counts in result.items()])
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

    engine = make_engine(load_settings().lineage_db_url)
    if out is None:
        for line in export_raw_events(engine):
            typer.echo(line)
        return
    count = 0
    with out.open("w", encoding="utf-8") as fh:
        for line in export_raw_events(engine):
            fh.write(line + "\n")
            count += 1
    emit({"events": count, "out": str(out)}, as_json, [f"exported {count} events to {out}"])


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

    settings = load_settings()
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
    emit(result, as_json, lines)
