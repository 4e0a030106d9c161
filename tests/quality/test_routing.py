"""Severity routing of ``validate_extract`` on SQLite and PostgreSQL: critical row failures reject records
(address and FSM rows reject their pupil), too many of them or a failed table check quarantine the
extract, warnings load and are reported; reruns change nothing; a missing column is a failed
expectation, not a crash; results are stored per expectation."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from censustrace.census.identifiers import UPN_CHECK_TABLE
from censustrace.config import Settings
from censustrace.intake.ingest import ingest_file
from censustrace.intake.publish import publish
from censustrace.intake.quarantine import REASON_FILE, IngestError
from censustrace.intake.registry import find_extract
from censustrace.quality.run import validate_extract
from censustrace.quality.suites import load_suites
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil, rejected_record, staged_pupil
from tests.plugins.helpers.warehouse import generated, land, rows_of
from tests.quality.helpers import (
    copy_suites,
    edit_suite,
    reject_codes,
    stage_one,
    stored_results,
)

PUPILS = 100
Edit = Callable[[str], str]


def _school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=PUPILS, fmt="xml", seed=41)
    return folder / str(manifest["files"][0]["file"])


def _edited(source: Path, target: Path, edits: dict[int, Edit]) -> Path:
    """``edits``: pupil index (1-based) -> a change to that PupilOnRoll element's text."""
    parts = source.read_text(encoding="utf-8").split("<PupilOnRoll>")
    for index, edit in edits.items():
        changed = edit(parts[index])
        assert changed != parts[index], f"edit of pupil {index} changed nothing"
        parts[index] = changed
    target.write_text("<PupilOnRoll>".join(parts), encoding="utf-8")
    return target


def wrong_check_letter(text: str) -> str:
    def swap(m: re.Match[str]) -> str:
        upn = m[1]
        wrong = UPN_CHECK_TABLE[(UPN_CHECK_TABLE.index(upn[0]) + 1) % 23]
        return f"<UPN>{wrong}{upn[1:]}</UPN>"

    return re.sub(r"<UPN>([^<]*)</UPN>", swap, text, count=1)


def tag(name: str, value: str) -> Edit:
    return lambda text: re.sub(rf"<{name}>[^<]*</{name}>", f"<{name}>{value}</{name}>", text, count=1)


def _with_fsm(source: Path) -> int:
    """The index of the first pupil with an FSM period."""
    parts = source.read_text(encoding="utf-8").split("<PupilOnRoll>")
    return next(i for i, part in enumerate(parts) if i and "<FSMstartDate>" in part)


def _codes_of(settings: Settings, extract_id: str) -> dict[int, list[str]]:
    return reject_codes(settings, extract_id)


# --- row rejection -----------------------------------------------------------------------------------------


def test_critical_row_failures_reject_those_records_and_the_rest_loads(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    fsm = _with_fsm(source)
    damaged = _edited(
        source,
        tmp_path / source.name,
        {3: wrong_check_letter, 5: tag("PostCode", "B1 1CI"), fsm: tag("FSMstartDate", "1990-01-01")},
    )
    extract_id = stage_one(wh, damaged)
    outcome = validate_extract(extract_id, wh)
    assert outcome.status == "rows_rejected"
    assert dict(outcome.rejected) == {
        3: ("CT-DQ-UPN-CHECK",),
        5: ("CT-DQ-POSTCODE",),  # an address row rejects its pupil
        fsm: ("CT-DQ-FSM-BEFORE-BIRTH",),  # so does an FSM period
    }
    assert outcome.rejected_by_code == {
        "CT-DQ-FSM-BEFORE-BIRTH": 1,
        "CT-DQ-POSTCODE": 1,
        "CT-DQ-UPN-CHECK": 1,
    }
    assert outcome.errors == ()
    assert _codes_of(wh, extract_id) == {n: list(c) for n, c in outcome.rejected.items()}
    published = publish(extract_id, {}, wh)  # the existing publish leaves them out
    assert published.rows.as_dict() == {"read": PUPILS, "loaded": PUPILS - 3, "rejected": 3}
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        rejected = dict(conn.execute(select(rejected_record.c.record_number, rejected_record.c.codes)).all())
    assert rejected == {3: ["CT-DQ-UPN-CHECK"], 5: ["CT-DQ-POSTCODE"], fsm: ["CT-DQ-FSM-BEFORE-BIRTH"]}


def test_ingest_reports_rejected_rows_and_warnings(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    damaged = _edited(source, tmp_path / source.name, {3: wrong_check_letter, 8: tag("Language", "ZZZ")})
    outcome = ingest_file(land(wh, damaged), wh)
    assert outcome.status == "loaded"
    assert outcome.rows.as_dict() == {"read": PUPILS, "loaded": PUPILS - 1, "rejected": 1}
    result = outcome.as_dict()
    assert next((e["code"], e["location"]) for e in result["errors"]) == ("CT-DQ-UPN-CHECK", "record 3")
    warning = next(e for e in result["errors"] if e["code"] == "CT-DQ-CODE:language")
    assert "1 of 100 pupil rows" in warning["message"]
    assert "records 8" in warning["message"]
    assert [name for name, _ in outcome.steps] == ["receive", "register", "stage", "validate", "publish"]


# --- warnings ----------------------------------------------------------------------------------------------


def test_warnings_load_and_are_kept_in_the_registry(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    damaged = _edited(
        source, tmp_path / source.name, {4: tag("Language", "ZZZ"), 9: tag("Ethnicity", "WBRT")}
    )
    extract_id = stage_one(wh, damaged)
    outcome = validate_extract(extract_id, wh)
    assert outcome.status == "warnings"
    assert outcome.rejected == {}
    assert [(w["code"], w["location"]) for w in outcome.warnings] == [
        ("CT-DQ-CODE:ethnicity", f"{damaged.name}, suite pupil"),
        ("CT-DQ-CODE:language", f"{damaged.name}, suite pupil"),
    ]
    assert "1 of 100 pupil rows" in outcome.warnings[0]["message"]
    assert _codes_of(wh, extract_id) == {}
    assert [r["code"] for r in find_extract(wh, extract_id).reasons] == [
        "CT-DQ-CODE:ethnicity",
        "CT-DQ-CODE:language",
    ]
    published = publish(extract_id, {}, wh)
    assert published.rows.loaded == PUPILS
    assert [r["code"] for r in find_extract(wh, extract_id).reasons] == [
        "CT-DQ-CODE:ethnicity",
        "CT-DQ-CODE:language",
    ]


# --- whole-extract quarantine ------------------------------------------------------------------------------


def _assert_quarantined(settings: Settings, extract_id: str, codes: list[str]) -> dict[str, Any]:
    row = find_extract(settings, extract_id)
    assert row.status == "quarantined"
    assert [r["code"] for r in row.reasons] == codes
    assert rows_of(settings, staged_pupil, extract_id) == 0  # staging emptied
    reason = json.loads((settings.quarantine_dir / row.sha256 / REASON_FILE).read_text())
    assert [r["code"] for r in reason["reasons"]] == codes
    assert (settings.quarantine_dir / row.sha256 / row.original_name).is_file()
    return reason


def test_more_than_the_critical_share_quarantines_the_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    bad = {n: wrong_check_letter for n in (2, 12, 22, 32, 42, 52)}  # 6 % of 100 > 5 %
    extract_id = stage_one(wh, _edited(source, tmp_path / source.name, bad))
    outcome = validate_extract(extract_id, wh)
    assert outcome.status == "quarantined"
    assert [e["code"] for e in outcome.errors] == ["CT-DQ-THRESHOLD", "CT-DQ-UPN-CHECK"]
    assert "6 of 100 pupil rows (6.0 %)" in outcome.errors[0]["message"]
    assert "more than the 5 %" in outcome.errors[0]["message"]
    _assert_quarantined(wh, extract_id, ["CT-DQ-THRESHOLD", "CT-DQ-UPN-CHECK"])
    assert len(stored_results(wh, extract_id)) == 32  # results are kept for a quarantined extract too
    with pytest.raises(IngestError):
        publish(extract_id, {}, wh)
    assert rows_of(wh, pupil) == 0


def test_five_percent_exactly_still_loads(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    bad = {n: wrong_check_letter for n in (2, 12, 22, 32, 42)}
    extract_id = stage_one(wh, _edited(source, tmp_path / source.name, bad))
    assert validate_extract(extract_id, wh).status == "rows_rejected"


def test_a_failed_table_check_quarantines_the_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    # The shipped suites have no table-level check (docs/data-quality.md says why); a deployment's own
    # (here: a cap on pupils per school) is routed like any critical table check.
    folder = copy_suites(wh.expectations_dir, tmp_path / "expectations")

    def add(document: dict[str, Any]) -> None:
        document["expectations"].append(
            {
                "type": "expect_table_row_count_to_be_between",
                "kwargs": {"max_value": PUPILS - 1},
                "severity": "critical",
                "description": "A school this size is not expected",
                "meta": {"severity": "critical", "code": "CT-DQ-TOO-MANY"},
            }
        )

    edit_suite(folder, "pupil", add)
    settings = wh.model_copy(update={"expectations_dir": folder})
    extract_id = stage_one(settings, _school(tmp_path_factory))
    outcome = validate_extract(extract_id, settings)
    assert outcome.status == "quarantined"
    assert [e["code"] for e in outcome.errors] == ["CT-DQ-TOO-MANY"]
    assert f"{PUPILS} pupil rows" in outcome.errors[0]["message"]
    _assert_quarantined(settings, extract_id, ["CT-DQ-TOO-MANY"])


def test_the_shipped_suites_have_no_check_that_cannot_fail() -> None:
    # Staging refuses a file without pupils (CT-INGEST-NO-PUPILS) and counts the rows it stages itself:
    # "at least one pupil" and "staged rows = rows read" could never fail here, so they are not shipped.
    suites = load_suites(Settings().expectations_dir)
    codes = {e.code for s in suites for e in s.expectations}
    assert not codes & {"CT-DQ-NO-PUPILS", "CT-DQ-ROW-COUNT"}
    assert not [e.code for s in suites for e in s.expectations if e.table_level]


# --- a column missing from the data ------------------------------------------------------------------------


def _with_missing_column(wh: Settings, tmp_path: Path, severity: str) -> Settings:
    folder = copy_suites(wh.expectations_dir, tmp_path / "expectations")

    def add(document: dict[str, Any]) -> None:
        document["expectations"].append(
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "shoe_size"},
                "severity": severity,
                "description": "A column the staging tables do not have",
                "meta": {"severity": severity, "code": "CT-DQ-SHOE-SIZE"},
            }
        )

    edit_suite(folder, "pupil", add)
    return wh.model_copy(update={"expectations_dir": folder})


@pytest.mark.parametrize(("severity", "status"), [("critical", "quarantined"), ("warning", "warnings")])
def test_a_missing_column_is_a_failed_expectation_not_a_crash(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, severity: str, status: str
) -> None:
    settings = _with_missing_column(wh, tmp_path, severity)
    extract_id = stage_one(settings, _school(tmp_path_factory))
    outcome = validate_extract(extract_id, settings)
    assert outcome.status == status
    reasons = outcome.errors if severity == "critical" else outcome.warnings
    assert [r["code"] for r in reasons] == ["CT-DQ-SHOE-SIZE"]
    assert "column shoe_size missing from the data" in reasons[0]["message"]
    (row,) = [r for r in stored_results(settings, extract_id) if r["code"] == "CT-DQ-SHOE-SIZE"]
    assert (row["success"], row["error"]) == (False, "column shoe_size missing from the data")
    others = [r for r in stored_results(settings, extract_id) if r["code"] != "CT-DQ-SHOE-SIZE"]
    assert all(r["success"] for r in others)  # the rest of the suite ran as usual


# --- idempotence, skipping, the results table -------------------------------------------------------------


def _snapshot(settings: Settings, extract_id: str) -> tuple[Any, ...]:
    results = [
        {k: v for k, v in r.items() if k != "validated_at"} for r in stored_results(settings, extract_id)
    ]
    return results, reject_codes(settings, extract_id), find_extract(settings, extract_id).reasons


def test_validating_again_gives_the_same_result(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    damaged = _edited(
        source,
        tmp_path / source.name,
        {3: wrong_check_letter, 6: tag("Language", "ZZZ"), 2: tag("DOB", "2016-02-30")},
    )
    extract_id = stage_one(wh, damaged)
    first = validate_extract(extract_id, wh)
    once = _snapshot(wh, extract_id)
    second = validate_extract(extract_id, wh)
    assert _snapshot(wh, extract_id) == once
    assert (second.status, second.rejected, second.warnings) == (first.status, first.rejected, first.warnings)
    # The parser's own rejection is kept, and validation adds nothing to it.
    assert reject_codes(wh, extract_id) == {2: ["CT-PARSE-VALUE:dob"], 3: ["CT-DQ-UPN-CHECK"]}


def test_an_extract_that_is_not_staged_is_skipped(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    extract_id = stage_one(wh, _school(tmp_path_factory))
    publish(extract_id, {}, wh)
    outcome = validate_extract(extract_id, wh)
    assert (outcome.status, outcome.suites, outcome.data_docs) == ("skipped", (), ())
    with pytest.raises(IngestError) as unknown:
        validate_extract("ext_00000000000000000000", wh)
    assert unknown.value.code == "CT-INGEST-NOT-FOUND"


def test_results_are_stored_per_expectation_with_counts_and_data_docs_pages(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _school(tmp_path_factory)
    extract_id = stage_one(wh, _edited(source, tmp_path / source.name, {7: wrong_check_letter}))
    outcome = validate_extract(extract_id, wh)
    rows = stored_results(wh, extract_id)
    assert {(r["suite"], r["code"]) for r in rows} == {
        (s.name, e["code"]) for s in outcome.suites for e in s.expectations
    }
    check = next(r for r in rows if r["code"] == "CT-DQ-UPN-CHECK")
    assert check == check | {
        "name": "expect_column_values_to_be_valid_upn(upn)",
        "type": "expect_column_values_to_be_valid_upn",
        "column_name": "upn",
        "severity": "critical",
        "success": False,
        "element_count": PUPILS,
        "unexpected_count": 1,
        "unexpected_percent": 1.0,
        "unexpected_records": [7],
        "error": None,
        "data_docs_page": f"validations/pupil/{extract_id}/latest/pupil.html",
    }
    assert set(outcome.data_docs) == {r["data_docs_page"] for r in rows}
    for page in outcome.data_docs:
        assert (wh.data_docs_dir / page).is_file()
    assert (wh.data_docs_dir / "index.html").is_file()
    assert (wh.data_docs_dir / "expectations" / "pupil.html").is_file()
    assert not any(wh.expectations_dir.rglob("*.html"))  # nothing written into the repo's folder
    assert len(outcome.summary) == len(rows)
    assert any(
        line.startswith("FAIL [critical] pupil CT-DQ-UPN-CHECK") and "1 of 100" in line
        for line in outcome.summary
    )


def test_records_the_parser_rejected_add_nothing_and_do_not_tip_the_share(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    """A small school: 4 of 12 records unreadable (no UPN, a DOB that is no date, an unknown sex code
    on top) would be 33 %; the parser already rejects them, so validation adds no code and loads the rest."""
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=12, fmt="xml", seed=5)
    source = folder / str(manifest["files"][0]["file"])
    no_upn: Edit = lambda text: re.sub(r"<UPN>[^<]*</UPN>", "", text, count=1)  # noqa: E731
    edits = {2: tag("DOB", "2016-02-30"), 3: no_upn, 4: lambda t: tag("Sex", "Q")(no_upn(t)), 6: no_upn}
    extract_id = stage_one(wh, _edited(source, tmp_path / source.name, edits))
    outcome = validate_extract(extract_id, wh)
    assert outcome.status == "passed"
    assert reject_codes(wh, extract_id) == {
        2: ["CT-PARSE-VALUE:dob"],
        3: ["CT-PARSE-NO-UPN"],
        4: ["CT-PARSE-NO-UPN"],
        6: ["CT-PARSE-NO-UPN"],
    }
    sex = next(r for r in stored_results(wh, extract_id) if r["code"] == "CT-DQ-CODE:sex")
    assert (sex["success"], sex["unexpected_records"]) == (False, [4])  # still reported in the results
    assert publish(extract_id, {}, wh).rows.as_dict() == {"read": 12, "loaded": 8, "rejected": 4}
