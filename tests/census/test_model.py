"""The canonical pupil record, the code sets and the census calendar."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from censustrace.census import codes
from censustrace.census.model import (
    ADDRESS_ITEMS,
    IDENTIFYING_FIELDS,
    PUPIL_FIELDS,
    FsmPeriod,
    PupilRecord,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "data-model.md"

EXPECTED_FIELDS = [
    "upn",
    "former_upn",
    "uln",
    "surname",
    "forename",
    "middle_names",
    "preferred_surname",
    "former_surname",
    "dob",
    "sex",
    "ethnicity",
    "language",
    "service_child",
    "nationality",
    "country_of_birth",
    "entry_date",
    "enrol_status",
    "nc_year",
    "boarder",
    "part_time",
    "yssa",
    "top_up_funding",
    "sen_provision",
    "sen_needs",
    "address_lines",
    "postcode",
    "uprn",
    "fsm_eligible",
    "fsm_periods",
    "laestab",
    "urn",
    "census_term",
    "census_year",
    "reference_date",
]


def make_record(**changes: object) -> PupilRecord:
    values: dict[str, object] = dict.fromkeys(PUPIL_FIELDS)
    values.update(
        upn="B801200005001",
        nationality=(),
        sen_needs=(),
        address_lines=("", "12", "Testwood Road", "", "Testbury", "Testshire", "TESTBURY"),
        fsm_periods=(FsmPeriod(dt.date(2024, 9, 1), None, "ENG"),),
        laestab="3302000",
        census_term="AUT",
        census_year=2026,
        reference_date=dt.date(2026, 10, 1),
    )
    values.update(changes)
    return PupilRecord(**values)  # type: ignore[arg-type]


def test_fields_are_exactly_the_agreed_ones_in_order() -> None:
    assert list(PUPIL_FIELDS) == EXPECTED_FIELDS
    assert set(PUPIL_FIELDS) >= IDENTIFYING_FIELDS
    assert {"dob", "postcode", "address_lines", "uprn", "former_upn"} <= IDENTIFYING_FIELDS
    assert "ethnicity" not in IDENTIFYING_FIELDS


def test_record_is_frozen_and_slotted() -> None:
    record = make_record()
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.upn = "X"  # type: ignore[misc]
    assert not hasattr(record, "__dict__")


def test_address_items_and_fsm_cover() -> None:
    record = make_record()
    assert len(ADDRESS_ITEMS) == len(record.address_lines) == 7
    assert record.address_item("Street") == "Testwood Road"
    assert record.address_item("SAON") == ""
    assert make_record(address_lines=()).address_item("Street") == ""
    period = FsmPeriod(dt.date(2025, 1, 6), dt.date(2025, 7, 18), "ENG")
    assert period.covers(dt.date(2025, 1, 6))
    assert period.covers(dt.date(2025, 7, 18))
    assert not period.covers(dt.date(2025, 7, 19))
    assert FsmPeriod(dt.date(2025, 1, 6), None, "ENG").covers(dt.date(2030, 1, 1))


def test_data_model_doc_describes_every_field() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name in PUPIL_FIELDS:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize(
    ("term", "year", "expected"),
    [
        ("AUT", 2025, dt.date(2025, 10, 2)),
        ("SPR", 2025, dt.date(2025, 1, 16)),
        ("SUM", 2025, dt.date(2025, 5, 15)),
        ("AUT", 2026, dt.date(2026, 10, 1)),  # 1 October is itself a Thursday
        ("SPR", 2027, dt.date(2027, 1, 21)),
    ],
)
def test_reference_dates(term: str, year: int, expected: dt.date) -> None:
    assert codes.reference_date(term, year) == expected
    assert expected.weekday() == 3


def test_calendar_helpers() -> None:
    assert codes.academic_year_start("AUT", 2026) == 2026
    assert codes.academic_year_start("SPR", 2027) == codes.academic_year_start("SUM", 2027) == 2026
    assert codes.collects_nationality("AUT", 2016)
    assert codes.collects_nationality("SUM", 2018)
    assert not codes.collects_nationality("SUM", 2016)
    assert not codes.collects_nationality("AUT", 2018)
    assert codes.nc_year_age("R") == 4
    assert codes.nc_year_age("1") == 5
    assert codes.nc_year_age("14") == 18
    assert codes.nc_year_age("X") is None
    assert "X" in codes.NC_YEAR
    with pytest.raises(ValueError, match="term"):
        codes.reference_date("WIN", 2026)


def test_code_sets_from_the_brief() -> None:
    assert {"REFU", "NOBT", "WBRI", "OOTH"} <= codes.ETHNICITY
    assert len(codes.ETHNICITY) == 20
    assert {"REF", "NOT", "ENG", "ENB", "OTB"} <= codes.LANGUAGE
    assert {"REF", "NYO", "STA", "NKO", "GBR"} <= codes.NATIONALITY
    assert "STA" not in codes.COUNTRY_OF_BIRTH
    assert len(codes.ISO3166_ALPHA3) == 249
    assert {"N", "E", "K", "A", "P", "S"} == codes.SEN_PROVISION
    assert {"C", "M", "S", "F", "O"} == codes.ENROL_STATUS
    assert {"Y", "N", "U", "R"} == codes.SERVICE_CHILD
    assert {"Yes", "No", "UNS", "SNR"} == codes.YSSA
    assert {"ENG", "NIR", "SCT", "WLS"} == codes.FSM_UK_COUNTRY
    assert codes.TERMS == ("AUT", "SPR", "SUM")
