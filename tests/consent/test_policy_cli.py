"""``censustrace policy`` as a user runs it: real entry point, JSON on stdout, documented exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.plugins.helpers.cli import CLI
from tests.plugins.helpers.policies import SHIPPED, copy_policies, edit, line_of

KEYS = {"agreement", "verdict", "flags", "reasons", "fields_allowed", "fields_denied"}


def policy(*args: str, policies: Path = SHIPPED, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, "CENSUSTRACE_POLICIES_DIR": str(policies), **env}
    return subprocess.run([CLI, "policy", *args], capture_output=True, text=True, env=environ, timeout=120)


def test_allowed_agreement_exits_0_with_the_verdict_as_json() -> None:
    proc = policy("check", "la330-sen-transport-2026", "--as-of", "2026-10-01", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) >= KEYS
    assert result["verdict"] == "allow"
    assert result["reasons"] == []
    assert result["fields_allowed"] == ["upn", "forename", "surname", "dob", "postcode", "sen_provision"]
    assert result["as_of"] == "2026-10-01"


def test_denied_agreement_exits_1_with_every_reason() -> None:
    proc = policy("check", "home-office-immigration-2026", "--as-of", "2026-10-01", "--json")
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "deny"
    assert "high_risk" in result["flags"]
    assert [r["code"] for r in result["reasons"]] == ["CT-POLICY-NO-APPROVAL", "CT-POLICY-GATEWAY-REQUIRED"]
    assert all(set(r) == {"code", "message", "field"} for r in result["reasons"])
    assert result["fields_allowed"] == []


def test_human_output_lists_the_reasons() -> None:
    proc = policy("check", "research-migration-2026", "--as-of", "2026-10-01")
    assert proc.returncode == 1
    assert "research-migration-2026: deny" in proc.stdout
    assert "CT-POLICY-NEVER-SHARE" in proc.stdout


def test_unknown_agreement_is_a_usage_error() -> None:
    proc = policy("check", "la330-sen-transport", "--json")
    assert proc.returncode == 2
    assert "CT-POLICY-UNKNOWN-AGREEMENT" in proc.stderr
    assert "la330-sen-transport-2026" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_bad_date_is_a_usage_error_naming_the_option() -> None:
    proc = policy("check", "la330-sen-transport-2026", "--as-of", "2026-13-01")
    assert proc.returncode == 2
    assert "--as-of" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_agreement_file_can_be_checked(tmp_path: Path) -> None:
    draft = tmp_path / "draft.yaml"
    draft.write_text((SHIPPED / "agreements/la330-admissions-2025.yaml").read_text())
    proc = policy("check", str(draft), "--as-of", "2026-10-01", "--json")
    assert proc.returncode == 1
    assert [r["code"] for r in json.loads(proc.stdout)["reasons"]] == ["CT-POLICY-EXPIRED"]
    proc = policy("check", str(draft), "--as-of", "2026-01-10", "--json")
    assert proc.returncode == 0, proc.stdout


def test_an_invalid_policy_file_denies_with_file_and_line(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    rules = policies / "rules.yaml"
    edit(
        rules, '    effect: deny\n    purposes: ["research.*"]', "    effect: deny\n    purposes: research.*"
    )
    proc = policy("check", "la330-sen-transport-2026", "--as-of", "2026-10-01", "--json", policies=policies)
    assert proc.returncode == 1
    result = json.loads(proc.stdout)
    assert result["verdict"] == "deny"
    assert result["fields_allowed"] == []
    expected = f"policies/rules.yaml:{line_of(rules, 'purposes: research.*')}"
    assert any(expected in r["message"] for r in result["reasons"]), result["reasons"]

    listed = policy("list", "--as-of", "2026-10-01", "--json", policies=policies)
    assert listed.returncode == 1
    report = json.loads(listed.stdout)
    assert report["valid"] is False
    assert {a["verdict"] for a in report["agreements"]} == {"deny"}
    assert report["problems"][0]["file"] == "policies/rules.yaml"


def test_list_gives_every_agreement_its_verdict() -> None:
    proc = policy("list", "--as-of", "2026-10-01", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["valid"] is True
    agreements = {a["agreement"]: a for a in report["agreements"]}
    assert set(agreements) == {p.stem for p in (SHIPPED / "agreements").glob("*.yaml")}
    assert all(set(a) >= KEYS for a in agreements.values())
    assert agreements["tutoring-marketing-2026"]["verdict"] == "deny"
    assert agreements["la330-statutory-return-2026"]["verdict"] == "allow"


def test_output_is_identical_across_runs_and_hash_seeds() -> None:
    runs = [
        policy("list", "--as-of", "2026-10-01", "--json", PYTHONHASHSEED=seed).stdout for seed in ("1", "2")
    ]
    assert runs[0] == runs[1]
    assert json.loads(runs[0])["agreements"]


def test_a_broken_draft_beside_valid_agreements_is_denied_alone(tmp_path: Path) -> None:
    policies = copy_policies(tmp_path)
    broken = policies / "agreements" / "draft-2026.yaml"
    broken.write_text("id: draft-2026\nrecipient: {name: x, type: other\npurpose: research.approved\n")
    proc = policy("check", str(broken), "--as-of", "2026-10-01", "--json", policies=policies)
    assert proc.returncode == 1, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "deny"
    assert result["reasons"][0]["code"] == "CT-POLICY-YAML"
    assert "policies/agreements/draft-2026.yaml:" in result["reasons"][0]["message"]
    assert "Traceback" not in proc.stderr
    # The valid agreements beside it are judged normally.
    ok = policy("check", "la330-sen-transport-2026", "--as-of", "2026-10-01", "--json", policies=policies)
    assert ok.returncode == 0, ok.stdout
    listed = json.loads(policy("list", "--as-of", "2026-10-01", "--json", policies=policies).stdout)
    verdicts = {a["agreement"]: a["verdict"] for a in listed["agreements"]}
    assert verdicts["draft-2026"] == "deny"
    assert verdicts["la330-statutory-return-2026"] == "allow"


def test_lint_checks_drafts_and_the_whole_folder(tmp_path: Path) -> None:
    clean = policy("lint", "--json")
    assert clean.returncode == 0, clean.stdout
    assert json.loads(clean.stdout)["ok"] is True
    draft = tmp_path / "new.yaml"
    draft.write_text(
        (SHIPPED / "agreements/la330-admissions-2026.yaml").read_text().replace("\nformat:", "\nfromat:")
    )
    proc = policy("lint", str(draft), "--json")
    assert proc.returncode == 1
    (problem,) = json.loads(proc.stdout)["problems"]
    assert problem["line"] == line_of(draft, "fromat:")
    assert "did you mean 'format'" in problem["message"]
    policies = copy_policies(tmp_path / "copy")
    (policies / "agreements" / "broken.yaml").write_text("id: [\n")
    folder = policy("lint", "--json", policies=policies)
    assert folder.returncode == 1
    assert {p["file"] for p in json.loads(folder.stdout)["problems"]} == {"policies/agreements/broken.yaml"}
