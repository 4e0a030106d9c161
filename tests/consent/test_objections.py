"""Consent files and objections, on SQLite and PostgreSQL: archived byte for byte, stored by pupil key
only, bad rows reported by row number (never by value) and the rest applied, the latest decision per
pupil and purpose wins, and an objection covers the purpose's sub-purposes."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from censustrace.census.formats import parse_extract
from censustrace.census.identifiers import make_upn
from censustrace.config import Settings
from censustrace.consent.objections import ConsentError, consent_check, ingest_consent_file
from censustrace.consent.tables import consent_decisions, consent_files
from censustrace.intake.archive import archive_path_for
from censustrace.lineage.emit import run_event
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.spec import validate_event
from censustrace.shares.steps import run_share
from censustrace.shares.tables import disclosures
from censustrace.warehouse.db import warehouse_engine
from tests.plugins.helpers.privacy import identifiers_in, leaks
from tests.plugins.helpers.shares import Census, ingest_census
from tests.plugins.helpers.shares import consent_files as generated_consent_files
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET

HEADER = ["upn", "purpose", "decision", "recorded_on", "source"]


def key_of(upn: str) -> str:
    return hmac.new(PUPIL_KEY_SECRET.encode(), upn.encode(), hashlib.sha256).hexdigest()


def upns_of(generated: Census) -> list[str]:
    folder, manifest = generated
    return sorted(
        {parsed.record.upn for entry in manifest["files"] for parsed in parse_extract(folder / entry["file"])}
    )


def write_consents(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def all_rows(settings: Settings, table: Any) -> list[dict[str, Any]]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [dict(row) for row in conn.execute(select(table)).mappings()]


def reason_for(settings: Settings, purpose: str, upn: str, *, consent_required: bool = False) -> str | None:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return consent_check(conn, purpose, consent_required=consent_required).reason(key_of(upn))


def test_consent_files_are_archived_and_stored_by_pupil_key_only(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census(consents=True)
    ingest_census(sh, generated, emit=False)
    expected_rows = 0
    for entry, path in zip(generated[1]["consents"], generated_consent_files(generated), strict=True):
        outcome = ingest_consent_file(path, sh)
        assert outcome.status == "applied"
        assert (outcome.rows_read, outcome.rows_applied, outcome.rows_rejected) == (
            entry["rows"],
            entry["rows"],
            0,
        )
        assert outcome.errors == ()
        assert archive_path_for(sh.archive_dir, outcome.sha256).read_bytes() == path.read_bytes()
        assert outcome.sha256 == entry["sha256"]
        expected_rows += entry["rows"]
    decisions = all_rows(sh, consent_decisions)
    assert len(decisions) == expected_rows
    with generated_consent_files(generated)[0].open(encoding="utf-8", newline="") as fh:
        first = next(csv.DictReader(fh))
    assert key_of(first["upn"]) in {d["pupil_key"] for d in decisions}
    assert {d["decision"] for d in decisions} <= {"objected", "consented"}  # "object"/"consent" read as these
    identifiers = identifiers_in(generated_consent_files(generated))
    stored = json.loads(json.dumps(decisions + all_rows(sh, consent_files), default=str))
    assert identifiers
    assert leaks(stored, identifiers) == []


def test_bad_rows_are_reported_by_row_number_and_the_rest_applied(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    generated = census()
    ingest_census(sh, generated, emit=False)
    known = upns_of(generated)
    stranger = make_upn("330", "9999", "20", "001")
    path = write_consents(
        tmp_path / "consents_330_4000_AUT_2026.csv",
        [
            [known[0], "research.approved", "objected", "2026-05-01", "parent_form"],  # 1 good
            [stranger, "research.approved", "objected", "2026-05-01", "parent_form"],  # 2 pending
            [known[1], "research.approved", "objected", "2026-13-01", "parent_form"],  # 3 bad date
            [known[2], "research.approved", "maybe", "2026-05-01", "parent_form"],  # 4 bad decision
            [known[3], "marketing.spam", "objected", "2026-05-01", "parent_form"],  # 5 unknown purpose
            ["", "research.approved", "objected", "2026-05-01", "parent_form"],  # 6 no UPN
            [known[4], "research.approved", "objected"],  # 7 short row
            [known[5], "health.school_nursing", "consented", "2026-05-02", ""],  # 8 good
            [known[6], "research.approved", "objected", "01/05/2026", "parent_form"],  # 9 bad date
        ],
    )
    outcome = ingest_consent_file(path, sh)
    assert outcome.status == "applied"
    # A pupil not seen yet is kept (pending), not rejected: the objection applies when they appear.
    assert (outcome.rows_read, outcome.rows_applied, outcome.rows_rejected) == (9, 3, 6)
    assert outcome.rows_pending == 1
    by_code = {e["code"]: e for e in outcome.errors}
    assert set(by_code) == {
        "CT-CONSENT-DATE",
        "CT-CONSENT-DECISION",
        "CT-CONSENT-PURPOSE",
        "CT-CONSENT-UPN-MISSING",
        "CT-CONSENT-SHAPE",
    }
    assert by_code["CT-CONSENT-DATE"]["location"] == f"{path.name}, rows 3, 9"
    assert "2 rows" in by_code["CT-CONSENT-DATE"]["message"]
    assert by_code["CT-CONSENT-SHAPE"]["location"].endswith("row 7")
    text = json.dumps(outcome.as_dict())
    for value in (stranger, *known[:7], "maybe", "marketing.spam", "2026-13-01", "01/05/2026"):
        assert value not in text
    applied = all_rows(sh, consent_decisions)
    assert sorted((d["row_number"], d["pupil_key"]) for d in applied) == [
        (1, key_of(known[0])),
        (2, key_of(stranger)),
        (8, key_of(known[5])),
    ]
    stored = all_rows(sh, consent_files)[0]
    assert stored["reasons"] == [dict(e) for e in outcome.errors]
    assert (stored["laestab"], stored["term"], stored["year"]) == ("3304000", "AUT", 2026)


def test_the_latest_decision_per_pupil_and_purpose_wins(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    a, b, c, d = upns_of(census())[:4]
    first = write_consents(
        tmp_path / "first.csv",
        [
            [a, "research.approved", "objected", "2025-01-01", "parent_form"],
            [b, "research.approved", "objected", "2025-09-01", "parent_form"],  # later date than below
            [b, "research.approved", "consented", "2025-06-01", "parent_form"],
            [c, "research.approved", "consented", "2025-03-01", "parent_form"],
            [c, "research.approved", "objected", "2025-03-01", "parent_form"],  # same day, later row
            [d, "research.approved", "consent", "2025-03-01", "mis_parental_consent"],
        ],
    )
    second = write_consents(
        tmp_path / "second.csv",
        [
            [a, "research.approved", "consented", "2025-06-01", "parent_form"],  # a changed their mind
            [d, "research.approved", "withdrawn", "2025-04-01", "parent_form"],  # consent withdrawn
            [d, "health.school_nursing", "objected", "2025-04-01", "parent_form"],  # another purpose
        ],
    )
    for path in (first, second):
        assert ingest_consent_file(path, sh).rows_applied > 0
    assert reason_for(sh, "research.approved", a) is None
    assert reason_for(sh, "research.approved", b) == "objected"
    assert reason_for(sh, "research.approved", c) == "objected"
    assert reason_for(sh, "research.approved", d) == "withdrawn"
    assert reason_for(sh, "health.school_nursing", a) is None
    assert reason_for(sh, "education.admissions", d) is None  # a decision is about its purpose only
    result = run_share("t-research", sh)
    assert result["excluded"] == {"objected": 2, "withdrawn": 1}
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        sent = set(
            conn.execute(
                select(disclosures.c.pupil_key).where(disclosures.c.share_id == result["share_id"])
            ).scalars()
        )
    assert key_of(a) in sent
    assert not {key_of(b), key_of(c), key_of(d)} & sent


def test_an_objection_covers_the_purpose_and_its_sub_purposes_only(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    parent, child = upns_of(census())[:2]
    path = write_consents(
        tmp_path / "consents.csv",
        [
            [parent, "research.approved", "objected", "2025-01-01", "parent_form"],
            [child, "research.approved.attainment", "objected", "2025-01-01", "parent_form"],
        ],
    )
    assert ingest_consent_file(path, sh).rows_applied == 2
    assert reason_for(sh, "research.approved.attainment", parent) == "objected"
    assert reason_for(sh, "research.approved.attainment", child) == "objected"
    assert reason_for(sh, "research.approved", parent) == "objected"
    assert reason_for(sh, "research.approved", child) is None  # a sub-purpose does not cover its parent
    sub = run_share("t-research-sub", sh)
    whole = run_share("t-research", sh)
    assert sub["excluded"] == {"objected": 2}
    assert whole["excluded"] == {"objected": 1}


def test_the_same_bytes_twice_apply_once(sh: Settings, census: Callable[..., Census]) -> None:
    generated = census(consents=True)
    ingest_census(sh, generated, emit=False)
    path = generated_consent_files(generated)[0]
    first = ingest_consent_file(path, sh)
    again = ingest_consent_file(path, sh)
    assert (again.status, again.consent_file_id, again.rows_applied) == (
        "duplicate",
        first.consent_file_id,
        0,
    )
    assert again.rows_in_force == first.rows_applied
    assert "re-applied" in again.note
    assert len(all_rows(sh, consent_decisions)) == first.rows_applied
    statuses = sorted(r["status"] for r in all_rows(sh, consent_files))
    assert statuses == ["applied", "duplicate"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"upn,purpose,decision,source\r\nX,research.approved,objected,parent_form\r\n", "CT-CONSENT-HEADER"),
        (
            b"upn,purpose,decision,recorded_on,source\r\n\xff\xfe,research.approved,objected,2025-01-01,x\r\n",
            "CT-CONSENT-ENCODING",
        ),
        (b"", "CT-CONSENT-HEADER"),
    ],
)
def test_an_unreadable_file_is_refused_whole_and_kept(
    sh: Settings, tmp_path: Path, content: bytes, code: str
) -> None:
    path = tmp_path / "consents_330_4000_AUT_2026.csv"
    path.write_bytes(content)
    outcome = ingest_consent_file(path, sh)
    assert outcome.status == "refused"
    assert [e["code"] for e in outcome.errors] == [code]
    assert path.name in outcome.errors[0]["message"]
    assert archive_path_for(sh.archive_dir, outcome.sha256).read_bytes() == content
    assert all_rows(sh, consent_decisions) == []


def test_a_missing_file_is_a_clear_error(sh: Settings, tmp_path: Path) -> None:
    with pytest.raises(ConsentError, match="no such consent file"):
        ingest_consent_file(tmp_path / "nowhere.csv", sh)


def test_consent_lineage_is_valid_and_names_no_pupil(sh: Settings, census: Callable[..., Census]) -> None:
    generated = census(consents=True)
    ingest_census(sh, generated, emit=False)
    path = generated_consent_files(generated)[0]
    outcome = ingest_consent_file(path, sh)
    event = json.loads(run_event(sh, "censustrace.consent_ingest", outcome.lineage))
    assert validate_event(event, extra_schemas=schema_documents()) == []
    assert leaks([event], identifiers_in([path])) == []
    (source,) = event["inputs"]
    assert (source["name"], source["facets"]["version"]["datasetVersion"]) == (
        str(path.resolve()),
        outcome.sha256,
    )
    decisions = next(o for o in event["outputs"] if o["name"].endswith(".consent_decisions"))
    assert decisions["facets"]["version"]["datasetVersion"] == outcome.consent_file_id
    key = decisions["facets"]["columnLineage"]["fields"]["pupil_key"]["inputFields"][0]
    assert key["field"] == "upn"
    assert key["transformations"][0]["masking"] is True
    assert decisions["outputFacets"]["outputStatistics"]["rowCount"] == outcome.rows_applied
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(consent_decisions)).scalar_one()
            == outcome.rows_applied
        )
