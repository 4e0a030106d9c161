from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from censustrace.config import ConfigError, Settings


def test_home_isolates_every_piece_of_state(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "one")
    for folder in s.state_dirs():
        assert folder.is_relative_to(tmp_path / "one")
    assert s.warehouse_db_url == f"sqlite:///{tmp_path / 'one' / 'warehouse.db'}"
    assert s.lineage_db_url == f"sqlite:///{tmp_path / 'one' / 'lineage.db'}"
    env = s.airflow_env()
    assert env["AIRFLOW_HOME"] == str(tmp_path / "one" / "airflow")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(f"sqlite:///{tmp_path / 'one'}")
    assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "False"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"].endswith("/dags")


def test_settings_read_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CENSUSTRACE_HOME", str(tmp_path / "h"))
    monkeypatch.setenv("CENSUSTRACE_WAREHOUSE_URL", "postgresql+psycopg2://u@db/w")
    monkeypatch.setenv("CENSUSTRACE_AIRFLOW_PARALLELISM", "4")
    s = Settings()
    assert s.home == tmp_path / "h"
    assert s.warehouse_db_url == "postgresql+psycopg2://u@db/w"
    assert s.airflow_env()["AIRFLOW__CORE__PARALLELISM"] == "4"


def test_malformed_setting_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CENSUSTRACE_LA", "33")
    with pytest.raises(ValidationError, match="la"):
        Settings()


def test_unwritable_home_gives_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"CENSUSTRACE_HOME=.*cannot create"):
        Settings(home=blocker / "home").ensure_dirs()


def test_pupil_key_secret_is_generated_once_and_private(tmp_path: Path) -> None:
    s = Settings(home=tmp_path)
    key = s.pupil_key_secret_value()
    assert len(key) == 64
    assert Settings(home=tmp_path).pupil_key_secret_value() == key
    assert (tmp_path / "pupil-key.secret").stat().st_mode & 0o077 == 0


def test_every_setting_is_documented_for_operators() -> None:
    """docs/operations.md and the config module's table name every environment variable there is."""
    from censustrace.config import Settings

    repo = Path(__file__).resolve().parents[1]
    operations = (repo / "docs" / "operations.md").read_text(encoding="utf-8")
    import censustrace.config as config

    for name in Settings.model_fields:
        variable = f"CENSUSTRACE_{name.upper()}"
        assert f"`{variable}`" in operations, variable
        assert f"``{variable}``" in (config.__doc__ or ""), variable


def test_an_installed_package_reads_policies_and_suites_from_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No checkout around the package (pip install, container): the reviewed folders live in the home
    unless their settings point elsewhere (docs/operations.md)."""
    import censustrace.config as config

    monkeypatch.setattr(config, "_checkout_dir", lambda: None)
    for variable in ("CENSUSTRACE_POLICIES_DIR", "CENSUSTRACE_EXPECTATIONS_DIR"):  # the suite sets them
        monkeypatch.delenv(variable, raising=False)
    s = Settings(home=tmp_path / "h")
    assert s.policies_dir == tmp_path / "h" / "policies"
    assert s.expectations_dir == tmp_path / "h" / "expectations"
    monkeypatch.setenv("CENSUSTRACE_POLICIES_DIR", str(tmp_path / "p"))
    monkeypatch.setenv("CENSUSTRACE_EXPECTATIONS_DIR", str(tmp_path / "e"))
    s = Settings(home=tmp_path / "h")
    assert (s.policies_dir, s.expectations_dir) == (tmp_path / "p", tmp_path / "e")


def test_instance_name_defaults_from_the_la_and_rejects_dots(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(la="341").instance_name == "censustrace-la341"
    assert Settings(instance="county-1").instance_name == "county-1"
    with pytest.raises(ValidationError, match="instance"):
        Settings(instance="a.b")


_IMPORTS_SCRIPT = """
import ast, json, pathlib, sys
out = []
for path in sorted(pathlib.Path(sys.argv[1]).rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(path.name, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((path.name, node.module))
print(json.dumps(out))
"""


def test_pyproject_lists_every_package_the_code_imports() -> None:
    """An installed package works without the checkout's requirements.txt: each third-party module the
    package imports belongs to a distribution named in pyproject.toml's dependencies."""
    import importlib.metadata
    import json
    import re
    import subprocess
    import sys
    import tomllib

    repo = Path(__file__).resolve().parents[1]
    project = tomllib.loads((repo / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    declared = {norm(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    owners = importlib.metadata.packages_distributions()
    missing: dict[str, str] = {}
    # ast.parse in a fresh interpreter: CPython 3.11.7 refuses it ("AST constructor recursion depth
    # mismatch") in a process that caught a RecursionError earlier (the lineage batch tests do).
    found = subprocess.run(
        [sys.executable, "-c", _IMPORTS_SCRIPT, str(repo / "src" / "censustrace")],
        capture_output=True,
        text=True,
        check=True,
    )
    for name, module in json.loads(found.stdout):
        top = module.split(".")[0]
        if top in sys.stdlib_module_names or top == "censustrace":
            continue
        dists = {norm(d) for d in owners.get(top, [])}
        assert dists, f"{name}: {top} is not installed"
        if not dists & declared:
            missing[top] = ", ".join(sorted(dists))
    assert not missing, f"imported but not in pyproject.toml dependencies: {missing}"
    for dist in ("argon2-cffi", "fpdf2", "pyyaml", "python-stdnum"):
        assert dist in declared, dist


def test_empty_url_settings_mean_the_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """.env.example leaves optional URLs empty: that is "not set", not a wrong URL."""
    for variable in ("CENSUSTRACE_LINEAGE_HTTP_URL", "CENSUSTRACE_PUBLIC_URL", "CENSUSTRACE_WAREHOUSE_URL"):
        monkeypatch.setenv(variable, "")
    s = Settings(home=tmp_path)
    assert s.lineage_http_url is None
    assert s.warehouse_db_url == f"sqlite:///{tmp_path / 'warehouse.db'}"
