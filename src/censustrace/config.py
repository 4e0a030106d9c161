"""The one place censustrace reads its settings.

Every setting is an environment variable (or a line in ``.env`` in the working directory). All state
lives under ``CENSUSTRACE_HOME`` unless a setting points elsewhere, so setting that one variable gives a
fully isolated instance (warehouse, lineage store, landing/archive/quarantine/outbox folders and the
embedded Airflow home).

| variable | default | meaning |
| --- | --- | --- |
| ``CENSUSTRACE_HOME`` | ``<checkout>/.censustrace`` | root of all state |
| ``CENSUSTRACE_WAREHOUSE_URL`` | ``sqlite:///$HOME/warehouse.db`` | SQLAlchemy URL of the warehouse |
| ``CENSUSTRACE_LINEAGE_URL`` | ``sqlite:///$HOME/lineage.db`` | SQLAlchemy URL of the lineage store |
| ``CENSUSTRACE_LINEAGE_HTTP_URL`` | unset | also send lineage to this OpenLineage HTTP endpoint |
| ``CENSUSTRACE_LINEAGE_HTTP_API_KEY`` | unset | bearer token for that endpoint |
| ``CENSUSTRACE_LINEAGE_NAMESPACE`` | ``censustrace`` | OpenLineage namespace of our jobs |
| ``CENSUSTRACE_AIRFLOW_DB_URL`` | ``sqlite:///$HOME/airflow/airflow.db`` | Airflow metadata DB |
| ``CENSUSTRACE_AIRFLOW_PARALLELISM`` | ``2`` | LocalExecutor parallelism |
| ``CENSUSTRACE_AIRFLOW_PORT`` | ``8080`` | port of the Airflow UI/API server |
| ``CENSUSTRACE_CELERY_BROKER_URL`` | ``redis://127.0.0.1:6379/0`` | Celery broker (``--executor celery``) |
| ``CENSUSTRACE_CELERY_WORKERS`` | ``2`` | Celery worker processes ``pipeline --executor celery`` starts |
| ``CENSUSTRACE_CELERY_WORKER_CONCURRENCY`` | ``1`` | task slots per Celery worker |
| ``CENSUSTRACE_TASK_HEARTBEAT_TIMEOUT`` | ``60`` | seconds without a heartbeat: the task's worker is lost |
| ``CENSUSTRACE_OPENLINEAGE_SPEC_DIR`` | ``<checkout>/../shared/openlineage-spec`` | OpenLineage schemas |
| ``CENSUSTRACE_API_PORT`` | ``8000`` | port of the lineage API (``censustrace serve``) |
| ``CENSUSTRACE_API_WORKERS`` | CPU count, 2 to 8 | server processes of ``censustrace api``/``viewer`` |
| ``CENSUSTRACE_PUBLIC_URL`` | ``http://127.0.0.1:$API_PORT`` | where browsers reach the viewer |
| ``CENSUSTRACE_VIEWER_SESSION_MINUTES`` | ``30`` | viewer sessions end after this long idle (12 h at most) |
| ``CENSUSTRACE_LA`` | ``330`` | the local authority this instance serves |
| ``CENSUSTRACE_POLICIES_DIR`` | ``<checkout>/policies`` | fields, purposes, rules, agreements, schemas |
| ``CENSUSTRACE_SHARE_OUTBOX`` | ``$HOME/shares/outbox`` | released shares, one folder per recipient |
| ``CENSUSTRACE_EXPECTATIONS_DIR`` | ``<checkout>/expectations`` | data quality suites (GX file context) |
| ``CENSUSTRACE_PUPIL_KEY_SECRET`` | generated: ``$HOME/pupil-key.secret`` | secret of pupil keys |
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_dir() -> Path | None:
    """The repository checkout when the package is installed editable from it, else None."""
    candidate = PACKAGE_DIR.parents[1]
    return candidate if (candidate / "pyproject.toml").is_file() and (candidate / "dags").is_dir() else None


def _default_home() -> Path:
    checkout = _checkout_dir()
    return checkout / ".censustrace" if checkout else Path.home() / ".censustrace"


def _default_policies_dir() -> Path:
    """The checkout's ``policies/`` (data sharing agreements and rules, see docs/policies.md)."""
    checkout = _checkout_dir()
    return checkout / "policies" if checkout else PACKAGE_DIR / "policies"


def _default_expectations_dir() -> Path:
    """The checkout's ``expectations/`` (GX suites, see docs/data-quality.md)."""
    checkout = _checkout_dir()
    return checkout / "expectations" if checkout else PACKAGE_DIR / "expectations"


def _default_api_workers() -> int:
    """One server process per core (lineage intake is CPU-bound), at least 2, at most 8."""
    return max(2, min(8, os.cpu_count() or 1))


class ConfigError(Exception):
    """A setting is missing, malformed or points somewhere unusable. Exit code 2 on the CLI."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CENSUSTRACE_", env_file=".env", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="CENSUSTRACE_HOME: root of all state")
    warehouse_url: str | None = Field(default=None, description="CENSUSTRACE_WAREHOUSE_URL")
    lineage_url: str | None = Field(default=None, description="CENSUSTRACE_LINEAGE_URL")
    lineage_http_url: str | None = Field(default=None, description="CENSUSTRACE_LINEAGE_HTTP_URL")
    lineage_http_api_key: SecretStr | None = Field(
        default=None, description="CENSUSTRACE_LINEAGE_HTTP_API_KEY"
    )
    lineage_namespace: str = Field(default="censustrace", description="CENSUSTRACE_LINEAGE_NAMESPACE")
    airflow_db_url: str | None = Field(default=None, description="CENSUSTRACE_AIRFLOW_DB_URL")
    airflow_parallelism: int = Field(default=2, ge=1, le=64, description="CENSUSTRACE_AIRFLOW_PARALLELISM")
    airflow_port: int = Field(default=8080, ge=1, le=65535, description="CENSUSTRACE_AIRFLOW_PORT")
    celery_broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="CENSUSTRACE_CELERY_BROKER_URL"
    )
    celery_workers: int = Field(default=2, ge=1, le=32, description="CENSUSTRACE_CELERY_WORKERS")
    celery_worker_concurrency: int = Field(
        default=1, ge=1, le=64, description="CENSUSTRACE_CELERY_WORKER_CONCURRENCY"
    )
    task_heartbeat_timeout: int = Field(
        default=60, ge=10, le=3600, description="CENSUSTRACE_TASK_HEARTBEAT_TIMEOUT"
    )
    api_port: int = Field(default=8000, ge=1, le=65535, description="CENSUSTRACE_API_PORT")
    api_workers: int = Field(
        default_factory=_default_api_workers, ge=1, le=64, description="CENSUSTRACE_API_WORKERS"
    )
    public_url: str | None = Field(default=None, description="CENSUSTRACE_PUBLIC_URL")
    openlineage_spec_dir: Path | None = Field(default=None, description="CENSUSTRACE_OPENLINEAGE_SPEC_DIR")
    la: str = Field(default="330", pattern=r"^\d{3}$", description="CENSUSTRACE_LA")
    viewer_session_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="CENSUSTRACE_VIEWER_SESSION_MINUTES"
    )
    policies_dir: Path = Field(default_factory=_default_policies_dir, description="CENSUSTRACE_POLICIES_DIR")
    share_outbox: Path | None = Field(default=None, description="CENSUSTRACE_SHARE_OUTBOX")
    expectations_dir: Path = Field(
        default_factory=_default_expectations_dir, description="CENSUSTRACE_EXPECTATIONS_DIR"
    )
    pupil_key_secret: SecretStr | None = Field(default=None, description="CENSUSTRACE_PUPIL_KEY_SECRET")

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    # Folders -----------------------------------------------------------------------------------------
    @property
    def landing_dir(self) -> Path:
        """Where received census files arrive (schools' uploads, the generator's output)."""
        return self.home / "landing"

    @property
    def archive_dir(self) -> Path:
        """Content-addressed, read-only copies of every received file, by sha256."""
        return self.home / "archive"

    @property
    def quarantine_dir(self) -> Path:
        return self.home / "quarantine"

    @property
    def outbox_dir(self) -> Path:
        """Lineage events not yet delivered to an external backend."""
        return self.home / "outbox"

    @property
    def shares_dir(self) -> Path:
        return self.home / "shares"

    @property
    def share_outbox_dir(self) -> Path:
        """Released shares, ``<recipient>/<file>`` (apart from ``outbox_dir``, which holds lineage)."""
        return self.share_outbox or self.shares_dir / "outbox"

    @property
    def quality_dir(self) -> Path:
        """Data quality output: never in the checkout's ``expectations/``, which holds only suites."""
        return self.home / "quality"

    @property
    def data_docs_dir(self) -> Path:
        """GX Data Docs (static HTML), one set of pages per validated extract; served at /data-docs/."""
        return self.quality_dir / "data-docs"

    @property
    def airflow_home(self) -> Path:
        return self.home / "airflow"

    @property
    def dags_dir(self) -> Path:
        checkout = _checkout_dir()
        return checkout / "dags" if checkout else PACKAGE_DIR / "dags"

    @property
    def plugins_dir(self) -> Path:
        checkout = _checkout_dir()
        return checkout / "plugins" if checkout else PACKAGE_DIR / "plugins"

    # Databases ---------------------------------------------------------------------------------------
    @property
    def viewer_base_url(self) -> str:
        """Where users' browsers reach our web app (Data Docs, trace pages): no trailing slash."""
        return (self.public_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    @property
    def warehouse_db_url(self) -> str:
        return self.warehouse_url or f"sqlite:///{self.home / 'warehouse.db'}"

    @property
    def lineage_db_url(self) -> str:
        return self.lineage_url or f"sqlite:///{self.home / 'lineage.db'}"

    @property
    def airflow_metadata_url(self) -> str:
        return self.airflow_db_url or f"sqlite:///{self.airflow_home / 'airflow.db'}"

    def state_dirs(self) -> list[Path]:
        return [
            self.home,
            self.landing_dir,
            self.archive_dir,
            self.quarantine_dir,
            self.outbox_dir,
            self.shares_dir,
            self.airflow_home,
        ]

    def ensure_dirs(self) -> None:
        """Create every state folder; a clear ConfigError if the home cannot be written."""
        for folder in self.state_dirs():
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ConfigError(
                    f"CENSUSTRACE_HOME={self.home}: cannot create {folder} ({exc.strerror})"
                ) from exc
        if not os.access(self.home, os.W_OK | os.X_OK):
            raise ConfigError(f"CENSUSTRACE_HOME={self.home} is not writable")

    def pupil_key(self) -> bytes:
        """The secret behind pupil keys (HMAC of a UPN); generated once per home if not set."""
        if self.pupil_key_secret is not None:
            return self.pupil_key_secret.get_secret_value().encode()
        path = self.home / "pupil-key.secret"
        if not path.exists():
            self.ensure_dirs()
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return path.read_text().strip().encode()

    def airflow_env(self, executor: str = "LocalExecutor") -> dict[str, str]:
        """Environment for the embedded Airflow: its home, SQLite metadata DB, our DAGs and lineage.
        ``executor="CeleryExecutor"`` adds the broker and the workers' settings."""
        env = {
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_dir),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.plugins_dir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__PARALLELISM": str(self.airflow_parallelism),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.airflow_metadata_url,
            "AIRFLOW__API__PORT": str(self.airflow_port),
            # Task workers (LocalExecutor, Celery) report to the API server's execution API.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{self.airflow_port}/execution/",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL": "30",
            "AIRFLOW__OPENLINEAGE__NAMESPACE": self.lineage_namespace,
            "AIRFLOW__OPENLINEAGE__DISABLED": "False",
            # Airflow's workers send over HTTP without waiting (AsyncHttpTransport, outbox behind it).
            "AIRFLOW__OPENLINEAGE__TRANSPORT": self.openlineage_transport_json(http_async=True),
            "CENSUSTRACE_HOME": str(self.home),
        }
        if executor == "CeleryExecutor":
            env |= {
                # A task whose worker died stops heartbeating; after this long it is retried elsewhere.
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(self.task_heartbeat_timeout),
                "AIRFLOW__CELERY__BROKER_URL": self.celery_broker_url,
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery_worker_concurrency),
                # One sync process: the executor runs inside the DAG runner, not a scheduler.
                "AIRFLOW__CELERY__SYNC_PARALLELISM": "1",
                # The broker answers within seconds or counts as down (no hour-long retries).
                "AIRFLOW__CELERY__OPERATION_TIMEOUT": "5",
                # A message taken by a worker that died before starting the task goes back to the
                # queue after this long (Airflow's default is a day). A redelivered message whose task
                # is still running elsewhere is ignored by the worker (TaskAlreadyRunningError).
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": str(
                    5 * self.task_heartbeat_timeout
                ),
            }
        return env

    def openlineage_transport(self, *, http_async: bool = False) -> dict[str, object]:
        """The one OpenLineage transport config (Airflow provider, CLI, tests): the lineage store, plus
        ``CENSUSTRACE_LINEAGE_HTTP_URL`` if set, with an outbox for what cannot be delivered yet. The
        HTTP API key is read from the environment by the transport, so it never appears in Airflow's
        configuration."""
        return {
            "type": "censustrace.lineage.transport.CensustraceTransport",
            "store_url": self.lineage_db_url,
            "http_url": self.lineage_http_url,
            "outbox_dir": str(self.outbox_dir),
            "http_async": http_async,
        }

    def openlineage_transport_json(self, *, http_async: bool = False) -> str:
        import json

        return json.dumps(self.openlineage_transport(http_async=http_async))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
