"""The ``censustrace`` command: everything done outside the Airflow UI.

Exit codes: 0 ok, 1 the work found problems (e.g. a file quarantined, a DAG run failed), 2 usage or
configuration error. Commands that report results take ``--json``.

One module per command family (``ingest``, ``quarantine``, ``pipeline``, ``ops``, ``lineage``,
``policy``, ``consent``, ``shares``, ``audit``, ``compliance``, ``viewer``); what they share lives in
``censustrace.cli.common``. Each imports only typer and the standard library at its top, so
``censustrace --help`` stays fast: the work's own modules are imported inside the commands.
"""

from __future__ import annotations

import typer

from censustrace.cli.audit import audit_app
from censustrace.cli.common import failure_exit_code
from censustrace.cli.compliance import article30, notices
from censustrace.cli.consent import consent_app
from censustrace.cli.ingest import deliver, generate, ingest, status
from censustrace.cli.lineage import lineage_app, trace
from censustrace.cli.ops import AIRFLOW_PASSTHROUGH, airflow_cli, backup, env, init, rekey, restore
from censustrace.cli.pipeline import pipeline
from censustrace.cli.policy import policy_app
from censustrace.cli.quarantine import quarantine_app
from censustrace.cli.shares import disclosures, retention, share, shares_app
from censustrace.cli.viewer import api, serve, tokens_app, users_app, viewer

app = typer.Typer(
    help="censustrace: lawful, checked and traceable onward sharing of school census data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _start_up() -> None:
    # Before any command runs (not for --help): a broken install stops here, not at the first event.
    from censustrace.lineage.spec import require_schemas

    require_schemas()


# Registration order is the order of `censustrace --help` (commands first, then groups).
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
app.command()(init)
app.command()(generate)
app.command()(deliver)
app.command()(status)
app.command()(ingest)
app.add_typer(quarantine_app, name="quarantine")
app.command()(pipeline)
app.command()(backup)
app.command()(restore)
app.command()(rekey)
app.command()(serve)
app.command("airflow", context_settings=AIRFLOW_PASSTHROUGH)(airflow_cli)
app.command()(env)
app.command()(trace)
app.command()(api)


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
    except Exception as exc:
        code = failure_exit_code(exc)
        if code is None:
            raise
        return code
    return rv if isinstance(rv, int) else 0


__all__ = ["app", "main"]
