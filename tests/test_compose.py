"""docker-compose.yaml: the services of a distributed deployment, built right and secret-free.

Checked with a YAML parser (anchors and merge keys resolved as Compose resolves them), with Debian's
``docker-compose`` (``config`` with a filled ``.env``: no engine needed; ``.ci/run`` installs it) and,
where the docker client has the compose plugin, with ``docker compose config``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yaml"
AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
SECRETS = ("POSTGRES_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY", "CENSUSTRACE_DB_PASSWORD",
           "CENSUSTRACE_PUPIL_KEY_SECRET", "AIRFLOW_ADMIN_PASSWORD")  # fmt: skip


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def test_every_service_of_the_official_layout_plus_viewer_and_marquez(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"postgres", "redis", *AIRFLOW_SERVICES, "censustrace-viewer"}
    assert services["marquez"]["profiles"] == ["marquez"]
    assert services["marquez-web"]["profiles"] == ["marquez"]
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if name != "airflow-init":
            assert "healthcheck" in service or name == "marquez-web", f"{name} has no healthcheck"


def test_airflow_services_share_one_configuration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (
            env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
            or "@redis:" in env["AIRFLOW__CELERY__BROKER_URL"]
        )
        assert env["CENSUSTRACE_WAREHOUSE_URL"].startswith("postgresql+psycopg2://")
        assert env["CENSUSTRACE_LINEAGE_URL"].startswith("postgresql+psycopg2://")
        composite = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
        assert composite["type"] == "composite"
        transport = composite["transports"]["censustrace"]
        assert transport["type"] == "censustrace.lineage.transport.CensustraceTransport"
        assert transport["store_url"] == "settings"  # no password in Airflow's config
        assert composite["transports"]["marquez"]["type"] == "async_http"
        assert env["AIRFLOW__CORE__AUTH_MANAGER"].endswith("fab_auth_manager.FabAuthManager")
        assert services[name]["build"] == "."
    assert "--scale" in COMPOSE.read_text(encoding="utf-8")  # workers documented as scalable
    assert "replicas" not in services["airflow-worker"].get("deploy", {})  # --scale must stay free


def test_state_folders_are_named_volumes(compose: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    mounts = compose["services"]["airflow-worker"]["volumes"]
    targets = {m.split(":")[1]: m.split(":")[0] for m in mounts}
    for folder in ("landing", "archive", "quarantine", "outbox"):
        source = targets[f"/var/lib/censustrace/{folder}"]
        assert source in volumes, folder


def test_no_secret_is_committed(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for secret in SECRETS:
        # Each secret comes from the environment, required (":?") so a missing one stops compose.
        assert re.search(r"\$\{" + secret + r":\?", text), secret
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    for secret in SECRETS:
        assert re.search(rf"^{secret}=$", example, re.M), f"{secret} must be blank in .env.example"
    assert ".env" in (REPO / ".gitignore").read_text(encoding="utf-8").split()


def test_database_init_script_creates_the_stores_named_in_the_urls(compose: dict[str, Any]) -> None:
    script = (REPO / "deploy" / "postgres" / "init-censustrace.sh").read_text(encoding="utf-8")
    env = compose["services"]["airflow-worker"]["environment"]
    for url in (env["CENSUSTRACE_WAREHOUSE_URL"], env["CENSUSTRACE_LINEAGE_URL"]):
        database = url.rsplit("/", 1)[1]
        assert f"CREATE DATABASE {database} OWNER censustrace" in script
    mounts = compose["services"]["postgres"]["volumes"]
    assert any("init-censustrace.sh:/docker-entrypoint-initdb.d/" in m for m in mounts)


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode:
        pytest.skip("the docker client here has no compose plugin; the YAML checks above still ran")
    env = {name: "x" for name in SECRETS} | {"PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr


def _filled_env(folder: Path) -> Path:
    env_file = folder / ".env"
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    env_file.write_text(re.sub(r"^([A-Z_]+)=$", r"\1=filled-\1", example, flags=re.M), encoding="utf-8")
    return env_file


def test_debian_docker_compose_validates_the_file_with_a_filled_env(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("docker-compose missing (CI=true: .ci/run installs Debian's docker-compose)")
        pytest.skip("Debian's docker-compose is not installed (apt-get install docker-compose)")
    env_file = _filled_env(tmp_path)
    base = [binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "--env-file", str(env_file)]
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    for profile in ([], ["--profile", "marquez"]):
        proc = subprocess.run([*base, *profile, "config"], capture_output=True, text=True, env=clean_env)
        assert proc.returncode == 0, proc.stderr
        resolved = yaml.safe_load(proc.stdout)
        worker = resolved["services"]["airflow-worker"]["environment"]
        assert "filled-CENSUSTRACE_DB_PASSWORD@postgres/warehouse" in worker["CENSUSTRACE_WAREHOUSE_URL"]
        marquez = json.loads(worker["AIRFLOW__OPENLINEAGE__TRANSPORT"])["transports"]["marquez"]
        assert marquez["url"] == "http://marquez:5000"
    # A missing secret stops compose, naming it.
    env_file.write_text(
        env_file.read_text().replace("AIRFLOW_ADMIN_PASSWORD=filled-AIRFLOW_ADMIN_PASSWORD", "")
    )
    proc = subprocess.run([*base, "config"], capture_output=True, text=True, env=clean_env)
    assert proc.returncode != 0
    assert "AIRFLOW_ADMIN_PASSWORD" in proc.stderr


def test_airflow_init_creates_and_owns_the_state_folders(compose: dict[str, Any]) -> None:
    init = compose["services"]["airflow-init"]
    script = init["command"][-1]
    assert init["user"] == "0:0"  # root, to create and chown the volumes
    for folder in ("landing", "archive", "quarantine", "outbox", "shares"):
        assert folder in script.split("mkdir -p", 1)[1].split("\n", 1)[0], folder
    assert "chown -R 50000:0 /var/lib/censustrace" in script
    assert compose["x-airflow-common"]["user"] == "50000:0"  # the services run as that user
    # The admin password comes from the environment and is not echoed.
    assert '--password "$${AIRFLOW_ADMIN_PASSWORD}" > /dev/null' in COMPOSE.read_text(encoding="utf-8")


def test_viewer_service_creates_no_login_and_prints_no_password(compose: dict[str, Any]) -> None:
    assert "--no-demo-login" in compose["services"]["censustrace-viewer"]["command"]


def test_production_image_has_no_test_tools() -> None:
    runtime = (REPO / "requirements.txt").read_text(encoding="utf-8")
    dev = (REPO / "requirements-dev.txt").read_text(encoding="utf-8")
    names = {line.split("==")[0].lower() for line in runtime.splitlines() if "==" in line}
    assert not names & {"pytest", "ruff", "mypy", "playwright", "types-pyyaml"}
    assert {"apache-airflow-providers-celery", "celery", "redis", "apache-airflow-providers-fab"} <= names
    assert "-r requirements.txt" in dev.splitlines()
    assert all(tool in dev for tool in ("pytest==", "ruff==", "mypy==", "playwright=="))
    lines = (REPO / "Dockerfile").read_text(encoding="utf-8").splitlines()
    dockerfile = "\n".join(line for line in lines if not line.lstrip().startswith("#"))  # instructions
    assert "-r /opt/censustrace/requirements.txt" in dockerfile
    assert "requirements-dev" not in dockerfile
    # Tests still get the tools: make install and CI install the dev set.
    assert "-r requirements-dev.txt" in (REPO / "Makefile").read_text(encoding="utf-8")

    def norm(line: str) -> str:  # pip's name normalisation (PEP 503)
        return re.sub(r"[-_.]+", "-", line.strip().lower())

    constraints = {norm(line) for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines()}
    for line in runtime.splitlines() + dev.splitlines():
        if "==" in line:
            assert norm(line) in constraints, f"{line} not pinned the same in constraints.txt"


def test_fab_auth_manager_installs_beside_airflow() -> None:
    from airflow.providers.fab.auth_manager.fab_auth_manager import FabAuthManager

    assert FabAuthManager.__module__ == "airflow.providers.fab.auth_manager.fab_auth_manager"


def test_composite_transport_stores_every_event_while_marquez_is_away(tmp_path: Path) -> None:
    """The compose transport, built by the real OpenLineage client: the store gets the event, the async
    HTTP send to a Marquez that is not running fails in the background without blocking or raising."""
    import time

    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.transport.async_http import AsyncHttpTransport
    from openlineage.client.transport.composite import CompositeTransport

    from censustrace.config import get_settings
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events
    from censustrace.lineage.transport import CensustraceTransport

    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    raw = compose["x-airflow-common"]["environment"]["AIRFLOW__OPENLINEAGE__TRANSPORT"]
    raw = raw.replace("${CENSUSTRACE_LINEAGE_HTTP_URL:-}", "").replace(
        "${MARQUEZ_URL:-http://marquez:5000}",
        "http://127.0.0.1:9",  # nothing listens on port 9
    )
    config = json.loads(raw)
    config["transports"]["censustrace"]["outbox_dir"] = str(tmp_path / "outbox")
    monkey = pytest.MonkeyPatch()
    monkey.setenv("CENSUSTRACE_HOME", str(tmp_path / "home"))
    monkey.delenv("CENSUSTRACE_LINEAGE_URL", raising=False)
    get_settings.cache_clear()
    try:
        client = OpenLineageClient(config={"transport": config})
        assert isinstance(client.transport, CompositeTransport)
        kinds = {type(t) for t in client.transport.transports}
        assert kinds == {CensustraceTransport, AsyncHttpTransport}
        event = RunEvent(
            eventType=RunState.START,
            eventTime="2026-12-03T10:00:00.000Z",
            run=Run(runId="01932f6e-0000-7000-8000-000000000017"),
            job=Job(namespace="censustrace", name="compose_check"),
            producer="https://example.org/censustrace-test",
        )
        began = time.perf_counter()
        client.emit(event)
        assert time.perf_counter() - began < 5  # the Marquez send does not hold the task up
        stored = list(export_raw_events(make_engine(get_settings().lineage_db_url)))
        assert len(stored) == 1
        assert json.loads(stored[0])["job"]["name"] == "compose_check"
        client.transport.close(timeout=1)
    finally:
        monkey.undo()
        get_settings.cache_clear()
