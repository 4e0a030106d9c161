"""Test-wide isolation: one throwaway CENSUSTRACE_HOME (and so one embedded Airflow) per test session.

Airflow reads its configuration when first imported, so the environment is set here, at import time,
before any test module imports Airflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_HOME = Path(tempfile.mkdtemp(prefix="censustrace-test-"))
os.environ["CENSUSTRACE_HOME"] = str(_HOME)
for _var in [v for v in os.environ if v.startswith("AIRFLOW__") or v == "AIRFLOW_HOME"]:
    del os.environ[_var]

from censustrace.config import get_settings  # noqa: E402
from censustrace.consent.clock import release_day  # noqa: E402
from censustrace.consent.demo import render_demo_policies  # noqa: E402

# The demo agreements dated onto the academic year containing today, as `censustrace pipeline` writes
# them: tests that run the demo's shares (share DAGs, viewer) get the same outcomes on any date.
_DEMO_POLICIES = render_demo_policies(
    Path(__file__).resolve().parents[1] / "policies", _HOME / "policies", release_day()
)
os.environ["CENSUSTRACE_POLICIES_DIR"] = str(_DEMO_POLICIES)
get_settings.cache_clear()
os.environ.update(get_settings().airflow_env())

# Fixtures live in plugin modules (tests/plugins/); plain helpers in tests/plugins/helpers/. Registered
# here only: pytest reads `pytest_plugins` from the root conftest alone. Imported after the environment
# above is set, so they see this session's home.
pytest_plugins = [
    "tests.plugins.postgres",
    "tests.plugins.home",
    "tests.plugins.warehouse",
    "tests.plugins.shares",
    "tests.plugins.dags",
]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if os.environ.get("CENSUSTRACE_KEEP_TEST_HOME") != "1":
        for p in _HOME.rglob("*"):
            if not p.is_symlink():
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(_HOME, ignore_errors=True)
