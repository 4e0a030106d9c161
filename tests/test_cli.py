"""The censustrace command as a user runs it: real entry point, real exit codes, no tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.plugins.helpers.cli import CLI


def run(*args: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if home is not None:
        env["CENSUSTRACE_HOME"] = str(home)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["generate", "--out", "x", "--schools", "0"], "--schools"),
        (["generate", "--out", "x", "--pupils-per-school", "-3"], "--pupils-per-school"),
        (["generate", "--out", "x", "--term", "WINTER"], "--term"),
        (["generate", "--out", "x", "--faults", "1.5"], "--faults"),
        (["generate", "--out", "x", "--la", "33A"], "--la"),
        (["generate", "--out", "x", "--year", "1850"], "--year"),
        (["generate", "--schools", "3"], "--out"),
        (["generate", "--out", "x", "--format", "pdf"], "--format"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_bad_arguments_name_the_argument_and_exit_2(args: list[str], named: str, tmp_path: Path) -> None:
    proc = run(*args, home=tmp_path / "home")
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_generate_json_reports_what_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    proc = run(
        "generate",
        "--out",
        str(out),
        "--schools",
        "2",
        "--pupils-per-school",
        "5",
        "--seed",
        "3",
        "--json",
        home=tmp_path / "home",
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert result["files"] == len(manifest["files"]) == 2
    assert result["pupils"] == 10


def test_unwritable_home_is_a_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = run("status", "--json", home=blocker / "home")
    assert proc.returncode == 2
    assert "CENSUSTRACE_HOME" in proc.stderr
    assert "cannot create" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_environment_setting_names_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "CENSUSTRACE_HOME": str(tmp_path), "CENSUSTRACE_AIRFLOW_PORT": "eighty"}
    proc = subprocess.run([CLI, "status"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert "CENSUSTRACE_AIRFLOW_PORT" in proc.stderr


def test_deliver_then_status_counts_landed_files(tmp_path: Path) -> None:
    home = tmp_path / "home"
    out = tmp_path / "gen"
    assert (
        run("generate", "--out", str(out), "--schools", "3", "--pupils-per-school", "4", home=home).returncode
        == 0
    )
    proc = run("deliver", str(out), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["delivered"]) == 3
    status = json.loads(run("status", "--json", home=home).stdout)
    assert status == {"home": str(home), "landing": 3, "archived": 0, "quarantined": 0, "extracts": {}}


def test_ui_login_is_generated_once_and_private(tmp_path: Path) -> None:
    from censustrace.cli.viewer import _ui_login
    from censustrace.config import Settings

    settings = Settings(home=tmp_path)
    settings.ensure_dirs()
    first = _ui_login(settings)
    assert first == _ui_login(settings)
    assert len(first[1]) >= 16
    path = settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    assert path.stat().st_mode & 0o077 == 0
    assert json.loads(path.read_text()) == {"admin": first[1]}


def test_ingest_reports_each_file_and_exits_1_on_quarantine(tmp_path: Path) -> None:
    from tests.plugins.helpers.privacy import identifiers_in, leaks

    home, out = tmp_path / "home", tmp_path / "gen"
    assert (
        run(
            "generate", "--out", str(out), "--schools", "1", "--pupils-per-school", "20", home=home
        ).returncode
        == 0
    )
    (good,) = sorted(out.glob("SC_*.xml"))
    cut = tmp_path / "cut" / good.name  # the same school's file, truncated in transit
    cut.parent.mkdir()
    cut.write_bytes(good.read_bytes()[: len(good.read_bytes()) // 2])  # truncated in transit
    proc = run("ingest", str(good), str(cut), "--json", home=home)
    assert proc.returncode == 1, proc.stderr
    loaded, quarantined = (json.loads(line) for line in proc.stdout.splitlines())
    assert loaded["status"] == "loaded"
    assert loaded["rows"] == {"read": 20, "loaded": 20, "rejected": 0}
    assert quarantined["status"] == "quarantined"
    assert [e["code"] for e in quarantined["errors"]] == ["CT-PARSE-TRUNCATED"]
    assert leaks([proc.stdout, proc.stderr], identifiers_in([good])) == []
    # The same bytes again: a duplicate, nothing loaded twice.
    again = run("ingest", str(good), "--json", home=home)
    assert again.returncode == 0
    assert json.loads(again.stdout)["status"] == "duplicate"
    status = json.loads(run("status", "--json", home=home).stdout)
    assert status["extracts"] == {"duplicate": 1, "loaded": 1, "quarantined": 1}
    assert status["quarantined"] == 1


def test_ingest_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = run("ingest", str(tmp_path / "nope.xml"), home=tmp_path / "home")
    assert proc.returncode == 2
    assert "nope.xml" in proc.stderr


def test_wrong_database_credentials_name_the_setting_not_the_password(tmp_path: Path) -> None:
    """A real refused login (PostgreSQL here; any backend the driver reaches): one line, no traceback."""
    env = dict(os.environ)
    env["CENSUSTRACE_HOME"] = str(tmp_path / "home")
    env["CENSUSTRACE_LINEAGE_URL"] = "postgresql+psycopg2://no_such_role:Hunter2-Pw@127.0.0.1:5432/nowhere"
    proc = subprocess.run([CLI, "lineage", "export"], capture_output=True, text=True, env=env, timeout=120)
    if "Connection refused" in proc.stderr:
        pytest.skip("no PostgreSQL server at 127.0.0.1:5432")
    assert proc.returncode == 1, proc.stderr
    assert "CT-DB-UNREACHABLE" in proc.stderr
    assert "CENSUSTRACE_LINEAGE_URL" in proc.stderr
    assert "no_such_role" in proc.stderr
    assert "Hunter2-Pw" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("url", "code", "exit_code"),
    [
        ("postgresql+psycopg://someone:Hunter2-Pw@127.0.0.1:5432/x", "CT-DB-DRIVER", 2),
        ("postgresql+asyncpg://someone:Hunter2-Pw@127.0.0.1:5432/x", "CT-DB-DRIVER", 2),
        ("mysql://someone:Hunter2-Pw@127.0.0.1/x", "CT-DB-URL", 2),
        ("not a url at all", "CT-DB-URL", 2),
        ("postgresql://someone:Hunter2-Pw@127.0.0.1:5432", "CT-DB-URL", 2),
        ("postgresql://someone:Hunter2-Pw@127.0.0.1:1/x", "CT-DB-UNREACHABLE", 1),
        ("postgresql://someone:Hunter2-Pw@no-such-host.invalid:5432/x", "CT-DB-UNREACHABLE", 1),
    ],
)
def test_every_wrong_database_url_is_one_line_with_a_code(
    tmp_path: Path, url: str, code: str, exit_code: int
) -> None:
    """Wrong URL, missing or asyncio driver, unreachable server: one line, a stable code, the setting
    named, the password hidden, no traceback (``postgresql://`` alone means psycopg2, which is installed)."""
    env = {**os.environ, "CENSUSTRACE_HOME": str(tmp_path / "home"), "CENSUSTRACE_LINEAGE_URL": url}
    proc = subprocess.run([CLI, "lineage", "export"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == exit_code, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error {code}: "), lines[0]
    assert "CENSUSTRACE_LINEAGE_URL" in lines[0]
    assert "Hunter2-Pw" not in proc.stderr + proc.stdout


def test_a_wrong_http_url_is_one_line_with_a_code(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(tmp_path / "home"),
        "CENSUSTRACE_LINEAGE_HTTP_URL": "ftp://x",
    }
    proc = subprocess.run([CLI, "status"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error CT-URL: CENSUSTRACE_LINEAGE_HTTP_URL: 'ftp://x' is not an http(s) URL with a host"
    )


def test_postgresql_url_without_a_driver_means_psycopg2() -> None:
    from censustrace.config import Settings

    s = Settings(lineage_url="postgresql://u:p%40w@db.example:5433/lineage")
    assert s.lineage_db_url == "postgresql+psycopg2://u:p%40w@db.example:5433/lineage"
