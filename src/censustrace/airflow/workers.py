"""Celery workers on this machine for ``censustrace pipeline --executor celery``.

The pipeline command starts ``airflow celery worker`` processes (``CENSUSTRACE_CELERY_WORKERS``), each in
its own process group so that stopping one ends its task processes too, waits until each has joined the
broker, and stops them when the runs are done. Each writes ``$HOME/celery/worker-N.json`` (pid,
hostname, log) while it runs, for operators and tests that need to find one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from censustrace.config import Settings
from censustrace.errors import CensustraceError

READY_MARK = b" ready."


def redacted(url: str) -> str:
    """A broker URL fit for a message: the password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def check_broker(url: str, timeout: float = 3.0) -> None:
    """Fail fast with ``CT-BROKER`` when the Celery broker does not answer (rather than leaving tasks
    queued for ever)."""
    import redis

    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise CensustraceError(
            f"CENSUSTRACE_CELERY_BROKER_URL={redacted(url)}: only a Redis broker (redis://) is supported",
            code="CT-BROKER",
        )
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
    except redis.RedisError as exc:
        raise CensustraceError(
            f"the Celery broker at {redacted(url)} does not answer ({exc}); start Redis or set "
            "CENSUSTRACE_CELERY_BROKER_URL",
            code="CT-BROKER",
        ) from None


def check_metadata_db(settings: Settings) -> None:
    """Celery workers share Airflow's metadata DB over the network: SQLite cannot be shared."""
    if settings.airflow_metadata_url.startswith("sqlite"):
        raise CensustraceError(
            "the Celery executor needs Airflow's metadata DB on PostgreSQL: set CENSUSTRACE_AIRFLOW_DB_URL",
            code="CT-CONFIG",
        )


class CeleryWorkers:
    """``with CeleryWorkers(settings, env) as workers:`` N workers up and consuming, stopped on exit."""

    def __init__(self, settings: Settings, env: dict[str, str], *, ready_timeout: float = 180) -> None:
        self.settings = settings
        self.env = env
        self.ready_timeout = ready_timeout
        self.state_dir = settings.home / "celery"
        self.procs: list[tuple[subprocess.Popen[bytes], Path, Path]] = []
        self._previous_sigterm: Any = None

    def __enter__(self) -> CeleryWorkers:
        if threading.current_thread() is threading.main_thread():
            # `kill PID` of the pipeline command must stop its workers too: run the exit path.
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        logs = self.settings.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        airflow = str(Path(sys.executable).parent / "airflow")
        try:
            for n in range(1, self.settings.celery_workers + 1):
                # Unique per pipeline run: Celery refuses a second worker with a hostname already online.
                hostname = f"censustrace{n}-{os.getpid()}@%h"
                log = logs / f"celery-worker-{n}.log"
                cmd = [airflow, "celery", "worker", "--celery-hostname", hostname, "--skip-serve-logs"]
                cmd += ["--concurrency", str(self.settings.celery_worker_concurrency)]
                with log.open("wb") as fh:
                    proc = subprocess.Popen(
                        cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
                    )
                info = self.state_dir / f"worker-{n}.json"
                info.write_text(json.dumps({"pid": proc.pid, "hostname": hostname, "log": str(log)}))
                self.procs.append((proc, log, info))
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        waiting = list(self.procs)
        while waiting:
            for item in list(waiting):
                proc, log, _ = item
                if proc.poll() is not None:
                    raise CensustraceError(
                        f"a Celery worker stopped at start-up (exit {proc.returncode}); see {log}",
                        code="CT-WORKER",
                    )
                if READY_MARK in log.read_bytes():
                    waiting.remove(item)
            if waiting and time.monotonic() > deadline:
                raise CensustraceError(
                    f"{len(waiting)} Celery worker(s) not ready within {self.ready_timeout:.0f} s; "
                    f"see {waiting[0][1]}",
                    code="CT-WORKER",
                )
            time.sleep(0.5)

    def stop(self, timeout: float = 60) -> None:
        """Warm shutdown (SIGTERM: finish the task in hand), then SIGKILL what is left of each group."""
        for proc, _, _ in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc, _, info in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)
            proc.wait()
            info.unlink(missing_ok=True)
        self.procs = []

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        if self._previous_sigterm is not None:
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def describe(self) -> list[dict[str, Any]]:
        return [json.loads(info.read_text()) for _, _, info in self.procs if info.exists()]


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
