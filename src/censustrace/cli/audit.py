"""``censustrace audit verify [--json]`` and ``censustrace audit lookups [--json] < upns.txt``."""

from __future__ import annotations

import sys
from typing import Any

import typer

from censustrace.cli.common import JsonFlag, emit, load_settings

audit_app = typer.Typer(
    help="The tamper-evident audit trail: the share register and access log chains.", no_args_is_help=True
)


@audit_app.command("verify")
def verify(as_json: JsonFlag = False) -> None:
    """Check both chains and every head recorded outside them. Exit 1 on any problem."""
    from censustrace.audit.verify import verify_audit

    result = verify_audit(load_settings())
    chains = ", ".join(f"{name} {c['rows']} rows" for name, c in result["chains"].items())
    lines = [f"{'ok' if result['ok'] else 'PROBLEMS'}: {chains}"]
    lines += [f"  {p['log']} row {p['row']}: {p['kind']}: {p['message']}" for p in result["problems"]]
    emit({"ok": result["ok"], "problems": result["problems"], "chains": result["chains"]}, as_json, lines)
    if not result["ok"]:
        raise typer.Exit(1)


@audit_app.command("lookups")
def lookups(as_json: JsonFlag = False) -> None:
    """Who looked each pupil up (UPNs on standard input, one per line; answered by line number).

    This is itself a lookup: it is logged, by pupil key, with the operating-system user."""
    from censustrace.audit.heads import store_engine
    from censustrace.audit.log import lookups_of, os_actor, record
    from censustrace.errors import UsageError
    from censustrace.intake.stage import pupil_key

    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "give the UPNs on standard input, one per line: censustrace audit lookups < upns.txt"
        )
    settings = load_settings()
    secret = settings.pupil_key_secret_value()
    asked = [(n, pupil_key(secret, t.strip().upper())) for n, t in enumerate(sys.stdin, 1) if t.strip()]
    engine = store_engine(settings)
    found: list[tuple[int, list[dict[str, Any]]]] = [(n, lookups_of(engine, key)) for n, key in asked]
    answer = [{"line": n, "lookups": rows} for n, rows in found]
    if asked:
        record(
            settings,
            os_actor(),
            "audit_lookup",
            "access_log.lookups",
            pupil_keys=[key for _, key in asked],
            result_counts=[len(rows) for _, rows in found],
        )
    lines: list[str] = []
    for n, rows in found:
        lines.append(f"line {n}: {len(rows)} lookup(s)")
        lines += [f"  {r['at']} {r['user_name']} ({r['role']}, {r['via']}) {r['what']}" for r in rows]
    emit({"requests": answer}, as_json, lines or ["no UPNs given"])
