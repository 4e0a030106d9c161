"""CTF reader: round trip against the generator, faults, header from file name or hints, histories."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from censustrace.census import codes
from censustrace.census.formats import ctf_xml
from censustrace.census.formats.declared import NAME_MISMATCH
from censustrace.census.formats.errors import (
    ENCODING,
    FORBIDDEN,
    HEADER,
    LAYOUT,
    MALFORMED,
    REPEATED,
    TRUNCATED,
    VALUE,
    ParseError,
)
from censustrace.census.formats.header import ExtractHints
from tests.census.formats import Captured, assert_same, census_entries, expected_record, generate_captured

WHOLE_FILE_CODES = {"malformed_xml": MALFORMED, "truncated": TRUNCATED, "wrong_encoding": ENCODING}
Generated = tuple[Path, dict[str, Any], Captured]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp("ctf-clean")
    manifest, captured = generate_captured(
        out, schools=5, pupils_per_school=120, term="SPR", year=2018, fmt="ctf"
    )
    return out, manifest, captured


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp("ctf-faulty")
    manifest, captured = generate_captured(out, schools=12, pupils_per_school=100, fmt="ctf", faults=0.08)
    return out, manifest, captured


def _ctf(pupils: str = "", source: str = "<LEA>330</LEA><Estab>2001</Estab><URN>123456</URN>") -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<CTfile><Header><DocumentName>Common Transfer File</DocumentName>"
        "<CTFversion>20.0</CTFversion><DateTime>2027-01-21T16:00:00</DateTime><SupplierID>MIS</SupplierID>"
        f"<SourceSchool>{source}</SourceSchool><DestSchool><LEA>331</LEA><Estab>4000</Estab></DestSchool>"
        f"</Header><CTFpupilData>{pupils}</CTFpupilData></CTfile>\n"
    )


def test_clean_files_read_back_exactly_as_generated(clean: Generated) -> None:
    out, manifest, captured = clean
    for entry in census_entries(manifest):
        got = list(ctf_xml.iter_records(out / entry["file"]))
        assert len(got) == entry["pupils"] == entry["rows"]
        assert all(issues == [] for _, _, issues in got)
        assert_same(got, [expected_record(p, o, "ctf") for p, o in captured[entry["laestab"]]])
        records = [r for _, r, _ in got]
        assert all(r.boarder is None and r.yssa is None for r in records)  # not carried by a CTF
    records = [
        r for entry in census_entries(manifest) for _, r, _ in ctf_xml.iter_records(out / entry["file"])
    ]
    assert any(r.nationality for r in records)
    assert any(len(r.sen_needs) > 1 for r in records)
    assert any(r.entry_date for r in records)
    assert any(r.language for r in records)


def test_header_source_school_and_term_from_file_name(clean: Generated) -> None:
    out, manifest, _ = clean
    entries = manifest["files"]
    header = ctf_xml.read_header(out / entries[0]["file"])
    assert header.format == "ctf_xml"
    assert (header.laestab, header.urn, header.term, header.year) == (
        entries[0]["laestab"],
        entries[0]["urn"],
        "SPR",
        2018,
    )
    assert header.reference_date == codes.reference_date("SPR", 2018)
    assert header.reference_date.isoformat() == entries[0]["reference_date"]
    assert header.dest_laestab == entries[1]["laestab"]  # addressed to the next school
    assert header.software == "CENSUSTRACE-GEN"
    assert header.software_release == "20.0"


def test_a_ctf_is_dated_by_its_header_datetime(tmp_path: Path) -> None:
    path = tmp_path / "transfer.xml"
    path.write_text(_ctf().replace("2027-01-21T16:00:00", "2026-11-03T09:30:00"), encoding="utf-8")
    header = ctf_xml.read_header(path)  # no term in the name: the term of DateTime
    assert (header.term, header.year) == ("AUT", 2026)
    assert header.reference_date == dt.date(2026, 11, 3)
    undated = tmp_path / "undated.xml"
    undated.write_text(_ctf().replace("<DateTime>2027-01-21T16:00:00</DateTime>", ""), encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(undated)
    assert raised.value.code == HEADER
    assert "TERM" in (raised.value.item or "")


def test_a_name_that_disagrees_with_the_ctf_header_is_refused(tmp_path: Path) -> None:
    other_school = tmp_path / "CTF_330_2002_SPR_2027.xml"
    other_school.write_text(_ctf(), encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(other_school)
    assert raised.value.code == NAME_MISMATCH
    assert raised.value.item == "CTfile/Header/SourceSchool/Estab"
    assert "CTF_330_2002_SPR_2027.xml" in str(raised.value)
    year = "<LEA>330</LEA><Estab>2001</Estab><URN>123456</URN><AcademicYear>2025/2026</AcademicYear>"
    wrong_year = tmp_path / "CTF_330_2001_SPR_2027.xml"
    wrong_year.write_text(_ctf(source=year), encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(wrong_year)
    assert raised.value.code == NAME_MISMATCH
    assert raised.value.item == "CTfile/Header/SourceSchool/AcademicYear"
    right_year = tmp_path / "CTF_330_2001_SPR_2026.xml"
    right_year.write_text(_ctf(source=year), encoding="utf-8")
    assert ctf_xml.read_header(right_year).year == 2026  # SPR 2026 is in 2025/2026


def test_term_and_year_from_hints_when_the_name_has_none(tmp_path: Path) -> None:
    path = tmp_path / "transfer.xml"
    path.write_text(_ctf(), encoding="utf-8")
    header = ctf_xml.read_header(path, ExtractHints(term="SPR", year=2027))
    assert (header.laestab, header.term, header.year) == ("3302001", "SPR", 2027)
    assert header.document_datetime == dt.datetime(2027, 1, 21, 16)
    named = tmp_path / "CTF_330_2001_SPR_2027.xml"
    named.write_text(_ctf(), encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(named, ExtractHints(year=2026))
    assert raised.value.code == HEADER


def test_missing_source_school_is_a_header_error(tmp_path: Path) -> None:
    path = tmp_path / "CTF_330_2001_SPR_2027.xml"
    path.write_text(_ctf(source="<LEA>330</LEA>"), encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(path)
    assert raised.value.code == HEADER
    assert raised.value.item == "CTfile/Header/SourceSchool/Estab"


def test_histories_are_reduced_to_the_census_view(tmp_path: Path) -> None:
    pupil = (
        "<Pupil><UPN>A1</UPN><DOB>2015-05-01</DOB><Gender>M</Gender><BasicDetails>"
        "<Languages><Type><LanguageType>H</LanguageType><Language>POL</Language></Type>"
        "<Type><LanguageType>F</LanguageType><Language>ENG</Language></Type>"
        "<Type><LanguageType>F</LanguageType><Language>FRN</Language></Type></Languages></BasicDetails>"
        "<SchoolHistory><School><LEA>330</LEA><Estab>2001</Estab><EntryDate>2019-09-01</EntryDate></School>"
        "<School><LEA>999</LEA><Estab>2001</Estab><EntryDate>2026-01-01</EntryDate></School>"
        "<School><LEA>330</LEA><Estab>2001</Estab><EntryDate>2021-04-12</EntryDate></School></SchoolHistory>"
        "<SENhistory><SEN><SENprovision>K</SENprovision></SEN><SEN><SENprovision>E</SENprovision></SEN>"
        "<SENneeds><SENneed><SENtypeRank>2</SENtypeRank><SENtype>SLCN</SENtype></SENneed>"
        "<SENneed><SENtypeRank>1</SENtypeRank><SENtype>ASD</SENtype></SENneed>"
        "<SENneed><SENtypeRank>x</SENtypeRank><SENtype>OTH</SENtype></SENneed></SENneeds></SENhistory>"
        "<FSMhistory><FSMinstance><FSMstartDate>2026-11-01</FSMstartDate><UKcountry>ENG</UKcountry>"
        "</FSMinstance></FSMhistory></Pupil>"
    )
    path = tmp_path / "CTF_330_2001_SPR_2027.xml"
    path.write_text(_ctf(pupil), encoding="utf-8")
    ((number, r, issues),) = ctf_xml.iter_records(path)
    assert number == 1
    assert r.upn == "A1"
    assert r.sex == "M"
    assert r.dob == dt.date(2015, 5, 1)
    assert r.language == "ENG"
    assert r.entry_date == dt.date(2021, 4, 12)  # latest entry at this school, not the other LA's
    assert r.sen_provision == "E"
    assert r.sen_needs == ("ASD", "SLCN", "OTH")
    assert r.fsm_eligible is True
    assert r.address_lines == ()
    assert r.postcode is None
    assert sorted((i.code, i.field) for i in issues) == [(REPEATED, "language"), (VALUE, "sen_needs")]


def test_row_faults_are_in_the_records_and_nothing_else_changes(faulty: Generated) -> None:
    out, manifest, captured = faulty
    faulted = {(f["file"], f["location"].get("pupil_index")) for f in manifest["faults"]}
    for entry in census_entries(manifest):
        if entry["whole_file_fault"]:
            continue
        got = list(ctf_xml.iter_records(out / entry["file"]))
        rows = captured[entry["laestab"]]
        assert_same(got, [expected_record(p, o, "ctf") for p, o in rows])
        for (number, _, issues), (_, overrides) in zip(got, rows, strict=True):
            assert ((entry["file"], number) in faulted) == bool(overrides)
            assert all(i.code == VALUE and i.field == "dob" and i.record == number for i in issues)


def test_every_whole_file_fault_raises_its_code(faulty: Generated) -> None:
    out, manifest, _ = faulty
    faults = [f for f in manifest["faults"] if f["location"] == {"file": True}]
    assert sorted(f["fault"] for f in faults) == sorted(WHOLE_FILE_CODES)
    for fault in faults:
        with pytest.raises(ParseError) as raised:
            list(ctf_xml.iter_records(out / fault["file"]))
        assert raised.value.code == WHOLE_FILE_CODES[fault["fault"]], fault


def test_census_xml_is_not_a_ctf_and_doctype_is_forbidden(tmp_path: Path) -> None:
    census = tmp_path / "CTF_330_2001_SPR_2027.xml"
    census.write_text('<?xml version="1.0"?>\n<Message><Header/></Message>', encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        ctf_xml.read_header(census)
    assert raised.value.code == LAYOUT
    evil = tmp_path / "CTF_330_2002_SPR_2027.xml"
    evil.write_text(
        _ctf().replace("<CTfile>", '<!DOCTYPE CTfile [<!ENTITY x SYSTEM "file:///etc/passwd">]><CTfile>')
    )
    with pytest.raises(ParseError) as raised:
        list(ctf_xml.iter_records(evil))
    assert raised.value.code == FORBIDDEN
