"""The session's own ``CENSUSTRACE_HOME`` (set up by tests/conftest.py) as fixtures: its settings, its
migrated Airflow metadata DB and lineage store, and an emptied landing/archive for pipeline runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from censustrace.config import Settings, get_settings

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def settings() -> Settings:
    s = get_settings()
    s.ensure_dirs()
    return s


@pytest.fixture(scope="session")
def airflow_db(settings: Settings) -> Settings:
    """Airflow's metadata DB and the lineage store (with the viewer's tables) for this session's home,
    migrated once."""
    from censustrace.lineage.store.db import upgrade
    from censustrace.viewer.db import upgrade as upgrade_viewer

    upgrade(settings.lineage_db_url)
    upgrade_viewer(settings.lineage_db_url)
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
