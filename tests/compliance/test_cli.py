"""The evidence commands as a user runs them (SQLite): disclosures by former UPN and by name, article30,
notices and retention, through the real entry point; identifiers never echoed without --values."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from censustrace.config import Settings
from censustrace.shares.tables import disclosures
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.cli import run, share_json
from tests.plugins.helpers.shares import Census


def test_evidence_commands(cli_home: tuple[Settings, Census], tmp_path: Path) -> None:
    settings, _ = cli_home
    sent = share_json(run(settings, "share", "t-admissions", "--json"))
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        child = (
            conn.execute(
                select(pupil.c.upn, pupil.c.former_upn, pupil.c.surname, pupil.c.forename, pupil.c.dob)
                .join(
                    disclosures,
                    (disclosures.c.extract_id == pupil.c.extract_id)
                    & (disclosures.c.record_number == pupil.c.record_number),
                )
                .where(disclosures.c.share_id == sent["share_id"], pupil.c.former_upn.is_not(None))
                .limit(1)
            )
            .mappings()
            .one()
        )

    former = run(settings, "disclosures", "--json", stdin=f"{child['former_upn']}\n")
    assert former.returncode == 0, former.stderr
    assert child["former_upn"] not in former.stdout
    assert child["upn"] not in former.stdout
    (request,) = json.loads(former.stdout)["requests"]
    assert request["matched_by"] == "former_upn"
    assert [s["share_id"] for s in request["shares"]] == [sent["share_id"]]
    assert request["shares"][0]["retention_days"] == 365
    assert request["data"][0]["source"]["sha256"]

    line = f"{child['surname']},{child['forename']},{child['dob'].isoformat()}\n"
    by_name = run(settings, "disclosures", "--by", "name-dob", "--values", "--json", stdin=line)
    assert by_name.returncode == 0, by_name.stderr
    (found,) = json.loads(by_name.stdout)["requests"]
    assert found["data"][0]["values"]["upn"] == child["upn"]
    bad = run(settings, "disclosures", "--by", "name-dob", stdin=f"{child['surname']},{child['forename']}\n")
    assert bad.returncode == 2
    assert child["surname"] not in bad.stdout + bad.stderr

    record = run(
        settings,
        "article30",
        "--json",
        "--csv",
        str(tmp_path / "a30.csv"),
        "--pdf",
        str(tmp_path / "a30.pdf"),
    )
    assert record.returncode == 0, record.stderr
    assert [a["agreement"] for a in json.loads(record.stdout)["activities"]] == ["t-admissions"]
    assert (tmp_path / "a30.pdf").read_bytes().startswith(b"%PDF")
    assert "section" in (tmp_path / "a30.csv").read_text(encoding="utf-8").splitlines()[0]

    # Six years on: retention erases the address everywhere; notices go to the admissions team.
    erased = run(settings, "retention", "--as-of", "2032-12-01", "--json")
    assert erased.returncode == 0, erased.stderr
    assert {f["copy"] for f in json.loads(erased.stdout)["files"]} == {"archive", "outbox"}
    due = run(settings, "notices", "--dry-run", "--json")
    assert json.loads(due.stdout)["due"] == [
        {"recipient": "Test Council Admissions", "kind": "erasure", "records": sent["pupils"]}
    ]
    notices = run(settings, "notices", "--out", str(tmp_path / "notices"), "--json")
    assert notices.returncode == 0, notices.stderr
    (notice,) = json.loads(notices.stdout)["notices"]
    assert Path(notice["pdf"]).is_file()
    assert json.loads(run(settings, "notices", "--dry-run", "--json").stdout)["due"] == []
