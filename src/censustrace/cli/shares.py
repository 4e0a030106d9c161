"""Commands for shares, disclosures and retention, registered on the main command in ``censustrace.cli``
(whose ``main`` maps errors to exit codes: 0 ok, 1 the work found problems, 2 usage).

* ``censustrace share AGREEMENT_ID [--json]``: check, build and release one share, judged for today in
  Europe/London (``--as-of`` is refused: CT-SHARE-AS-OF, exit 2, nothing recorded);
* ``censustrace shares list|verify [--json]``;
* ``censustrace disclosures [--by upn|name-dob] [--json] < ids.txt``: subject access (standard input
  only);
* ``censustrace retention [--as-of] [--json]``.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from censustrace.cli.common import JsonFlag, day_of, emit, load_settings

shares_app = typer.Typer(
    help="The share register (every share and blocked attempt) and its reconciliation with the outbox.",
    no_args_is_help=True,
)
AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="The day to act for, YYYY-MM-DD (default: today)."),
]


def _share_lines(share: dict[str, Any]) -> list[str]:
    excluded = ", ".join(f"{k} {v}" for k, v in sorted(share["excluded"].items())) or "none"
    lines = [
        f"{share['share_id']} {share['agreement']}: {share['status']}"
        + (f", {share['pupils']} pupils (excluded: {excluded})" if share["status"] != "blocked" else "")
    ]
    if share["file"]:
        lines.append(f"  file {share['file']} sha256={share['sha256']}")
    lines += [f"  {r['code']}: {r['message']}" for r in share["reasons"]]
    return lines


AS_OF_REFUSED = "CT-SHARE-AS-OF"


def share(
    agreement_id: Annotated[str, typer.Argument(help="The id of an agreement in policies/agreements/.")],
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            hidden=True,
            help="Refused: a share is judged for the day it leaves (use `policy check --as-of`).",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check, build and release one share under an agreement, judged for today (Europe/London).

    An unfinished share of the agreement (a release that failed) is completed first. Exit 1 if the
    agreement is refused: a blocked share is recorded with the reasons, nothing is sent."""
    from censustrace.errors import UsageError
    from censustrace.shares.steps import ShareBlocked, run_share

    if as_of is not None:  # refused before anything is read or recorded
        raise UsageError(
            f"--as-of {as_of}: a share is judged for the day it leaves (today in Europe/London), never "
            "for another day; nothing was recorded. For a dry run: censustrace policy check "
            f"{agreement_id} --as-of DATE",
            code=AS_OF_REFUSED,
        )
    settings = load_settings()
    try:
        result = run_share(agreement_id, settings)
    except ShareBlocked as exc:
        emit(exc.share, as_json, _share_lines(exc.share))
        raise typer.Exit(1) from None
    emit(result, as_json, _share_lines(result))


@shares_app.command("list")
def list_shares(
    agreement: Annotated[str | None, typer.Option(help="Only shares under this agreement.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Every share and blocked attempt, oldest first (the fields of `censustrace share --json`)."""
    from censustrace.shares.register import list_shares as rows

    found = [row.summary() for row in rows(load_settings(), agreement_id=agreement)]
    if as_json:
        typer.echo(json.dumps(found, indent=2, sort_keys=True, default=str))
        return
    emit({}, False, [line for item in found for line in _share_lines(item)] or ["no shares"])


@shares_app.command("verify")
def verify(as_json: JsonFlag = False) -> None:
    """Reconcile the outbox with the register, disclosures and lineage. Exit 1 on any mismatch."""
    from censustrace.shares.verify import verify_shares

    result = verify_shares(load_settings())
    lines = [
        f"{'ok' if result['ok'] else 'PROBLEMS'}: {result['shares']} delivered shares, "
        f"{result['files']} files, {result['blocked']} blocked, {len(result['pending'])} pending"
    ]
    lines += [f"  {p['code']}: {p['message']}" for p in result["problems"]]
    emit(result, as_json, lines)
    if not result["ok"]:
        raise typer.Exit(1)


def _log_lookups(settings: Any, upns: list[str], result: dict[str, Any]) -> None:
    """One chained access log row per pupil asked for, by pupil key, with the operating-system user."""
    from censustrace.audit.log import os_actor, record
    from censustrace.intake.stage import pupil_key

    if not upns:
        return
    secret = settings.pupil_key_secret_value()
    record(
        settings,
        os_actor(),
        "subject_access",
        "disclosures.cli",
        pupil_keys=[pupil_key(secret, upn.strip().upper()) for upn in upns],
        result_counts=[len(request["shares"]) for request in result["requests"]],
    )


def disclosures(
    as_json: JsonFlag = False,
    by: Annotated[
        str,
        typer.Option(
            "--by",
            help="upn: one current or former UPN per line; name-dob: 'surname,forename,YYYY-MM-DD' per line.",
        ),
    ] = "upn",
    values: Annotated[
        bool,
        typer.Option("--values", help="Include the values held (the copy for the family); off by default."),
    ] = False,
) -> None:
    """Subject access: the data held on each pupil, its source files, and every share that included them.

    Identifiers are read from standard input, one per line, never from arguments; the answer names each
    by its line number and never echoes it. A former UPN finds the pupil too. Each pupil found is
    recorded by pupil key with the operating-system user (``subject_lookups``)."""
    import csv

    from censustrace.compliance.subject import NameDob, look_up_name, look_up_upns
    from censustrace.errors import UsageError

    if by not in ("upn", "name-dob"):
        raise UsageError("--by must be upn or name-dob")
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(
            "give the identifiers on standard input, one per line: censustrace disclosures < upns.txt"
        )
    settings = load_settings()
    if by == "upn":
        lines_in = list(sys.stdin)
        result = look_up_upns(settings, lines_in, values=values)
        _log_lookups(settings, [line for line in lines_in if line.strip()], result)
    else:
        requests = []
        for number, cells in enumerate(csv.reader(sys.stdin), start=1):
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != 3:
                raise UsageError(f"line {number}: expected surname,forename,YYYY-MM-DD")
            found = look_up_name(settings, NameDob.parse(*cells), values=values)
            for child in found["pupils"]:
                requests.append({"line": number, **child})
            if not found["pupils"]:
                requests.append(
                    {"line": number, "matched_by": None, "data": [], "shares": [], "decisions": []}
                )
        result = {"requests": requests}
        # The children found are recorded by pupil key in subject_lookups (compliance.subject).
        from censustrace.audit.log import os_actor, record

        record(settings, os_actor(), "subject_access", "disclosures.cli.name", result_counts=[len(requests)])
    lines: list[str] = []
    for request in result["requests"]:
        lines.append(
            f"line {request['line']}: {len(request['data'])} record(s) held, "
            f"{len(request['shares'])} share(s)"
            + (f" (found by {request['matched_by']})" if request.get("matched_by") else "")
        )
        lines += [
            f"  held: {d['census']} from {d['source']['file']} (sha256 {d['source']['sha256'][:16]})"
            + (" [file erased since]" if d["source"]["erased"] else "")
            for d in request["data"]
        ]
        lines += [
            f"  {s['date']} {s['share_id']} to {s['recipient']} for {s['purpose']} ({s['lawful_basis']}; "
            f"{s['legal_gateway'] or 'no gateway'}; kept {s['retention_days'] or '?'} days): "
            f"{', '.join(s['fields'])}"
            for s in request["shares"]
        ]
    emit(result, as_json, lines or ["no identifiers given"])


def retention(as_of: AsOf = None, as_json: JsonFlag = False) -> None:
    """Erase values whose retention ended and never-share legacy items, with a lineage event.

    Legacy items: nationality and country of birth. The warehouse, then every copy of a file (archive,
    quarantine, outbox: a redacted copy and a tombstone). The lineage event records what, how many rows
    and under which rule."""
    from censustrace.compliance.retention import apply_retention
    from censustrace.lineage.emit import emit_step
    from censustrace.lineage.model import StepLineage

    settings = load_settings()
    step = StepLineage()
    result = apply_retention(settings, day_of(as_of), lineage=step)
    if step.outputs:
        result["lineage_run_id"] = emit_step(settings, "censustrace.retention", step)
    lines = [f"erased {result['rows']} values"]
    lines += [f"  {e['rule']}: {e['table']}.{e['field']} x{e['rows']}" for e in result["erasures"]]
    lines += [
        f"  {f['copy']} copy of {f['file']}: {', '.join(f['fields'])} erased ({', '.join(f['rules'])})"
        + (", withheld whole" if f["whole_file"] else "")
        for f in result["files"]
    ]
    emit(result, as_json, lines)
