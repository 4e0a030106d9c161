"""``censustrace policy``: judge data sharing agreements against the policy files (docs/policies.md).

Registered on the main command in ``censustrace.cli``, whose ``main`` maps errors to exit codes: 0 allow
(or a valid policy), 1 deny (or an invalid policy), 2 usage error (bad ``--as-of``, unknown agreement).
``--as-of`` is a dry run: a share is always judged for the day it leaves (``share`` has no such option).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from censustrace.cli.common import JsonFlag, day_of, emit

policy_app = typer.Typer(
    help="Data sharing agreements and the policy that judges them (policies/, docs/policies.md).",
    no_args_is_help=True,
)

AsOf = Annotated[
    datetime | None,
    typer.Option("--as-of", formats=["%Y-%m-%d"], help="Judge for this day, YYYY-MM-DD (default: today)."),
]


@policy_app.command("check")
def check(
    agreement: Annotated[str, typer.Argument(help="An agreement id, or an agreement YAML file.")],
    as_of: AsOf = None,
    as_json: JsonFlag = False,
) -> None:
    """Judge one agreement. Exit 0 allow, 1 deny (every reason listed), 2 no such agreement."""
    from censustrace.config import get_settings
    from censustrace.consent.evaluate import check_agreement
    from censustrace.consent.policy_model import UnknownAgreement

    verdict = check_agreement(agreement, day_of(as_of), get_settings().policies_dir)
    unknown = [r for r in verdict.reasons if r.code == UnknownAgreement.code]
    if unknown:
        raise UnknownAgreement(unknown[0].message)
    flags = f"; flags: {', '.join(verdict.flags)}" if verdict.flags else ""
    lines = [f"{verdict.agreement}: {verdict.verdict} (as of {verdict.as_of}{flags})"]
    if verdict.fields_allowed:
        lines.append(f"  fields allowed: {', '.join(verdict.fields_allowed)}")
    if verdict.fields_denied:
        lines.append(f"  fields denied: {', '.join(verdict.fields_denied)}")
    lines += [f"  {r.code}: {r.message}" for r in verdict.reasons]
    lines += [f"  note: {n}" for n in verdict.notes]
    emit(verdict.as_dict(), as_json, lines)
    if not verdict.allowed:
        raise typer.Exit(1)


@policy_app.command("list")
def list_agreements(as_of: AsOf = None, as_json: JsonFlag = False) -> None:
    """Every agreement with its verdict. Exit 1 if a policy file is invalid (then all are denied)."""
    from censustrace.config import get_settings
    from censustrace.consent.evaluate import check_all

    report = check_all(day_of(as_of), get_settings().policies_dir)
    lines = [f"policy {report.policy_version[:12]} as of {report.as_of}:"]
    lines += [f"  {p}" for p in report.problems]
    for v in report.verdicts:
        codes = f" ({', '.join(dict.fromkeys(r.code for r in v.reasons))})" if v.reasons else ""
        flags = f" [{', '.join(v.flags)}]" if v.flags else ""
        lines.append(f"  {v.verdict:5} {v.agreement}{flags}{codes}")
    emit(report.as_dict(), as_json, lines)
    if report.problems:
        raise typer.Exit(1)


@policy_app.command("lint")
def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Policy files or agreement drafts to check (default: all of policies/)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Check policy files before they land: YAML and schema, file and line. Exit 0 clean, 1 with problems."""
    from censustrace.config import get_settings
    from censustrace.consent.policies import lint_file, lint_policy

    policies_dir = get_settings().policies_dir
    if paths:
        checked = [str(p) for p in paths]
        problems = [problem for p in paths for problem in lint_file(p, policies_dir)]
    else:
        checked = [str(policies_dir)]
        problems = lint_policy(policies_dir)
    result = {
        "ok": not problems,
        "checked": checked,
        "problems": [
            {"code": p.code, "file": p.file, "line": p.line, "message": p.message} for p in problems
        ],
    }
    lines = [f"{p.code} {p}" for p in problems] or [f"ok: {', '.join(checked)}"]
    emit(result, as_json, lines)
    if problems:
        raise typer.Exit(1)
