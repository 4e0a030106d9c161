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
| ``CENSUSTRACE_LINEAGE_RETRY_SECONDS`` | ``60`` | workers and the viewer retry the outbox this often |
| ``CENSUSTRACE_LINEAGE_NAMESPACE`` | ``censustrace`` | OpenLineage namespace of our jobs |
| ``CENSUSTRACE_AIRFLOW_DB_URL`` | ``sqlite:///$HOME/airflow/airflow.db`` | Airflow metadata DB |
| ``CENSUSTRACE_AIRFLOW_PARALLELISM`` | ``2`` | LocalExecutor parallelism |
| ``CENSUSTRACE_AIRFLOW_PORT`` | ``8080`` | port of the Airflow UI/API server |
| ``CENSUSTRACE_CELERY_BROKER_URL`` | ``redis://127.0.0.1:6379/0`` | Celery broker (``--executor celery``) |
| ``CENSUSTRACE_CELERY_WORKERS`` | ``2`` | Celery worker processes ``pipeline --executor celery`` starts |
| ``CENSUSTRACE_CELERY_WORKER_CONCURRENCY`` | ``1`` | task slots per Celery worker |
| ``CENSUSTRACE_TASK_HEARTBEAT_TIMEOUT`` | ``60`` | seconds without a heartbeat: the task's worker is lost |
| ``CENSUSTRACE_API_PORT`` | ``8000`` | port of the lineage API (``censustrace serve``) |
| ``CENSUSTRACE_API_WORKERS`` | CPU count, 2 to 8 | server processes of ``censustrace api``/``viewer`` |
| ``CENSUSTRACE_PUBLIC_URL`` | ``http://127.0.0.1:$API_PORT`` | where browsers reach the viewer |
| ``CENSUSTRACE_VIEWER_SESSION_MINUTES`` | ``30`` | viewer sessions end after this long idle (12 h at most) |
| ``CENSUSTRACE_VIEWER_TIMEZONE`` | ``Europe/London`` | IANA time zone the viewer shows times in |
| ``CENSUSTRACE_VIEWER_AIRFLOW_ROLES`` | ``Admin=compliance,Op=engineer,...`` | Airflow → viewer roles |
| ``CENSUSTRACE_LA`` | ``330`` | the local authority this instance serves |
| ``CENSUSTRACE_INSTANCE`` | ``censustrace-la$LA`` | this instance's name in SQLite and file dataset names |
| ``CENSUSTRACE_POLICIES_DIR`` | ``<checkout>/policies`` (or ``$HOME/policies``) | agreements and rules |
| ``CENSUSTRACE_SHARE_OUTBOX`` | ``$HOME/shares/outbox`` | released shares, one folder per recipient |
| ``CENSUSTRACE_EXPECTATIONS_DIR`` | ``<checkout>/expectations`` (or ``$HOME/…``) | GX suites |
| ``CENSUSTRACE_PUPIL_KEY_SECRET`` | generated: ``$HOME/pupil-key.secret`` | secret of pupil keys |
| ``CENSUSTRACE_CSV_UNKNOWN_COLUMNS`` | ``warn`` | LA CSV column a table does not have: warn or quarantine |
| ``CENSUSTRACE_CSV_SIDE_TABLE_MAX_ROWS`` | ``200000`` | most rows of an address/FSM table |
| ``CENSUSTRACE_INGEST_BATCH_FILES`` | ``200`` | files per ``census_ingest`` batch task at most |
| ``CENSUSTRACE_INGEST_BATCH_BYTES`` | ``268435456`` | bytes of files per batch at most |
| ``CENSUSTRACE_VALIDATE_BATCH_ROWS`` | ``200000`` | staged rows per GX run over a batch at most |
| ``CENSUSTRACE_CONTROLLER_NAME`` | ``Local authority $LA`` | the controller named in the Art 30 record |
| ``CENSUSTRACE_CONTROLLER_ADDRESS`` | unset | its postal address (Art 30(1)(a)) |
| ``CENSUSTRACE_CONTROLLER_CONTACT`` | unset | its contact (email or telephone) |
| ``CENSUSTRACE_DPO_NAME`` | unset | the data protection officer |
| ``CENSUSTRACE_DPO_CONTACT`` | unset | the DPO's contact |
| ``CENSUSTRACE_SECURITY_MEASURES`` | a description of this system's | Art 30(1)(g) general description |
| ``CENSUSTRACE_TRANSFERS_OUTSIDE_UK`` | ``{}`` (none) | JSON: recipient name -> country and safeguard |
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent


def _checkout_dir() -> Path | None:
    """The repository checkout when the package is installed editable from it, else None."""
    candidate = PACKAGE_DIR.parents[1]
    return candidate if (candidate / "pyproject.toml").is_file() and (candidate / "dags").is_dir() else None


def _default_home() -> Path:
    checkout = _checkout_dir()
    return checkout / ".censustrace" if checkout else Path.home() / ".censustrace"


def _default_policies_dir(data: dict[str, Any]) -> Path:
    """The checkout's ``policies/`` (data sharing agreements and rules, see docs/policies.md); an
    installed package (no checkout) reads ``$CENSUSTRACE_HOME/policies`` (see docs/operations.md)."""
    checkout = _checkout_dir()
    home = Path(data.get("home") or _default_home())
    return checkout / "policies" if checkout else home / "policies"


def _default_expectations_dir(data: dict[str, Any]) -> Path:
    """The checkout's ``expectations/`` (GX suites, see docs/data-quality.md); an installed package
    reads ``$CENSUSTRACE_HOME/expectations``."""
    checkout = _checkout_dir()
    home = Path(data.get("home") or _default_home())
    return checkout / "expectations" if checkout else home / "expectations"


#: Art 30(1)(g): what this system does to keep pupil data secure (override to add the host's own measures).
SECURITY_MEASURES = (
    "Named viewer users with roles and argon2-hashed passwords, API tokens stored hashed, sessions that end "
    "when idle; every subject access and export logged; pupil identifiers replaced by keyed pseudonyms "
    "(HMAC-SHA256 pupil keys) in logs, lineage and the disclosure log; received files kept read-only and "
    "content-addressed by sha256; every share checked against a written agreement before it is built and "
    "released only once its lineage is recorded; retention enforced in every copy with tombstones."
)


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
    lineage_retry_seconds: float = Field(
        default=60, ge=0, le=24 * 3600, description="CENSUSTRACE_LINEAGE_RETRY_SECONDS"
    )
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
    la: str = Field(default="330", pattern=r"^\d{3}$", description="CENSUSTRACE_LA")
    # No dots or slashes: dataset names split at their last dot (docs/lineage.md).
    instance: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$", description="CENSUSTRACE_INSTANCE"
    )
    viewer_session_minutes: int = Field(
        default=30, ge=1, le=24 * 60, description="CENSUSTRACE_VIEWER_SESSION_MINUTES"
    )
    viewer_timezone: str = Field(default="Europe/London", description="CENSUSTRACE_VIEWER_TIMEZONE")
    viewer_airflow_roles: str = Field(
        default="Admin=compliance,Op=engineer,User=engineer,Viewer=auditor",
        description="CENSUSTRACE_VIEWER_AIRFLOW_ROLES",
    )
    policies_dir: Path = Field(default_factory=_default_policies_dir, description="CENSUSTRACE_POLICIES_DIR")
    share_outbox: Path | None = Field(default=None, description="CENSUSTRACE_SHARE_OUTBOX")
    expectations_dir: Path = Field(
        default_factory=_default_expectations_dir, description="CENSUSTRACE_EXPECTATIONS_DIR"
    )
    pupil_key_secret: SecretStr | None = Field(default=None, description="CENSUSTRACE_PUPIL_KEY_SECRET")
    csv_unknown_columns: Literal["warn", "quarantine"] = Field(
        default="warn", description="CENSUSTRACE_CSV_UNKNOWN_COLUMNS"
    )
    csv_side_table_max_rows: int = Field(
        default=200_000, ge=1, description="CENSUSTRACE_CSV_SIDE_TABLE_MAX_ROWS"
    )
    # A batch of files is census_ingest's unit of work (docs/scaling.md): few task instances, GX once.
    ingest_batch_files: int = Field(
        default=200, ge=1, le=100_000, description="CENSUSTRACE_INGEST_BATCH_FILES"
    )
    ingest_batch_bytes: int = Field(
        default=256 * 1024 * 1024, ge=1, description="CENSUSTRACE_INGEST_BATCH_BYTES"
    )
    # Bounds the validation frame (memory), whatever the batch's file count and file sizes.
    validate_batch_rows: int = Field(default=200_000, ge=1, description="CENSUSTRACE_VALIDATE_BATCH_ROWS")
    # The record of processing (Art 30, censustrace.compliance.article30): who the controller is.
    controller_name: str | None = Field(default=None, description="CENSUSTRACE_CONTROLLER_NAME")
    controller_address: str | None = Field(default=None, description="CENSUSTRACE_CONTROLLER_ADDRESS")
    controller_contact: str | None = Field(default=None, description="CENSUSTRACE_CONTROLLER_CONTACT")
    dpo_name: str | None = Field(default=None, description="CENSUSTRACE_DPO_NAME")
    dpo_contact: str | None = Field(default=None, description="CENSUSTRACE_DPO_CONTACT")
    security_measures: str = Field(default=SECURITY_MEASURES, description="CENSUSTRACE_SECURITY_MEASURES")
    transfers_outside_uk: dict[str, str] = Field(
        default_factory=dict, description="CENSUSTRACE_TRANSFERS_OUTSIDE_UK"
    )

    @field_validator("viewer_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"CENSUSTRACE_VIEWER_TIMEZONE={value!r} is not an IANA time zone") from exc
        return value

    @field_validator("viewer_airflow_roles")
    @classmethod
    def _role_map(cls, value: str) -> str:
        allowed = {"compliance", "engineer", "auditor"}
        for item in filter(None, (part.strip() for part in value.split(","))):
            airflow_role, sep, viewer_role = item.partition("=")
            if not sep or not airflow_role.strip() or viewer_role.strip() not in allowed:
                raise ValueError(
                    f"CENSUSTRACE_VIEWER_AIRFLOW_ROLES: {item!r} is not "
                    "AIRFLOW_ROLE=compliance|engineer|auditor"
                )
        return value

    def airflow_role_map(self) -> dict[str, str]:
        """Airflow role (lower case) -> viewer role, from ``CENSUSTRACE_VIEWER_AIRFLOW_ROLES``."""
        found: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in self.viewer_airflow_roles.split(","))):
            airflow_role, _, viewer_role = item.partition("=")
            found[airflow_role.strip().lower()] = viewer_role.strip()
        return found

    @field_validator("home")
    @classmethod
    def _absolute_home(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("warehouse_url", "lineage_url", "airflow_db_url")
    @classmethod
    def _usable_database_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Raised as is (not a ValueError): one line with its code and the variable, exit code 2.
        from censustrace.dburl import check_database_url
        from censustrace.errors import CensustraceError

        if not value or not value.strip():  # unset, or empty in .env: the default
            return None
        try:
            return check_database_url(value)
        except CensustraceError as exc:
            exc.message = f"CENSUSTRACE_{str(info.field_name).upper()}: {exc.message}"
            raise

    @field_validator("lineage_http_url", "public_url")
    @classmethod
    def _usable_http_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        from censustrace.dburl import check_http_url
        from censustrace.errors import CensustraceError

        if not value or not value.strip():  # unset, or empty in .env: the default
            return None
        try:
            return check_http_url(value)
        except CensustraceError as exc:
            exc.message = f"CENSUSTRACE_{str(info.field_name).upper()}: {exc.message}"
            exc.exit_code = 2
            raise

    @property
    def instance_name(self) -> str:
        """This instance's name in lineage (SQLite and home-file dataset names): the same wherever the
        home is mounted, so a moved or restored home keeps its lineage."""
        return self.instance or f"censustrace-la{self.la}"

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

    def pupil_key_secret_value(self) -> bytes:
        """The secret pupil keys are derived with (a pupil key is the HMAC of a UPN under it): the
        ``pupil_key_secret`` setting, else ``$CENSUSTRACE_HOME/pupil-key.secret``, generated once per
        home."""
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
            # Airflow workers drain the outbox at start and then this often (0: off).
            "drain_interval": self.lineage_retry_seconds,
            "http_async": http_async,
        }

    def openlineage_transport_json(self, *, http_async: bool = False) -> str:
        import json

        return json.dumps(self.openlineage_transport(http_async=http_async))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process; tests call ``get_settings.cache_clear()`` after changing env."""
    return Settings()
