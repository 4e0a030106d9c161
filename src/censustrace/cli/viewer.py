"""``censustrace users …``, ``censustrace tokens …``, ``censustrace viewer``, ``censustrace api`` and
``censustrace serve`` (the Airflow UI with the viewer).

Passwords come from standard input (one line) or are generated and printed once; tokens are printed
once. Only their hashes are stored (see ``censustrace.viewer.auth``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from censustrace.cli.common import load_settings, run_airflow

if TYPE_CHECKING:
    from censustrace.config import Settings

users_app = typer.Typer(help="Viewer users: compliance, engineer, auditor.", no_args_is_help=True)
tokens_app = typer.Typer(
    help="API tokens: producer (POST lineage) or api (JSON API as a user).", no_args_is_help=True
)

#: Where ``censustrace serve`` keeps the demo login it created (like Airflow's generated passwords).
DEMO_LOGIN_FILE = "viewer-login.json"
DEMO_USER = "compliance"


class RoleName(StrEnum):
    compliance = "compliance"
    engineer = "engineer"
    auditor = "auditor"


class TokenKind(StrEnum):
    producer = "producer"
    api = "api"
    pipeline = "pipeline"


def _home_settings() -> Settings:
    from censustrace.config import get_settings

    return get_settings()


def _engine(settings: Settings):  # type: ignore[no-untyped-def]
    from censustrace.lineage.store.db import make_engine, upgrade
    from censustrace.viewer.db import upgrade as upgrade_viewer

    settings.ensure_dirs()
    upgrade(settings.lineage_db_url)
    upgrade_viewer(settings.lineage_db_url)
    return make_engine(settings.lineage_db_url)


def _read_password() -> str | None:
    """One line from standard input when it is not a terminal (``echo pw | censustrace users add``)."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    return line or None


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="User name (letters, digits, . _ @ -).")],
    role: Annotated[RoleName, typer.Option(help="compliance, engineer or auditor.", case_sensitive=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a user. The password is read from standard input, or generated and printed once."""
    from censustrace.viewer import auth

    password = _read_password()
    generated = password is None
    password = password or auth.generate_password()
    auth.add_user(_engine(_home_settings()), name, role.value, password)
    _published()
    result = {"user": name, "role": role.value, "password": password if generated else None}
    if as_json:
        typer.echo(json.dumps(result))
    elif generated:
        typer.echo(f"user {name} ({role.value}) created; password (shown once): {password}")
    else:
        typer.echo(f"user {name} ({role.value}) created")


def _published() -> None:
    """Users, roles and tokens changes are chained in the access log: publish its head (audit)."""
    from censustrace.audit.heads import publish_heads

    publish_heads(_home_settings())


@users_app.command("role")
def users_role(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[RoleName, typer.Option(help="compliance, engineer or auditor.", case_sensitive=False)],
) -> None:
    """Give a user another role (their sessions end). Logged in the access log."""
    from censustrace.viewer import auth

    old = auth.set_role(_engine(_home_settings()), name, role.value)
    _published()
    typer.echo(f"user {name}: role {old} -> {role.value}")


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Disable a user: sessions end, API tokens stop working. Logged in the access log."""
    from censustrace.viewer import auth

    auth.set_disabled(_engine(_home_settings()), name, True)
    _published()
    typer.echo(f"user {name} disabled")


@users_app.command("enable")
def users_enable(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Enable a disabled user again. Logged in the access log."""
    from censustrace.viewer import auth

    auth.set_disabled(_engine(_home_settings()), name, False)
    _published()
    typer.echo(f"user {name} enabled")


@users_app.command("list")
def users_list() -> None:
    """Users and their roles."""
    from censustrace.viewer import auth

    for user in auth.list_users(_engine(_home_settings())):
        state = " (disabled)" if user["disabled"] else ""
        typer.echo(f"{user['name']}\t{user['role']}{state}")


@users_app.command("password")
def users_password(name: Annotated[str, typer.Argument(help="User name.")]) -> None:
    """Set a new password (standard input, or generated and printed once); ends the user's sessions."""
    from censustrace.viewer import auth

    password = _read_password()
    generated = password is None
    password = password or auth.generate_password()
    auth.set_password(_engine(_home_settings()), name, password)
    _published()
    typer.echo(
        f"new password for {name} (shown once): {password}" if generated else f"password of {name} set"
    )


@tokens_app.command("add")
def tokens_add(
    name: Annotated[str, typer.Argument(help="api: the user the token acts as; producer: a label.")],
    kind: Annotated[
        TokenKind,
        typer.Option(
            help="producer (an external lineage producer), pipeline (the pipeline's own) or api.",
            case_sensitive=False,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create an API token and print it once (only its hash is kept)."""
    from censustrace.viewer import auth

    token = auth.add_token(_engine(_home_settings()), name, kind.value)
    _published()
    if as_json:
        typer.echo(json.dumps({"name": name, "kind": kind.value, "token": token}))
    else:
        typer.echo(f"{kind.value} token for {name} (shown once): {token}")


@tokens_app.command("list")
def tokens_list() -> None:
    """Tokens by name, kind and first characters (never the token)."""
    from censustrace.viewer import auth

    for token in auth.list_tokens(_engine(_home_settings())):
        state = f"revoked {token['revoked_at']}" if token["revoked_at"] else "live"
        typer.echo(f"{token['prefix']}…\t{token['kind']}\t{token['name']}\t{state}")


@tokens_app.command("revoke")
def tokens_revoke(
    prefix: Annotated[str, typer.Argument(help="The token's first 12 characters (or all of it).")],
) -> None:
    """Revoke a token."""
    from censustrace.viewer import auth

    count = auth.revoke_token(_engine(_home_settings()), prefix)
    _published()
    typer.echo(f"revoked {count} token(s)")
    if not count:
        raise typer.Exit(1)


def ensure_demo_login(settings: Settings) -> tuple[str, str | None]:
    """The login to print at start-up: on a store without users, a ``compliance`` user with a generated
    password kept (0600) in ``$CENSUSTRACE_HOME/viewer-login.json``; otherwise what that file holds."""
    from censustrace.viewer import auth

    path = settings.home / DEMO_LOGIN_FILE
    engine = _engine(settings)
    try:
        if auth.count_users(engine) == 0:
            password = auth.generate_password()
            auth.add_user(engine, DEMO_USER, "compliance", password)
            _write_private(path, json.dumps({"user": DEMO_USER, "password": password}))
            return DEMO_USER, password
    finally:
        engine.dispose()
    if path.is_file():
        saved = json.loads(path.read_text())
        return str(saved["user"]), str(saved["password"])
    return DEMO_USER, None


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def serve_viewer(settings: Settings, host: str, port: int) -> None:
    """Run the viewer with uvicorn (blocks). Proxy headers are trusted from localhost only, so the
    cookies are marked Secure when a local TLS proxy forwards ``X-Forwarded-Proto: https``."""
    import uvicorn

    from censustrace.lineage.store.db import upgrade
    from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig
    from censustrace.viewer.app import create_viewer_app
    from censustrace.viewer.db import upgrade as upgrade_viewer

    # A long-lived process: it retries the lineage outbox every CENSUSTRACE_LINEAGE_RETRY_SECONDS.
    CensustraceTransport(CensustraceTransportConfig.from_dict(settings.openlineage_transport()))

    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": True,
        "forwarded_allow_ips": "127.0.0.1",
    }
    if settings.api_workers == 1:
        uvicorn.run(create_viewer_app(settings), **options)
        return
    # Several processes (CENSUSTRACE_API_WORKERS), each building the app from the same environment:
    # lineage intake is CPU-bound (validation), one process uses one core. Migrated once, here.
    upgrade(settings.lineage_db_url)
    upgrade_viewer(settings.lineage_db_url)
    os.environ["CENSUSTRACE_HOME"] = str(settings.home)
    uvicorn.run(
        "censustrace.viewer.app:create_viewer_app", factory=True, workers=settings.api_workers, **options
    )


def viewer(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8090,
    demo_login: Annotated[
        bool,
        typer.Option(
            "--demo-login/--no-demo-login",
            help="Create a demo compliance login on first start and print it (a deployment says no: "
            "add users with `censustrace users add`).",
        ),
    ] = True,
) -> None:
    """Serve the compliance lineage viewer (pages, JSON API, lineage intake) standalone."""
    settings = _home_settings()
    typer.echo(f"censustrace viewer: http://{host}:{port}/")
    if demo_login:
        user, password = ensure_demo_login(settings)
        if password:
            typer.echo(f"login: {user} / {password}  (kept in {settings.home / DEMO_LOGIN_FILE})")
    serve_viewer(settings, host, port)


def serve() -> None:
    """Serve the Airflow UI (scheduler, API server, DAG processor, triggerer) and the viewer."""
    settings = load_settings()
    user, password = _ui_login(settings)
    viewer_user, viewer_password = ensure_demo_login(settings)
    typer.echo(f"Airflow UI:  http://localhost:{settings.airflow_port}  login: {user} / {password}")
    typer.echo(f"Viewer:      http://localhost:{settings.airflow_port}/censustrace/  (inside Airflow)")
    typer.echo(
        f"Viewer:      http://127.0.0.1:{settings.api_port}/  login: {viewer_user} / "
        f"{viewer_password or '(your own viewer user)'}"
    )
    api_server = subprocess.Popen(
        [sys.executable, "-m", "censustrace.cli", "viewer", "--port", str(settings.api_port)],
        env={**os.environ, "CENSUSTRACE_HOME": str(settings.home)},
    )
    try:
        rc = run_airflow(settings, "standalone")
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


def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int | None, typer.Option(help="Port to listen on (default CENSUSTRACE_API_PORT).")
    ] = None,
) -> None:
    """Serve the lineage HTTP API (OpenLineage intake, Marquez-compatible queries) behind the viewer's
    login and tokens: the same app as `censustrace viewer`."""
    settings = load_settings()
    serve_viewer(settings, host, port or settings.api_port)
