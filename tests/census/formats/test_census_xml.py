"""School Census XML reader: round trip against the generator, faults, header, safety, bounded memory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import re
import socket
import stat
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.formats import census_xml
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
from censustrace.census.generator.names import NON_ASCII_FORENAME
from tests.census.formats import (
    Captured,
    assert_same,
    census_entries,
    expected_record,
    generate_captured,
)

WHOLE_FILE_CODES = {"malformed_xml": MALFORMED, "truncated": TRUNCATED, "wrong_encoding": ENCODING}
Generated = tuple[Path, dict[str, Any], Captured]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """AUT 2017 (nationality collected), no faults."""
    out = tmp_path_factory.mktemp("xml-clean")
    manifest, captured = generate_captured(out, schools=4, pupils_per_school=150, year=2017, fmt="xml")
    return out, manifest, captured


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """12 schools: one of each whole-file fault, and row faults in the others."""
    out = tmp_path_factory.mktemp("xml-faulty")
    manifest, captured = generate_captured(out, schools=12, pupils_per_school=120, fmt="xml", faults=0.08)
    return out, manifest, captured


def _minimal(pupils: str = "", header: str | None = None, prolog: str = "") -> str:
    header = (
        header
        if header is not None
        else (
            "<Header><CollectionDetails><Collection>SC</Collection><Term>SPR</Term><Year>2027</Year>"
            "<ReferenceDate>2027-01-21</ReferenceDate></CollectionDetails>"
            "<Source><LEA>330</LEA><Estab>2001</Estab><URN>123456</URN></Source></Header>"
        )
    )
    declaration = '<?xml version="1.0" encoding="UTF-8"?>\n'
    return f"{declaration}{prolog}<Message>{header}<Pupils>{pupils}</Pupils></Message>\n"


def _write(tmp_path: Path, text: str, name: str = "SC_330_2001_SPR_2027.xml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- round trip -----------------------------------------------------------------------------------


def test_clean_files_read_back_exactly_as_generated(clean: Generated) -> None:
    out, manifest, captured = clean
    assert sum(f["pupils"] for f in manifest["files"]) == 600
    for entry in census_entries(manifest):
        got = list(census_xml.iter_records(out / entry["file"]))
        assert len(got) == entry["pupils"] == entry["rows"]
        assert [n for n, _, _ in got] == list(range(1, entry["pupils"] + 1))
        assert all(issues == [] for _, _, issues in got)
        assert_same(got, [expected_record(p, o, "xml") for p, o in captured[entry["laestab"]]])
    # Nationality (collected in 2017) and other repeated items really were exercised.
    records = [r for _, r, _ in census_xml.iter_records(out / manifest["files"][0]["file"])]
    assert any(r.nationality for r in records)
    assert any(r.sen_needs for r in records)
    assert any(r.fsm_periods for r in records)
    assert any(r.fsm_eligible for r in records)


def test_independent_read_of_a_few_items(clean: Generated) -> None:
    """Not only the spy: the first UPN and postcode are also read with a plain regex over the bytes."""
    out, manifest, _ = clean
    path = out / manifest["files"][0]["file"]
    text = path.read_text(encoding="utf-8")
    first = next(census_xml.iter_records(path)).record
    assert first.upn == re.search(r"<UPN>([^<]+)</UPN>", text)[1]  # type: ignore[index]
    assert first.postcode == re.search(r"<PostCode>([^<]+)</PostCode>", text)[1]  # type: ignore[index]


def test_header_is_read_from_the_file(clean: Generated) -> None:
    out, manifest, _ = clean
    entry = manifest["files"][1]
    header = census_xml.read_header(out / entry["file"])
    assert header.format == "school_census_xml"
    assert (header.laestab, header.urn, header.term, header.year) == (
        entry["laestab"],
        entry["urn"],
        entry["term"],
        entry["year"],
    )
    assert header.reference_date.isoformat() == entry["reference_date"]
    assert header.software == "CENSUSTRACE-GEN"
    assert header.software_release == "1.0"
    assert header.document_datetime == dt.datetime.combine(header.reference_date, dt.time(16))
    assert header.declared_pupils is None
    assert header.source_files == (entry["file"],)
    record = next(census_xml.iter_records(out / entry["file"])).record
    assert (record.laestab, record.urn, record.census_term, record.census_year, record.reference_date) == (
        header.laestab,
        header.urn,
        header.term,
        header.year,
        header.reference_date,
    )


# --- faults ---------------------------------------------------------------------------------------


def test_row_faults_are_in_the_records_and_nothing_else_changes(faulty: Generated) -> None:
    out, manifest, captured = faulty
    by_file: dict[str, set[int]] = {}
    for fault in manifest["faults"]:
        if "pupil_index" in fault["location"]:
            by_file.setdefault(fault["file"], set()).add(fault["location"]["pupil_index"])
    for entry in census_entries(manifest):
        if entry["whole_file_fault"]:
            continue
        got = list(census_xml.iter_records(out / entry["file"]))
        rows = captured[entry["laestab"]]
        assert_same(got, [expected_record(p, o, "xml") for p, o in rows])
        for (number, _, issues), (_, overrides) in zip(got, rows, strict=True):
            assert (number in by_file.get(entry["file"], set())) == bool(overrides)
            # Only a DOB that is no date at all is a parse issue; everything else is validation's.
            not_a_date = "dob" in overrides and overrides["dob"] is not None and not _is_iso(overrides["dob"])
            assert [(i.code, i.field, i.record) for i in issues] == (
                [(VALUE, "dob", number)] if not_a_date else []
            )
    assert by_file  # the fixture really has row faults


def _is_iso(text: str) -> bool:
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def test_every_whole_file_fault_raises_its_code(faulty: Generated) -> None:
    out, manifest, _ = faulty
    faults = [f for f in manifest["faults"] if f["location"] == {"file": True}]
    assert sorted(f["fault"] for f in faults) == sorted(WHOLE_FILE_CODES)
    for fault in faults:
        with pytest.raises(ParseError) as raised:
            for _ in census_xml.iter_records(out / fault["file"]):
                pass
        assert raised.value.code == WHOLE_FILE_CODES[fault["fault"]], fault
        assert raised.value.file == fault["file"]
        assert raised.value.line is not None
        assert raised.value.__cause__ is None
        assert raised.value.__suppress_context__


def test_encoding_error_message_carries_no_pupil_bytes(faulty: Generated) -> None:
    out, manifest, _ = faulty
    name = next(f["file"] for f in manifest["faults"] if f["fault"] == "wrong_encoding")
    with pytest.raises(ParseError) as raised:
        list(census_xml.iter_records(out / name))
    text = str(raised.value) + repr(raised.value.as_dict())
    assert "Ren" not in text
    assert "0xE9" not in text
    assert "Bytes" not in text


def test_a_declared_windows_1252_file_is_read_in_that_encoding(faulty: Generated, tmp_path: Path) -> None:
    """The ``wrong_encoding`` fault is wrong only because it says UTF-8: declared honestly, it reads."""
    out, manifest, captured = faulty
    entry = next(f for f in manifest["files"] if f["whole_file_fault"] == "wrong_encoding")
    data = (out / entry["file"]).read_bytes().replace(b'encoding="UTF-8"', b'encoding="windows-1252"', 1)
    path = tmp_path / entry["file"]
    path.write_bytes(data)
    rows = captured[entry["laestab"]]
    expected = [expected_record(p, o, "xml") for p, o in rows]
    expected[0] = dataclasses.replace(expected[0], forename=NON_ASCII_FORENAME)  # the fault's accented name
    assert_same(list(census_xml.iter_records(path)), expected)


def test_read_header_stops_at_the_header(faulty: Generated) -> None:
    """A file broken after its first 64 KiB still gives its header: reading stopped at the header."""
    out, manifest, _ = faulty
    for kind in ("truncated", "malformed_xml"):
        entry = next(f for f in manifest["files"] if f["whole_file_fault"] == kind)
        assert (out / entry["file"]).stat().st_size > 100_000
        assert census_xml.read_header(out / entry["file"]).laestab == entry["laestab"]


def test_empty_and_cut_files_are_truncated(tmp_path: Path) -> None:
    for text in ("", '<?xml version="1.0"?>\n', _minimal()[:150], _minimal()[:-15]):
        path = _write(tmp_path, text)
        with pytest.raises(ParseError) as raised:
            list(census_xml.iter_records(path))
        assert raised.value.code == TRUNCATED, text


def test_undeclared_entity_is_malformed_not_truncated(tmp_path: Path) -> None:
    # lxml hides this error behind "no element found" when entities are not resolved.
    path = _write(
        tmp_path,
        _minimal("<PupilOnRoll><PupilIdentifiers><UPN>&nbsp;</UPN></PupilIdentifiers></PupilOnRoll>"),
    )
    with pytest.raises(ParseError) as raised:
        list(census_xml.iter_records(path))
    assert raised.value.code == MALFORMED


# --- header and layout ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "item"),
    [
        ("<LEA>330</LEA>", "", "Message/Header/Source/LEA"),
        ("<Estab>2001</Estab>", "<Estab>21</Estab>", "Message/Header/Source/Estab"),
        ("<Term>SPR</Term>", "<Term>WIN</Term>", "Message/Header/CollectionDetails/Term"),
        ("<Year>2027</Year>", "<Year>27</Year>", "Message/Header/CollectionDetails/Year"),
        ("2027-01-21", "2027-13-21", "Message/Header/CollectionDetails/ReferenceDate"),
        (
            "<Collection>SC</Collection>",
            "<Collection>EY</Collection>",
            "Message/Header/CollectionDetails/Collection",
        ),
        ("<URN>123456</URN>", "<URN>12</URN>", "Message/Header/Source/URN"),
    ],
)
def test_bad_header_items_are_named(tmp_path: Path, old: str, new: str, item: str) -> None:
    path = _write(tmp_path, _minimal().replace(old, new))
    with pytest.raises(ParseError) as raised:
        census_xml.read_header(path)
    assert raised.value.code == HEADER
    assert raised.value.item == item
    assert item in str(raised.value)


def test_missing_header_and_pupils_before_header(tmp_path: Path) -> None:
    with pytest.raises(ParseError) as raised:
        census_xml.read_header(_write(tmp_path, _minimal(header="")))
    assert raised.value.code == HEADER
    assert raised.value.item == "Message/Header"
    text = _minimal("<PupilOnRoll/>").replace("<Header>", "<Pupils><PupilOnRoll/></Pupils><Header>", 1)
    with pytest.raises(ParseError) as raised:
        list(census_xml.iter_records(_write(tmp_path, text)))
    assert raised.value.code == HEADER


def test_reference_date_computed_when_absent_and_hints_checked(tmp_path: Path) -> None:
    path = _write(tmp_path, _minimal().replace("<ReferenceDate>2027-01-21</ReferenceDate>", ""))
    assert census_xml.read_header(path).reference_date == dt.date(2027, 1, 21)
    assert census_xml.read_header(path, ExtractHints(la="330", term="SPR")).la == "330"
    with pytest.raises(ParseError) as raised:
        census_xml.read_header(path, ExtractHints(estab="9999"))
    assert raised.value.code == HEADER
    assert raised.value.item == "Message/Header/Source/Estab"


@pytest.mark.parametrize(
    ("name", "item"),
    [
        ("SC_331_2001_SPR_2027.xml", "Message/Header/Source/LEA"),
        ("SC_330_2002_SPR_2027.xml", "Message/Header/Source/Estab"),
        ("SC_330_2001_AUT_2027.xml", "Message/Header/CollectionDetails/Term"),
        ("SC_330_2001_SPR_2026.xml", "Message/Header/CollectionDetails/Year"),
    ],
)
def test_a_name_that_disagrees_with_the_header_is_refused(tmp_path: Path, name: str, item: str) -> None:
    path = _write(tmp_path, _minimal(), name)
    with pytest.raises(ParseError) as raised:
        census_xml.read_header(path)
    assert raised.value.code == NAME_MISMATCH
    assert raised.value.item == item
    assert name in str(raised.value)
    # A name outside the convention says nothing: the header alone counts.
    assert census_xml.read_header(_write(tmp_path, _minimal(), "upload.xml")).laestab == "3302001"


def test_wrong_root_and_misplaced_pupils_are_layout_errors(tmp_path: Path) -> None:
    ctf = '<?xml version="1.0"?>\n<CTfile><Header/></CTfile>'
    with pytest.raises(ParseError) as raised:
        census_xml.read_header(_write(tmp_path, ctf))
    assert raised.value.code == LAYOUT
    assert raised.value.item == "CTfile"
    nested = _minimal().replace("</Pupils>", "</Pupils><Other><PupilOnRoll/></Other>")
    with pytest.raises(ParseError) as raised:
        list(census_xml.iter_records(_write(tmp_path, nested)))
    assert raised.value.code == LAYOUT


# --- values ---------------------------------------------------------------------------------------


def test_value_variants_and_row_issues(tmp_path: Path) -> None:
    pupil = (
        "<PupilOnRoll><!-- MIS comment --><PupilIdentifiers><UPN> A123 </UPN><UPN>B</UPN><Surname/>"
        "<DOB>2016-02-30</DOB><Sex>F</Sex></PupilIdentifiers>"
        "<PupilStatus><EntryDate>2020-09-01T00:00:00</EntryDate><Boarder>1</Boarder><PartTime>no</PartTime>"
        "<TopUpFunding>perhaps</TopUpFunding></PupilStatus>"
        "<HomeInformation><Address><BS7666Address><PostCode>AB1 2CD</PostCode></BS7666Address></Address>"
        "</HomeInformation>"
        "<FSMperiods><FSMperiod><FSMstartDate>2027-02-01</FSMstartDate><UKcountry>ENG</UKcountry></FSMperiod>"
        "<FSMperiod><FSMstartDate>2025-Sep-01</FSMstartDate><FSMendDate>2025-02-31</FSMendDate></FSMperiod>"
        "</FSMperiods></PupilOnRoll><PupilOnRoll/>"
    )
    got = list(census_xml.iter_records(_write(tmp_path, _minimal(pupil))))
    (n1, r, issues), (n2, empty, empty_issues) = got
    assert (n1, n2) == (1, 2)
    assert r.upn == "A123"
    assert r.surname is None
    assert r.dob is None
    assert r.sex == "F"
    assert r.entry_date == dt.date(2020, 9, 1)
    assert (r.boarder, r.part_time, r.top_up_funding) == (True, False, None)
    assert r.address_lines == ("",) * 7
    assert r.postcode == "AB1 2CD"
    assert r.uprn is None
    assert len(r.fsm_periods) == 1
    assert r.fsm_periods[0].end is None
    assert r.fsm_eligible is None  # the open period starts after the census day; the other is unknown
    assert sorted((i.code, i.field, i.item) for i in issues) == [
        (REPEATED, "upn", "PupilIdentifiers/UPN"),
        (VALUE, "dob", "PupilIdentifiers/DOB"),
        (VALUE, "fsm_periods", "FSMperiods/FSMperiod/FSMendDate"),
        (VALUE, "top_up_funding", "PupilStatus/TopUpFunding"),
    ]
    assert empty.upn == ""
    assert [i.code for i in empty_issues] == ["CT-PARSE-NO-UPN"]
    assert empty.address_lines == ()
    assert empty.fsm_eligible is False


def test_row_issue_message_names_file_row_and_field_not_value(tmp_path: Path) -> None:
    pupil = (
        "<PupilOnRoll><PupilIdentifiers><UPN>A1</UPN><DOB>2016-02-30</DOB></PupilIdentifiers></PupilOnRoll>"
    )
    path = _write(tmp_path, _minimal(pupil * 3))
    issues = [i for _, _, issues in census_xml.iter_records(path) for i in issues]
    assert [i.record for i in issues] == [1, 2, 3]
    message = issues[2].message
    assert path.name in message
    assert "pupil 3" in message
    assert "dob" in message
    assert "2016-02-30" not in message
    assert "A1" not in message
    assert "2016-02-30" not in repr(issues[2].as_dict())


# --- safety ---------------------------------------------------------------------------------------


def _fifo_watch(fifo: Path) -> tuple[threading.Event, threading.Event, threading.Thread]:
    """Set ``opened`` if anything opens ``fifo`` for reading (a writer can then open it too)."""
    opened, stop = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: no reader
                time.sleep(0.002)
                continue
            opened.set()
            os.close(fd)
            return

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return opened, stop, thread


def _listener() -> tuple[socket.socket, list[bool]]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.05)
    return server, []


@pytest.mark.parametrize("hide_from_sniff", [False, True], ids=["prolog", "after-64KiB-comment"])
def test_xxe_and_billion_laughs_are_forbidden_and_nothing_is_fetched(
    tmp_path: Path, hide_from_sniff: bool
) -> None:
    """Both defences: the prolog sniff, and (for a DOCTYPE beyond the sniff) the parser's own settings."""
    fifo = tmp_path / "secret"
    os.mkfifo(fifo)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    server, _ = _listener()
    url = f"http://127.0.0.1:{server.getsockname()[1]}/x.dtd"
    laughs = '<!ENTITY lol "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    doctypes = [
        f'<!DOCTYPE Message [<!ENTITY xxe SYSTEM "file://{fifo}">]>',
        f'<!DOCTYPE Message SYSTEM "file://{fifo}">',
        f'<!DOCTYPE Message [<!ENTITY % p SYSTEM "file://{fifo}"> %p;]>',
        f'<!DOCTYPE Message [<!ENTITY xxe SYSTEM "{url}">]>',
        f'<!DOCTYPE Message SYSTEM "{url}">',
        f"<!DOCTYPE Message [{laughs}]>",
    ]
    opened, stop, thread = _fifo_watch(fifo)
    pad = "<!--" + "x" * 70_000 + "-->\n" if hide_from_sniff else ""
    try:
        for n, doctype in enumerate(doctypes):
            body = "<PupilOnRoll><PupilIdentifiers><UPN>&xxe;&lol9;</UPN></PupilIdentifiers></PupilOnRoll>"
            if "lol" not in doctype:
                body = body.replace("&lol9;", "")
            if "xxe" not in doctype:
                body = body.replace("&xxe;", "")
            path = _write(tmp_path, _minimal(body, prolog=pad + doctype + "\n"), f"SC_{n}.xml")
            started = time.perf_counter()
            for call in (census_xml.read_header, lambda p: list(census_xml.iter_records(p))):
                with pytest.raises(ParseError) as raised:
                    call(path)
                assert raised.value.code == FORBIDDEN, doctype
            assert time.perf_counter() - started < 2
        time.sleep(0.05)
        connections = 0
        try:
            while True:
                server.accept()[0].close()
                connections += 1
        except TimeoutError:
            pass
    finally:
        stop.set()
        thread.join()
        server.close()
    assert not opened.is_set(), "the parser opened a file named by the document"
    assert connections == 0, "the parser fetched a URL named by the document"


# --- bounded memory -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """One census file of 50,000 pupils: ten generated schools' pupils under one header."""
    from censustrace.census.generator import GeneratorOptions, generate

    out = tmp_path_factory.mktemp("xml-big")
    manifest = generate(GeneratorOptions(out=out, schools=10, pupils_per_school=5000, fmt="xml"))
    big = out / "SC_ten_schools_merged.xml"  # not named for one school: the header alone counts
    with big.open("w", encoding="utf-8") as fh:
        for n, entry in enumerate(manifest["files"]):
            text = (out / entry["file"]).read_text(encoding="utf-8")
            start, end = text.index("<Pupils>\n") + len("<Pupils>\n"), text.index("  </Pupils>")
            if n == 0:
                fh.write(text[:start])
            fh.write(text[start:end])
            (out / entry["file"]).unlink()
        fh.write("  </Pupils>\n</Message>\n")
    return big, sum(f["pupils"] for f in manifest["files"])


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _peak_rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_memory_stays_bounded_on_a_50000_pupil_file(big_file: tuple[Path, int]) -> None:
    path, pupils = big_file
    assert path.stat().st_size > 60_000_000
    rss = _peak_rss_reset()
    before = _peak_rss_kib() if rss else 0
    tracemalloc.start()
    try:
        count = sum(1 for _ in census_xml.iter_records(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == pupils == 50_000
    assert peak < 30 * 1024 * 1024, f"Python heap peak {peak / 2**20:.1f} MiB"
    if rss:  # libxml2's own allocations are invisible to tracemalloc; the process high-water mark is not
        grown = (_peak_rss_kib() - before) / 1024
        assert grown < 80, (
            f"resident memory grew by {grown:.0f} MiB for a {path.stat().st_size >> 20} MiB file"
        )
