"""docker-compose.yaml: the services of a distributed deployment, built right and secret-free.

Checked with a YAML parser (anchors and merge keys resolved as Compose resolves them) and, where the
docker client has the compose plugin, with ``docker compose config``."""

from __future__ import annotations

import json
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
           "CENSUSTRACE_PUPIL_KEY_SECRET")  # fmt: skip


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
        transport = json.loads(env["AIRFLOW__OPENLINEAGE__TRANSPORT"])
        assert transport["type"] == "censustrace.lineage.transport.CensustraceTransport"
        assert transport["store_url"] == "settings"  # no password in Airflow's config
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
