"""The share, shares, disclosures, retention and consent commands as a user runs them: the real entry
point in a subprocess, real exit codes, JSON on stdout, no tracebacks, no UPN echoed (SQLite)."""

from __future__ import annotations

import json
from pathlib import Path

from censustrace.config import Settings
from tests.plugins.helpers.cli import SHARE_KEYS, run, share_json
from tests.plugins.helpers.shares import Census, consent_files


def test_share_commands_end_to_end(cli_home: tuple[Settings, Census]) -> None:
    settings, generated = cli_home
    consents = [str(p) for p in consent_files(generated)]
    proc = run(settings, "consent", "ingest", *consents, "--json")
    assert proc.returncode == 0, proc.stderr
    outcomes = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [o["status"] for o in outcomes] == ["applied"] * len(consents)

    delivered = run(settings, "share", "t-nursing", "--json")
    assert delivered.returncode == 0, delivered.stderr
    sent = share_json(delivered)
    assert sent["status"] == "delivered"
    assert sent["excluded"]["objected"] > 0
    assert Path(sent["file"]).is_file()

    blocked = run(settings, "share", "t-marketing", "--json")
    assert blocked.returncode == 1
    refused = share_json(blocked)
    assert refused["status"] == "blocked"
    assert refused["file"] is None
    assert "CT-RULE-NO-COMMERCIAL-USE" in {r["code"] for r in refused["reasons"]}

    unknown = run(settings, "share", "t-nursin", "--json")
    assert unknown.returncode == 2
    assert "t-nursing" in unknown.stderr  # the closest agreement is suggested

    listed = run(settings, "shares", "list", "--json")
    assert listed.returncode == 0
    items = json.loads(listed.stdout)
    assert [(i["share_id"], i["status"]) for i in items] == [
        (sent["share_id"], "delivered"),
        (refused["share_id"], "blocked"),
    ]
    assert all(set(i) >= SHARE_KEYS for i in items)

    verified = run(settings, "shares", "verify", "--json")
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"] is True

    trace = run(settings, "trace", f"dataset:file:{sent['file']}@{sent['sha256']}", "--json")
    assert trace.returncode == 0, trace.stderr
    sources = json.loads(trace.stdout)["sources"]
    assert {s["sha256"] for s in sources} >= {f["sha256"] for f in generated[1]["files"]}
    # By what a user holds: the share id or the file's name, today's keys kept, consumers added.
    for held in (sent["share_id"], Path(sent["file"]).name):
        by_share = run(settings, "trace", held, "--json")
        assert by_share.returncode == 0, by_share.stderr
        answer = json.loads(by_share.stdout)
        assert set(answer) >= {"target", "sources", "graph", "consumers", "resolved"}
        assert {s["sha256"] for s in answer["sources"]} == {s["sha256"] for s in sources}
        assert [c["share_id"] for c in answer["consumers"]] == [sent["share_id"]]
    nothing = run(settings, "trace", "shr_000000000000000000000000")
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("error CT-LINEAGE-NOT-FOUND: ")
    assert len(nothing.stderr.strip().splitlines()) == 1


def test_verify_reports_a_changed_file_and_a_stray_one(cli_home: tuple[Settings, Census]) -> None:
    settings, _ = cli_home
    sent = share_json(run(settings, "share", "t-research", "--json"))
    path = Path(sent["file"])
    path.write_bytes(path.read_bytes() + b"0,0,0\r\n")
    (path.parent / "stray.csv").write_text("upn\r\nX\r\n")
    proc = run(settings, "shares", "verify", "--json")
    assert proc.returncode == 1
    codes = {p["code"] for p in json.loads(proc.stdout)["problems"]}
    assert codes == {"CT-VERIFY-SHA256", "CT-VERIFY-UNREGISTERED"}


def test_disclosures_reads_upns_from_stdin_and_never_echoes_them(cli_home: tuple[Settings, Census]) -> None:
    settings, generated = cli_home
    run(settings, "consent", "ingest", *[str(p) for p in consent_files(generated)])
    sent = share_json(run(settings, "share", "t-nursing", "--json"))
    with open(sent["file"], encoding="utf-8", newline="") as fh:
        shared = next(iter(fh.read().splitlines()[1:])).split(",")[0]
    stranger = "A999999999999"
    proc = run(settings, "disclosures", "--json", stdin=f"{shared}\n\n{stranger}\n")
    assert proc.returncode == 0, proc.stderr
    assert shared not in proc.stdout + proc.stderr
    requests = json.loads(proc.stdout)["requests"]
    assert [r["line"] for r in requests] == [1, 3]
    (disclosed,) = requests[0]["shares"]
    assert disclosed["share_id"] == sent["share_id"]
    assert (disclosed["recipient"], disclosed["purpose"], disclosed["lawful_basis"]) == (
        "Test NHS Trust",
        "health.school_nursing",
        "public_task",
    )
    assert disclosed["legal_gateway"] == "SI 2013/351 reg 3"
    assert set(disclosed["fields"]) <= set(sent["fields"])
    assert "upn" in disclosed["fields"]
    assert disclosed["source"]["sha256"] in {f["sha256"] for f in generated[1]["files"]}
    assert requests[1]["shares"] == []
    assert requests[1]["upn_format_valid"] is False
    # UPNs are never taken as arguments.
    assert run(settings, "disclosures", shared).returncode == 2


def test_consent_ingest_reports_bad_rows_and_exits_1(
    cli_home: tuple[Settings, Census], tmp_path: Path
) -> None:
    settings, _ = cli_home
    bad = tmp_path / "consents_330_4000_AUT_2026.csv"
    bad.write_text(
        "upn,purpose,decision,recorded_on,source\r\n"
        "A999999999999,research.approved,object,2025-01-01,x\r\n"
        "A999999999998,research.approved,maybe,2025-01-01,x\r\n"
    )
    proc = run(settings, "consent", "ingest", str(bad), "--json")
    assert proc.returncode == 1
    (outcome,) = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["code"] for e in outcome["errors"]] == ["CT-CONSENT-DECISION"]
    # A pupil not seen yet is no bad row: the objection is kept and applies when they appear.
    assert outcome["rows"]["pending"] == 1
    assert outcome["rows"]["applied"] == 1
    assert "A999999999999" not in proc.stdout


def test_retention_command_reports_what_it_erased(cli_home: tuple[Settings, Census]) -> None:
    settings, _ = cli_home
    proc = run(settings, "retention", "--as-of", "2026-10-15", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["rows"] == 0  # a 2026 census carries no nationality
    assert result["erasures"] == []
