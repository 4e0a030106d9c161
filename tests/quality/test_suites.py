"""The suites in expectations/: they load, say what they catch, match the census code sets, open as a GX
file data context without writing into the repo, and a broken suite file fails loudly at load time,
naming the file and the entry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from censustrace.census import codes
from censustrace.census.generator import ROW_FAULTS
from censustrace.config import Settings
from censustrace.quality.suites import SuiteError, load_suites
from tests.quality.helpers import copy_suites, edit_suite

REPO_EXPECTATIONS = Settings().expectations_dir


def test_the_three_suites_load_with_severity_and_codes() -> None:
    suites = load_suites(REPO_EXPECTATIONS)
    assert [s.name for s in suites] == ["pupil", "pupil_address", "fsm_period"]  # pupil first
    assert {s.name: s.table for s in suites} == {
        "pupil": "staged_pupil",
        "pupil_address": "staged_pupil_address",
        "fsm_period": "staged_fsm_period",
    }
    codes_seen = [e.code for s in suites for e in s.expectations]
    assert len(codes_seen) == len(set(codes_seen))
    for suite in suites:
        assert suite.max_critical_share == 0.05
        assert len(suite.gx_suite.expectations) == len(suite.expectations)
        for spec, gx_expectation in zip(suite.expectations, suite.gx_suite.expectations, strict=True):
            assert spec.severity in ("critical", "warning")
            assert str(gx_expectation.severity.value) == spec.severity  # GX's own field agrees
            assert spec.code.startswith("CT-DQ-")
            assert spec.description


def test_every_generator_row_fault_has_an_expectation_meant_for_it() -> None:
    suites = load_suites(REPO_EXPECTATIONS)
    meant = {e.fault for s in suites for e in s.expectations if e.fault}
    assert meant == set(ROW_FAULTS)


def test_what_the_issue_asks_for_is_covered() -> None:
    pupil = load_suites(REPO_EXPECTATIONS)["pupil"]
    by_code = {e.code: e for e in pupil.expectations}
    assert by_code["CT-DQ-UPN-CHECK"].type == "expect_column_values_to_be_valid_upn"  # custom
    assert by_code["CT-DQ-UPN-TEMPORARY"].kwargs["mostly"] == 0  # accepted and counted
    assert by_code["CT-DQ-UPN-DUPLICATE"].type == "expect_column_values_to_be_first_occurrences"
    for field in (
        "sex",
        "ethnicity",
        "language",
        "sen_provision",
        "enrol_status",
        "nc_year",
        "service_child",
    ):
        assert f"CT-DQ-CODE:{field}" in by_code
    assert "CT-DQ-CODE:yssa" in by_code
    for field in ("upn", "surname", "forename", "dob", "sex", "entry_date", "enrol_status", "nc_year"):
        assert by_code[f"CT-DQ-MISSING:{field}"].severity == "critical"


def test_code_sets_are_those_of_the_census_codes_module() -> None:
    parameters = load_suites(REPO_EXPECTATIONS).code_set_parameters()
    assert parameters["codes_ETHNICITY"] == sorted(codes.ETHNICITY)
    assert {"REFU", "NOBT"} <= set(parameters["codes_ETHNICITY"])  # refused / not obtained allowed
    assert {"REF", "NOT"} <= set(parameters["codes_LANGUAGE"])
    assert {"R", "U"} <= set(parameters["codes_SERVICE_CHILD"])
    assert parameters["codes_NC_YEAR"] == sorted(codes.NC_YEAR)
    assert parameters["codes_FSM_UK_COUNTRY"] == sorted(codes.FSM_UK_COUNTRY)


def test_the_folder_opens_as_a_gx_file_context_and_nothing_is_written_into_it(tmp_path: Path) -> None:
    import great_expectations as gx

    import censustrace.quality.expectations  # noqa: F401  (custom types, as the yml says)

    folder = copy_suites(REPO_EXPECTATIONS, tmp_path / "expectations")
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    context = gx.get_context(mode="file", context_root_dir=str(folder))
    suites = {s.name: s for s in context.suites.all()}
    assert sorted(suites) == ["fsm_period", "pupil", "pupil_address"]
    ours = load_suites(REPO_EXPECTATIONS)
    for name, suite in suites.items():
        assert len(suite.expectations) == len(ours[name].expectations)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


# --- a broken suite fails loudly -----------------------------------------------------------------------


def _broken(tmp_path: Path, edit: Any, name: str = "pupil") -> Path:
    folder = copy_suites(REPO_EXPECTATIONS, tmp_path / "expectations")
    edit_suite(folder, name, edit)
    return folder


def _load_error(folder: Path) -> SuiteError:
    with pytest.raises(SuiteError) as raised:
        load_suites(folder)
    return raised.value


def test_invalid_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    folder = copy_suites(REPO_EXPECTATIONS, tmp_path / "expectations")
    path = folder / "suites" / "pupil_address.json"
    path.write_text(path.read_text().replace('"critical"', "critical", 1))
    error = _load_error(folder)
    assert error.code == "CT-DQ-SUITE-JSON"
    assert str(path) in error.message
    assert "line " in error.message


def test_an_unknown_expectation_type_names_the_file_and_the_entry(tmp_path: Path) -> None:
    def edit(document: dict[str, Any]) -> None:
        document["expectations"][3]["type"] = "expect_column_values_to_be_a_pupil_we_like"

    folder = _broken(tmp_path, edit)
    error = _load_error(folder)
    assert error.code == "CT-DQ-SUITE-TYPE"
    assert str(folder / "suites" / "pupil.json") in error.message
    assert "expectation 4 (expect_column_values_to_be_a_pupil_we_like)" in error.message


@pytest.mark.parametrize(
    ("edit", "code", "words"),
    [
        (
            lambda d: d["expectations"][8]["kwargs"].pop("column"),
            "CT-DQ-SUITE-ENTRY",
            "invalid configuration",
        ),
        (
            lambda d: d["expectations"][8]["kwargs"].update(mostly=7),
            "CT-DQ-SUITE-ENTRY",
            "invalid configuration",
        ),
        (lambda d: d["expectations"][8]["meta"].pop("severity"), "CT-DQ-SUITE-META", "meta.severity"),
        (
            lambda d: d["expectations"][8]["meta"].update(severity="fatal"),
            "CT-DQ-SUITE-META",
            "meta.severity",
        ),
        (lambda d: d["expectations"][8]["meta"].pop("code"), "CT-DQ-SUITE-META", "meta.code"),
        (lambda d: d["expectations"][8]["meta"].update(code="UPN"), "CT-DQ-SUITE-META", "meta.code"),
        (lambda d: d["expectations"][8].update(severity="warning"), "CT-DQ-SUITE-META", "disagree"),
        (lambda d: d["expectations"][8].pop("description"), "CT-DQ-SUITE-META", "description"),
        (
            lambda d: d["expectations"][9]["meta"].update(code="CT-DQ-UPN-CHECK"),
            "CT-DQ-SUITE-META",
            "unique",
        ),
        (
            lambda d: d["expectations"][1]["kwargs"].update(value={"$PARAMETER": "pupils_expected"}),
            "CT-DQ-SUITE-PARAMETER",
            "pupils_expected",
        ),
        (
            lambda d: d["expectations"][18]["kwargs"].update(value_set={"$PARAMETER": "codes_GENDERS"}),
            "CT-DQ-SUITE-PARAMETER",
            "codes_GENDERS",
        ),
        (lambda d: d["meta"].pop("censustrace"), "CT-DQ-SUITE-META", "meta.censustrace"),
        (lambda d: d["meta"]["censustrace"].update(max_critical_share=5), "CT-DQ-SUITE-META", "share"),
        (lambda d: d.update(name="pupils"), "CT-DQ-SUITE-JSON", "file name"),
        (lambda d: d.update(expectations={}), "CT-DQ-SUITE-JSON", "not a suite"),
    ],
)
def test_a_bad_entry_is_refused_naming_file_and_entry(
    tmp_path: Path, edit: Any, code: str, words: str
) -> None:
    folder = _broken(tmp_path, edit)
    error = _load_error(folder)
    assert error.code == code
    assert str(folder / "suites" / "pupil.json") in error.message
    assert words in error.message


def test_gx_would_have_dropped_the_entry_silently(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Why the loader builds entries itself: GX's own suite constructor logs and drops a bad one."""
    import great_expectations as gx

    document = json.loads((REPO_EXPECTATIONS / "suites" / "pupil.json").read_text())
    document["expectations"][3]["type"] = "expect_nothing_known"
    suite = gx.ExpectationSuite(name="pupil", expectations=document["expectations"])
    assert len(suite.expectations) == len(document["expectations"]) - 1


def test_suites_are_read_again_when_a_file_changes(tmp_path: Path) -> None:
    folder = copy_suites(REPO_EXPECTATIONS, tmp_path / "expectations")
    first = load_suites(folder)
    assert load_suites(folder) is first  # cached

    def drop_last(document: dict[str, Any]) -> None:
        document["expectations"].pop()

    edit_suite(folder, "pupil_address", drop_last)
    again = load_suites(folder)
    assert len(again["pupil_address"].expectations) == len(first["pupil_address"].expectations) - 1
