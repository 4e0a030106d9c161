"""Test-wide isolation: one throwaway CENSUSTRACE_HOME (and so one embedded Airflow) per test session.

Airflow reads its configuration when first imported, so the environment is set here, at import time,
before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="censustrace-test-"))
os.environ["CENSUSTRACE_HOME"] = str(_HOME)
for _var in [v for v in os.environ if v.startswith("AIRFLOW__") or v == "AIRFLOW_HOME"]:
    del os.environ[_var]

from censustrace.config import Settings, get_settings  # noqa: E402

get_settings.cache_clear()
os.environ.update(get_settings().airflow_env())

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = get_settings()
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def airflow_db(settings: Settings) -> Settings:
    """Airflow's metadata DB and the lineage store for this session's home, migrated once."""
    from censustrace.lineage.store.db import upgrade

    upgrade(settings.lineage_db_url)
    subprocess.run(
        [str(VENV_BIN / "airflow"), "db", "migrate"],
        check=True,
        capture_output=True,
        env={**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    return settings


@pytest.fixture
def clean_state(settings: Settings) -> Settings:
    """Empty landing, archive and receipts around a test that runs the pipeline."""
    for folder in (settings.landing_dir, settings.archive_dir, settings.quarantine_dir):
        if folder.exists():
            for p in folder.rglob("*"):
                p.chmod(0o755 if p.is_dir() else 0o644)
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    (settings.home / "receipts.jsonl").unlink(missing_ok=True)
    return settings


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CENSUSTRACE_KEEP_TEST_HOME") != "1":
        for p in _HOME.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(_HOME, ignore_errors=True)
