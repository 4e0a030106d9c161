"""``censustrace quarantine list|show|retry|discard`` as a user runs them: real entry point, --json, exit
codes; a retry prints what ``ingest --json`` prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "censustrace")
ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "CENSUSTRACE_HOME": str(home), **env}
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=full, timeout=300)


def test_quarantine_commands_end_to_end(tmp_path: Path) -> None:
    home, out = tmp_path / "home", tmp_path / "gen"
    generated = run(
        "generate", "--out", str(out), "--schools", "2", "--pupils-per-school", "60", "--faults", "0.04",
        "--seed", "8", home=home,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr
    first, second = sorted(out.glob("SC_*.xml"))
    strict = tmp_path / "strict"
    shutil.copytree(ROOT / "expectations", strict)
    suite = strict / "suites" / "pupil.json"
    document = json.loads(suite.read_text())
    document["meta"]["censustrace"]["max_critical_share"] = 0.0
    suite.write_text(json.dumps(document))
    cut = tmp_path / "cut" / second.name
    cut.parent.mkdir()
    cut.write_bytes(second.read_bytes()[:-300])

    ingested = run(
        "ingest", str(first), str(cut), "--json", home=home, CENSUSTRACE_EXPECTATIONS_DIR=str(strict)
    )
    assert ingested.returncode == 1
    threshold, truncated = (json.loads(line) for line in ingested.stdout.splitlines())
    assert threshold["status"] == truncated["status"] == "quarantined"

    listed = json.loads(run("quarantine", "list", "--json", home=home).stdout)["quarantined"]
    assert [e["extract_id"] for e in listed] == [threshold["extract_id"], truncated["extract_id"]]
    assert all(e["state"] == "open" for e in listed)
    shown = run("quarantine", "show", truncated["extract_id"], "--json", home=home)
    assert shown.returncode == 0
    detail = json.loads(shown.stdout)
    assert [r["code"] for r in detail["reasons"]] == ["CT-PARSE-TRUNCATED"]
    assert detail["files"][0]["sha256"] == truncated["sha256"]

    retried = run("quarantine", "retry", threshold["extract_id"], "--json", home=home)
    assert retried.returncode == 0, retried.stderr
    (outcome,) = (json.loads(line) for line in retried.stdout.splitlines())
    assert set(outcome) == set(threshold)  # the same object as ingest --json
    assert outcome["status"] == "loaded"
    assert outcome["sha256"] == threshold["sha256"]
    assert outcome["extract_id"].startswith(threshold["extract_id"] + "-")

    # The retry's lineage event links the new extract to the original receipt's registry row and bytes.
    exported = run("lineage", "export", home=home)
    assert exported.returncode == 0, exported.stderr
    events = [json.loads(line) for line in exported.stdout.splitlines() if line.strip()]
    (event,) = [e for e in events if e["job"]["name"] == "censustrace.quarantine.retry"]
    inputs = {
        (i["name"].split("/")[-1].split(".")[-1], i["facets"]["version"]["datasetVersion"])
        for i in event["inputs"]
    }
    assert ("extracts", threshold["extract_id"]) in inputs
    assert (threshold["sha256"], threshold["sha256"]) in inputs
    outputs = [o["facets"]["version"]["datasetVersion"] for o in event["outputs"]]
    assert outputs == [outcome["extract_id"]]

    discarded = run(
        "quarantine", "discard", truncated["extract_id"], "--reason", "resent", "--json", home=home
    )
    assert discarded.returncode == 0
    assert json.loads(discarded.stdout)["actions"][0]["reason"] == "resent"
    assert json.loads(run("quarantine", "list", "--json", home=home).stdout)["quarantined"] == []
    states = {
        e["extract_id"]: e["state"]
        for e in json.loads(run("quarantine", "list", "--all", "--json", home=home).stdout)["quarantined"]
    }
    assert states == {threshold["extract_id"]: "retried", truncated["extract_id"]: "discarded"}

    again = run("quarantine", "retry", truncated["extract_id"], home=home)
    assert again.returncode == 1
    assert again.stderr.startswith("error CT-QUARANTINE-STATE")
    assert "Traceback" not in again.stderr
    missing = run("quarantine", "discard", "ext_nope", home=home)
    assert missing.returncode == 2  # --reason is required: a usage error
