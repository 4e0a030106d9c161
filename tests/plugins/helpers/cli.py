"""Running the real ``censustrace`` entry point in a subprocess, as a user does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from censustrace.config import Settings
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET

CLI = str(Path(sys.executable).parent / "censustrace")
SHARE_KEYS = {"share_id", "agreement", "status", "pupils", "excluded", "file", "sha256", "reasons"}


def run(settings: Settings, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The command run against the instance of ``settings``, addressed by environment only."""
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(settings.home),
        "CENSUSTRACE_WAREHOUSE_URL": settings.warehouse_db_url,
        "CENSUSTRACE_LINEAGE_URL": settings.lineage_db_url,
        "CENSUSTRACE_PUPIL_KEY_SECRET": PUPIL_KEY_SECRET,
        "CENSUSTRACE_POLICIES_DIR": str(settings.policies_dir),
    }
    proc = subprocess.run(
        [CLI, *args], input=stdin, capture_output=True, text=True, env=env, timeout=180, check=False
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def share_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The share a ``share … --json`` command printed."""
    result: dict[str, Any] = json.loads(proc.stdout)
    assert set(result) >= SHARE_KEYS
    return result
