"""The GX engine wrapper: sanitised results (counts and record numbers only), the two passes and the
configuration memo give exactly what one plain GX validation gives, and the custom expectations."""

from __future__ import annotations

import dataclasses
from typing import Any

import pandas as pd
import pytest

from censustrace.census.identifiers import make_temporary_upn, make_upn
from censustrace.config import Settings
from censustrace.quality import engine
from censustrace.quality.suites import load_suites

REF = pd.Timestamp("2026-10-01")
FORBIDDEN = {
    "unexpected_list",
    "partial_unexpected_list",
    "partial_unexpected_index_list",
    "partial_unexpected_counts",
    "unexpected_index_list",
    "unexpected_index_query",
    "unexpected_rows",
    "observed_value_list",
}
SECRET_UPN = "Q207000016049"  # wrong check letter: a value that must not survive into results


def _pupils() -> pd.DataFrame:
    good = [make_upn(330, 2000, 20, n) for n in range(1, 9)]
    temporary = make_temporary_upn(330, 2000, 26, 1, "A")
    rows = [
        # record, upn, dob, nc_year, sex, language, uln
        (1, good[0], "2019-10-02", "2", "M", "ENG", None),
        (2, SECRET_UPN, "2019-10-02", "2", "F", "ENG", None),  # bad check letter
        (3, good[0], "2019-10-02", "2", "F", "ENG", None),  # repeats record 1's UPN
        (4, temporary, "2019-10-02", "2", "F", "ENG", None),  # temporary: accepted, counted
        (5, good[1], "2027-01-01", "2", "X", "ZZZ", None),  # born after the census day; sex, language
        (6, good[2], "1950-01-01", "X", "M", "ENG", None),  # far too old even with no NC year
        (7, good[3], "2012-09-01", "9", "M", "ENG", "9276308686"),  # age 13 in year 9: fine; valid ULN
        (8, good[4], "2012-09-01", "9", "M", "ENG", "9276308687"),  # bad ULN check digit
        (9, good[5], None, "R", "M", "REF", None),  # no DOB: judged by the mandatory check only
    ]
    frame = pd.DataFrame(rows, columns=["record_number", "upn", "dob", "nc_year", "sex", "language", "uln"])
    frame["dob"] = pd.to_datetime(frame["dob"])
    frame["reference_date"] = REF
    frame["parse_rejected"] = False
    for column in ("surname", "forename", "enrol_status", "ethnicity", "sen_provision", "service_child"):
        frame[column] = {
            "enrol_status": "C",
            "ethnicity": "WBRI",
            "sen_provision": "N",
            "service_child": "N",
        }.get(column, "Name")
    frame["entry_date"] = pd.Timestamp("2025-09-03")
    frame["yssa"] = None
    frame["former_upn"] = None
    return frame


def _run(frame: pd.DataFrame, name: str = "pupil") -> engine.SuiteResult:
    suites = load_suites(Settings().expectations_dir)
    return engine.run_suite(suites[name], frame, {"rows_read": len(frame), **suites.code_set_parameters()})


def _failing(result: engine.SuiteResult) -> dict[str, tuple[int, ...]]:
    return {r.code: r.records for r in result.results if r.records}


def test_custom_expectations_flag_exactly_the_bad_rows() -> None:
    result = _run(_pupils())
    assert _failing(result) == {
        "CT-DQ-UPN-CHECK": (2,),
        "CT-DQ-UPN-DUPLICATE": (3,),  # the later copy only; record 1 is kept
        "CT-DQ-DOB-RANGE": (5, 6),
        "CT-DQ-ULN-CHECK": (8,),
        "CT-DQ-CODE:sex": (5,),
        "CT-DQ-CODE:language": (5,),
        "CT-DQ-MISSING:dob": (9,),
    }
    by_code = {r.code: r for r in result.results}
    assert by_code["CT-DQ-UPN-TEMPORARY"].success
    assert (
        by_code["CT-DQ-UPN-TEMPORARY"].unexpected_count,
        by_code["CT-DQ-UPN-TEMPORARY"].element_count,
    ) == (1, 9)
    assert not by_code["CT-DQ-UPN-CHECK"].success


def test_an_unreadable_mandatory_value_is_not_reported_missing() -> None:
    frame = _pupils()
    frame.loc[frame["record_number"] == 9, "parse_rejected"] = True  # the parser could not read its DOB
    assert "CT-DQ-MISSING:dob" not in _failing(_run(frame))


def test_dob_plausibility_follows_the_nc_year() -> None:
    from censustrace.quality.expectations import plausible_dob

    dob = pd.to_datetime(
        pd.Series(["2021-09-01", "2021-08-31", "2017-08-31", "2016-09-01", "2026-10-02", None])
    )
    nc_year = pd.Series(["R", "R", "R", None, "E1", "R"])
    ok = plausible_dob(dob, nc_year, pd.Series([REF] * 6), tolerance_years=2, max_age=25)
    # R is age 4 on 31 Aug 2026 (born Sep 2021 - Aug 2022): age 4 and 5 pass (within 2), 9 does not;
    # no NC year: any age 0-25; after the census day: never; no DOB: passes here.
    assert ok.tolist() == [True, True, False, True, False, True]


def test_fsm_periods_must_follow_each_other() -> None:
    from censustrace.quality.expectations import periods_in_order

    frame = pd.DataFrame(
        {
            "record_number": [1, 1, 2, 2, 3, 3],
            "period_number": [1, 2, 2, 1, 1, 2],
            "start_date": pd.to_datetime(
                ["2020-01-01", "2020-06-01", "2021-03-01", "2021-01-01", "2020-01-01", "2020-03-01"]
            ),
            "end_date": pd.to_datetime(["2020-05-01", None, None, "2021-02-01", None, None]),
        }
    )
    # Record 1: in order. Record 2: rows out of file order but in order by number. Record 3: the first
    # period never ended, so the second overlaps it.
    assert periods_in_order(frame).tolist() == [True, True, True, True, True, False]


def test_results_and_documents_hold_counts_and_record_numbers_only() -> None:
    result = _run(_pupils())
    document: dict[str, Any] = result.document.to_json_dict()
    text = str(document)
    assert SECRET_UPN not in text
    assert "ZZZ" not in text  # the unknown language code
    assert "1950-01-01" not in text
    assert "2027-01-01" not in text
    for item in document["results"]:
        assert not FORBIDDEN & set(item["result"]), item["result"]
        assert set(item["result"]) <= set(engine._COUNT_FIELDS) | {"observed_value"}
    assert document["meta"] == {"great_expectations_version": document["meta"]["great_expectations_version"]}
    assert SECRET_UPN not in str([r.as_dict() for r in result.results])


@pytest.mark.parametrize("name", ["pupil", "pupil_address", "fsm_period"])
def test_two_passes_and_the_memo_give_what_one_plain_gx_validation_gives(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = {
        "pupil": _pupils(),
        "pupil_address": pd.DataFrame(
            {"record_number": [1, 2, 3], "postcode": ["B1 1AA", "B1 1CI", None], "uprn": ["12", "x", None]}
        ),
        "fsm_period": pd.DataFrame(
            {
                "record_number": [1, 1, 2],
                "period_number": [1, 2, 1],
                "start_date": pd.to_datetime(["2020-01-01", "2020-02-01", "2027-01-01"]),
                "end_date": pd.to_datetime([None, None, "2026-01-01"]),
                "reference_date": REF,
                "dob": pd.to_datetime(["2015-01-01", "2015-01-01", "2021-01-01"]),
                "uk_country": ["ENG", "XXX", None],
            }
        ),
    }
    fast = _run(frames[name], name)
    suites = load_suites(Settings().expectations_dir)
    suite = suites[name]
    monkeypatch.setattr(engine, "MEMOISE_CONFIGURATIONS", False)
    monkeypatch.setattr(engine, "COUNTS_FORMAT", engine.RESULT_FORMAT)  # one COMPLETE pass, as plain GX
    plain = engine.run_suite(
        suite, frames[name], {"rows_read": len(frames[name]), **suites.code_set_parameters()}
    )
    # Record numbers are fetched for failed expectations only (a passing one keeps its counts).
    passing = {r.code for r in plain.results if r.success}
    assert [
        r if r.code not in passing else dataclasses.replace(r, records=(), failed_keys=())
        for r in plain.results
    ] == list(fast.results)
    assert any(not r.success for r in fast.results)


def test_the_memo_puts_gx_back_as_it_was() -> None:
    from great_expectations.expectations.expectation import Expectation

    before = Expectation.__dict__["configuration"]
    _run(_pupils())
    assert Expectation.__dict__["configuration"] is before
