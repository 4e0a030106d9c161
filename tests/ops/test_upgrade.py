"""``censustrace init`` upgrades a home made by the previous release (commit db1c8b7, rebuilt by
tests/fixtures/make-home-db1c8b7.sh): new tables, SQLite datasets renamed from the database path to the
instance name with the old names still resolving, share files recorded relative to the outbox. The home
is unpacked in another folder than the one it was made in, so this is also a restore elsewhere.

PostgreSQL: the same release builds a home on the local server when its source is in this repository's
history (``git archive db1c8b7``); skipped with the reason otherwise."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from censustrace.lineage.store.db import current_revision, make_engine
from censustrace.lineage.store.tables import dataset_aliases, datasets, namespaces
from censustrace.viewer.db import current_revision as viewer_revision
from censustrace.warehouse.db import current_revision as warehouse_revision
from censustrace.warehouse.db import dispose_engines

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "home-db1c8b7.tar.gz"
OLD_HOME = "/tmp/censustrace-old-home"  # where the fixture was made: its records name this folder
SECRET = "fixture-secret-not-for-production"
CLI = str(Path(sys.executable).parent / "censustrace")
OLD_RELEASE = "db1c8b7"


def _run(env: dict[str, str], *args: str, json_out: bool = True) -> Any:
    proc = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=600, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 0, f"{args}: {proc.stderr}{proc.stdout}"
    return json.loads(proc.stdout) if json_out else proc.stdout


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CENSUSTRACE_", "AIRFLOW"))}
    return {**env, "CENSUSTRACE_HOME": str(home), "CENSUSTRACE_PUPIL_KEY_SECRET": SECRET, **extra}


def _sqlite_names(url: str) -> tuple[list[str], list[str]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            names = conn.execute(
                select(datasets.c.name)
                .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
                .where(namespaces.c.name == "sqlite")
            ).scalars()
            aliases = conn.execute(select(dataset_aliases.c.name)).scalars()
            return sorted(names), sorted(aliases)
    finally:
        engine.dispose()


def _check_upgraded(env: dict[str, str], warehouse_url: str, lineage_url: str, *, sqlite: bool) -> None:
    first = _run(env, "init", "--json")
    assert first["status"] == "ready"
    assert first["instance"] == "censustrace-la330"
    engine = make_engine(lineage_url)
    try:
        assert current_revision(engine) == "0007"
        # The old lineage chain had made the viewer's tables; the viewer's own chain adopted them.
        assert viewer_revision(engine) == "0001"
    finally:
        engine.dispose()
    wh = make_engine(warehouse_url)
    try:
        assert warehouse_revision(wh) == "0011"
        with wh.connect() as conn:
            paths = [str(p) for p in conn.exec_driver_sql("SELECT file_path FROM shares").scalars()]
    finally:
        wh.dispose()
    assert paths
    assert all(not p.startswith("/") and p.count("/") == 1 for p in paths), paths
    if sqlite:
        renamed = {r["from"]: r["to"] for r in first["renamed_datasets"]}
        assert renamed[f"{OLD_HOME}/warehouse.db.pupil"] == "censustrace-la330.pupil"
        names, aliases = _sqlite_names(lineage_url)
        assert names
        assert all(n.startswith("censustrace-la330.") for n in names), names
        assert f"{OLD_HOME}/warehouse.db.pupil" in aliases
    # Idempotent: a second init renames nothing.
    assert _run(env, "init", "--json")["renamed_datasets"] == []

    verified = _run(env, "shares", "verify", "--json")
    assert verified["problems"] == []
    assert verified["ok"] is True
    (old_share,) = _run(env, "shares", "list", "--json")
    received = {s["sha256"] for s in _run(env, "trace", old_share["share_id"], "--json")["sources"]}
    archived = {p.name for p in (Path(env["CENSUSTRACE_HOME"]) / "archive").glob("??/*")}
    assert received
    assert received <= archived
    extracts = _run(env, "status", "--json")["extracts"]
    assert extracts == {"loaded": 2}
    if sqlite:
        # The old name of a renamed dataset still traces, to the same files.
        old = _run(env, "trace", f"dataset:sqlite:{OLD_HOME}/warehouse.db.pupil", "--json")
        assert old["resolved"]["kind"] == "dataset"
        assert old["target"]["name"] == "censustrace-la330.pupil"
        assert len(old["sources"]) == 1
        assert {s["sha256"] for s in old["sources"]} <= archived
    # A share made after the upgrade reads the renamed datasets: it traces to the files received before.
    new_share = _run(env, "share", "la330-admissions-2026", "--json")
    assert new_share["status"] == "delivered"
    again = _run(env, "trace", new_share["share_id"], "--json")
    assert {s["sha256"] for s in again["sources"]} == received
    assert _run(env, "shares", "verify", "--json")["ok"] is True
    # The adopted api_tokens table takes the kinds added since (revision 0004 of the lineage chain).
    assert _run(env, "tokens", "add", "airflow-workers", "--kind", "pipeline", "--json")["kind"] == "pipeline"


def test_init_upgrades_a_sqlite_home_of_the_previous_release(tmp_path: Path) -> None:
    if Path(OLD_HOME).exists():
        pytest.skip(f"{OLD_HOME} exists: the fixture must be unpacked where it was not made")
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="tar")
    home = tmp_path / "restored-home"
    (tmp_path / "censustrace-old-home").rename(home)
    dispose_engines()
    _check_upgraded(
        _env(home),
        f"sqlite:///{home / 'warehouse.db'}",
        f"sqlite:///{home / 'lineage.db'}",
        sqlite=True,
    )


@pytest.mark.postgres
def test_init_upgrades_a_postgresql_home_of_the_previous_release(
    tmp_path: Path, new_postgres_database: Any
) -> None:
    old_src = tmp_path / "old"
    old_src.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", OLD_RELEASE, "src", "policies", "expectations"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {OLD_RELEASE} is not in this clone's history (shallow clone?)")
    subprocess.run(["tar", "-x", "-C", str(old_src)], input=archive.stdout, check=True)
    spec = old_src / "spec"
    shutil.copytree(REPO / "src" / "censustrace" / "lineage" / "schemas" / "openlineage", spec)
    warehouse_url, lineage_url = new_postgres_database(), new_postgres_database()
    home = tmp_path / "first-home"
    old_env = _env(
        home,
        PYTHONPATH=str(old_src / "src"),
        CENSUSTRACE_WAREHOUSE_URL=warehouse_url,
        CENSUSTRACE_LINEAGE_URL=lineage_url,
        CENSUSTRACE_OPENLINEAGE_SPEC_DIR=str(spec),
        CENSUSTRACE_POLICIES_DIR=str(old_src / "policies"),
        CENSUSTRACE_EXPECTATIONS_DIR=str(old_src / "expectations"),
    )
    old_cli = [
        sys.executable,
        "-c",
        "import sys; from censustrace.cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    build = (
        "from censustrace.config import get_settings as g\n"
        "from censustrace.lineage.store.db import upgrade as l\n"
        "from censustrace.warehouse.db import upgrade as w\n"
        "s = g(); s.ensure_dirs(); l(s.lineage_db_url); w(s.warehouse_db_url)\n"
    )
    subprocess.run([sys.executable, "-c", build], env=old_env, check=True, timeout=300)
    sample = tmp_path / "sample"

    def old_release(*args: str) -> None:
        proc = subprocess.run([*old_cli, *args], env=old_env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr

    old_release(
        "generate", "--schools", "2", "--pupils-per-school", "12", "--seed", "5", "--out", str(sample)
    )
    old_release("ingest", *sorted(str(p) for p in sample.glob("*.xml")))
    old_release("share", "la330-admissions-2026", "--as-of", "2026-10-15")
    moved = tmp_path / "restored-home"
    shutil.move(home, moved)
    dispose_engines()
    _check_upgraded(
        _env(moved, CENSUSTRACE_WAREHOUSE_URL=warehouse_url, CENSUSTRACE_LINEAGE_URL=lineage_url),
        warehouse_url,
        lineage_url,
        sqlite=False,
    )
