"""LA warehouse CSV reader: join of the three tables, real-export variants, faults, header and layout."""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.formats import la_csv
from censustrace.census.formats.errors import (
    ENCODING,
    HEADER,
    LAYOUT,
    MALFORMED,
    ORPHAN,
    SHAPE,
    TOO_LARGE,
    TRUNCATED,
    UNKNOWN_COLUMN,
    VALUE,
    ParseError,
    ParseIssue,
)
from censustrace.census.formats.header import NO_HINTS, ExtractHints
from censustrace.census.model import PupilRecord
from tests.census.formats import (
    Captured,
    assert_same,
    census_entries,
    csv_fsm_join,
    expected_record,
    generate_captured,
)

Generated = tuple[Path, dict[str, Any], Captured]
Table = tuple[list[str], list[list[str]]]  # header, rows
HINTS = ExtractHints(la="330", estab="2000", term="AUT", year=2017)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    """AUT 2017, so pupilonroll also has the nationality and countryofbirth columns."""
    out = tmp_path_factory.mktemp("csv-clean")
    manifest, captured = generate_captured(out, schools=4, pupils_per_school=150, year=2017, fmt="csv")
    return out, manifest, captured


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp("csv-faulty")
    manifest, captured = generate_captured(out, schools=12, pupils_per_school=100, fmt="csv", faults=0.1)
    return out, manifest, captured


def school_paths(out: Path, pupilonroll: str) -> dict[str, Path]:
    return {table: out / pupilonroll.replace("pupilonroll", table) for table in la_csv.TABLES}


def expected_school(rows: list[tuple[PupilRecord, dict[str, str | None]]]) -> list[PupilRecord]:
    """What the join must give: each row as generated (with its faults), FSM periods shared by UPN,
    and no URN (the tables do not carry it; only a hint could)."""
    fsm = csv_fsm_join(rows)
    expected = []
    for pupil, overrides in rows:
        record = expected_record(pupil, overrides, "csv")
        periods = fsm[record.upn]
        eligible = any(p.covers(record.reference_date) for p in periods)
        expected.append(dataclasses.replace(record, fsm_periods=periods, fsm_eligible=eligible, urn=None))
    return expected


def read_table(path: Path) -> Table:
    with path.open(encoding="utf-8", newline="") as fh:
        header, *rows = list(csv.reader(fh))
    return header, rows


def write_table(
    path: Path, table: Table, *, bom: bool = False, newline: str = "\r\n", delimiter: str = ","
) -> None:
    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator=newline, delimiter=delimiter)
        writer.writerow(table[0])
        writer.writerows(table[1])


def rewrite(
    src: dict[str, Path], dst: Path, change: Callable[[str, Table], Table], **options: Any
) -> dict[str, Path]:
    """Copy one school's tables to ``dst`` (same names), passing each through ``change``."""
    dst.mkdir(exist_ok=True)
    out = {}
    for table, path in src.items():
        out[table] = dst / path.name
        write_table(out[table], change(table, read_table(path)), **options)
    return out


def map_column(table: Table, column: str, fn: Callable[[str], str]) -> Table:
    header, rows = table
    i = header.index(column)
    return header, [[*r[:i], fn(r[i]), *r[i + 1 :]] for r in rows]


def drop_columns(table: Table, columns: set[str]) -> Table:
    header, rows = table
    keep = [i for i, c in enumerate(header) if c not in columns]
    return [header[i] for i in keep], [[r[i] for i in keep] for r in rows]


def iso(text: str) -> str:
    """``2020-Apr-25 00:00:00`` -> ``2020-04-25`` (or the ISO date-time form for even days)."""
    if not text:
        return text
    day = dt.datetime.strptime(text, "%Y-%b-%d %H:%M:%S").date()
    return day.isoformat() if day.day % 2 else f"{day.isoformat()}T00:00:00"


BOOLS = {"True": ["1", "true", "Y", "yes", "TRUE"], "False": ["0", "false", "N", "no", "FALSE"]}


def parse_all(paths: Any, hints: ExtractHints = NO_HINTS) -> tuple[list[Any], list[ParseIssue]]:
    sink: list[ParseIssue] = []
    return list(la_csv.iter_records(paths, hints, sink)), sink


# --- round trip -----------------------------------------------------------------------------------


def test_clean_tables_join_back_exactly_as_generated(clean: Generated) -> None:
    out, manifest, captured = clean
    counts = {f["file"]: f["rows"] for f in manifest["files"]}
    for entry in census_entries(manifest):
        paths = school_paths(out, entry["file"])
        # A lone pupilonroll path brings its siblings; explicit paths in any order do the same.
        got, orphans = parse_all(paths["pupilonroll"])
        shuffled = list(paths.values())
        random.Random(1).shuffle(shuffled)
        assert parse_all(shuffled)[0] == got
        assert orphans == []
        assert all(issues == [] for _, _, issues in got)
        assert len(got) == entry["pupils"] == entry["rows"]
        assert_same(got, expected_school(captured[entry["laestab"]]))
        records = [r for _, r, _ in got]
        assert sum(1 for r in records if r.address_lines) == counts[paths["addressesonroll"].name]
        assert sum(len(r.fsm_periods) for r in records) == counts[paths["fsmperiod"].name]
        assert any(r.nationality for r in records)
        assert any(r.boarder is False for r in records)


def test_header_from_file_name_and_hints(clean: Generated) -> None:
    out, manifest, _ = clean
    entry = census_entries(manifest)[0]
    paths = school_paths(out, entry["file"])
    header = la_csv.read_header(paths.values())
    assert header.format == "la_csv"
    assert (header.laestab, header.term, header.year, header.urn) == (entry["laestab"], "AUT", 2017, None)
    assert header.reference_date.isoformat() == entry["reference_date"]
    assert header.source_files == tuple(p.name for p in paths.values())
    assert la_csv.read_header(paths.values(), ExtractHints(urn=entry["urn"])).urn == entry["urn"]
    record = next(la_csv.iter_records(paths.values(), ExtractHints(urn=entry["urn"]))).record
    assert (record.laestab, record.urn, record.census_year) == (entry["laestab"], entry["urn"], 2017)
    with pytest.raises(ParseError) as raised:
        la_csv.read_header(paths.values(), ExtractHints(estab="9999"))
    assert raised.value.code == HEADER
    assert "ESTAB" in (raised.value.item or "")


def test_tables_are_recognised_by_header_not_name(clean: Generated, tmp_path: Path) -> None:
    out, manifest, captured = clean
    entry = census_entries(manifest)[0]
    renamed = []
    for n, path in enumerate(school_paths(out, entry["file"]).values()):
        renamed.append(tmp_path / f"export-{n}.txt")
        renamed[-1].write_bytes(path.read_bytes())
    with pytest.raises(ParseError) as raised:
        la_csv.read_header(renamed)
    assert raised.value.code == HEADER  # no file name pattern and no hints: no LA, school or term
    hints = ExtractHints(la=entry["laestab"][:3], estab=entry["laestab"][3:], term="AUT", year=2017)
    got, _ = parse_all(reversed(renamed), hints)
    assert_same(got, expected_school(captured[entry["laestab"]]))


# --- real-export variants -------------------------------------------------------------------------


def test_bom_lf_iso_dates_boolean_styles_case_order_and_extra_columns(
    clean: Generated, tmp_path: Path
) -> None:
    out, manifest, captured = clean
    entry = census_entries(manifest)[1]
    rng = random.Random(7)

    def change(table: str, t: Table) -> Table:
        for column in ("entrydate", "fsmstartdate", "fsmenddate"):
            if column in t[0]:
                t = map_column(t, column, iso)
        for column in ("boarder", "parttime", "topupfunding"):
            if column in t[0]:
                t = map_column(t, column, lambda v: rng.choice(BOOLS[v]) if v else v)
        header, rows = t
        order = list(range(len(header)))
        rng.shuffle(order)  # any column order, any case, extra columns ignored
        header = [header[i].upper() if i % 2 else header[i] for i in order] + ["Notes", "laestab"]
        return header, [[*(r[i] for i in order), "free text, ignored", "3302000"] for r in rows]

    paths = rewrite(school_paths(out, entry["file"]), tmp_path / "v", change, bom=True, newline="\n")
    assert paths["pupilonroll"].read_bytes().startswith(b"\xef\xbb\xbf")
    got, orphans = parse_all(paths.values())
    # The extra columns are read past, and each is named (file, line 1, column), never silently.
    assert {(i.code, i.file, i.record, i.unit, i.item) for i in orphans} == {
        (UNKNOWN_COLUMN, p.name, 1, "line", column) for p in paths.values() for column in ("notes", "laestab")
    }
    assert all(issues == [] for _, _, issues in got)
    assert_same(got, expected_school(captured[entry["laestab"]]))


def _renamed(column: str, to: str) -> Callable[[str, Table], Table]:
    def change(table: str, t: Table) -> Table:
        header, rows = t
        return [to if c == column else c for c in header], rows

    return change


def test_a_renamed_optional_column_is_named_not_silently_emptied(clean: Generated, tmp_path: Path) -> None:
    out, manifest, _ = clean
    entry = census_entries(manifest)[0]
    paths = rewrite(school_paths(out, entry["file"]), tmp_path / "r", _renamed("senneeds", "sen_needs"))
    got, sink = parse_all(paths.values())
    (issue,) = sink
    assert (issue.code, issue.file, issue.item) == (UNKNOWN_COLUMN, paths["pupilonroll"].name, "sen_needs")
    assert "perhaps senneeds renamed" in issue.problem
    assert "sen_needs" in issue.message
    assert paths["pupilonroll"].name in issue.message
    assert all(r.sen_needs == () for _, r, _ in got)  # the item is empty: hence the warning
    strict = la_csv.CsvRules(unknown_columns="quarantine")
    with pytest.raises(ParseError) as raised:
        la_csv.read_header(paths.values(), rules=strict)
    assert raised.value.code == UNKNOWN_COLUMN
    assert (raised.value.file, raised.value.line, raised.value.item) == (
        paths["pupilonroll"].name,
        1,
        "sen_needs",
    )
    # Known columns only: nothing to report, strict or not.
    plain = school_paths(out, entry["file"])
    assert la_csv.read_header(plain.values(), rules=strict).laestab == entry["laestab"]


def test_side_tables_over_the_cap_are_refused_naming_file_and_line(clean: Generated) -> None:
    out, manifest, _ = clean
    entry = census_entries(manifest)[0]
    paths = school_paths(out, entry["file"])
    rows = len(read_table(paths["addressesonroll"])[1])
    capped = la_csv.CsvRules(side_table_max_rows=rows - 1)
    with pytest.raises(ParseError) as raised:
        list(la_csv.iter_rows(paths.values(), rules=capped))
    assert raised.value.code == TOO_LARGE
    assert raised.value.file == paths["addressesonroll"].name
    assert (raised.value.line, raised.value.record) == (rows + 1, rows)
    assert "CENSUSTRACE_CSV_SIDE_TABLE_MAX_ROWS" in raised.value.message
    assert len(list(la_csv.iter_rows(paths.values(), rules=la_csv.CsvRules(side_table_max_rows=rows)))) > 0


def test_optional_columns_may_be_absent_and_tabs_are_accepted(clean: Generated, tmp_path: Path) -> None:
    out, manifest, captured = clean
    entry = census_entries(manifest)[2]
    optional = {"formerupn", "middlenames", "boarder", "yssa", "senneeds", "nationality", "saon", "locality"}
    paths = rewrite(
        school_paths(out, entry["file"]),
        tmp_path / "o",
        lambda _, t: drop_columns(t, optional),
        delimiter="\t",
    )
    got, _ = parse_all(paths.values())
    expected = [
        dataclasses.replace(
            r,
            former_upn=None,
            middle_names=None,
            boarder=None,
            yssa=None,
            sen_needs=(),
            nationality=(),
            address_lines=("", r.address_lines[1], r.address_lines[2], "", *r.address_lines[4:]),
        )
        for r in expected_school(captured[entry["laestab"]])
    ]
    assert_same(got, expected)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("pupilonroll", "dob"),
        ("pupilonroll", "upn"),
        ("fsmperiod", "fsmstartdate"),
        ("addressesonroll", "postcode"),
    ],
)
def test_missing_mandatory_column_is_a_layout_error_naming_it(
    clean: Generated, tmp_path: Path, table: str, column: str
) -> None:
    out, manifest, _ = clean
    entry = census_entries(manifest)[0]
    paths = rewrite(
        school_paths(out, entry["file"]),
        tmp_path / "m",
        lambda t, tab: drop_columns(tab, {column} if t == table else set()),
    )
    with pytest.raises(ParseError) as raised:
        la_csv.read_header(paths.values())
    assert raised.value.code == LAYOUT
    assert column in str(raised.value)
    assert raised.value.file == paths[table].name


def test_missing_duplicate_and_unknown_tables(clean: Generated, tmp_path: Path) -> None:
    out, manifest, _ = clean
    paths = school_paths(out, census_entries(manifest)[0]["file"])
    with pytest.raises(ParseError) as raised:
        la_csv.read_header([paths["pupilonroll"], paths["fsmperiod"]])
    assert raised.value.code == LAYOUT
    assert "addressesonroll" in str(raised.value)
    with pytest.raises(ParseError) as raised:
        la_csv.read_header([*paths.values(), paths["fsmperiod"]])
    assert raised.value.code == LAYOUT
    assert "second fsmperiod" in str(raised.value)
    other = tmp_path / "consents.csv"
    other.write_text("upn,purpose,decision\r\n", encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        la_csv.read_header([*paths.values(), other])
    assert raised.value.code == LAYOUT
    assert raised.value.file == "consents.csv"


# --- row-level problems ---------------------------------------------------------------------------


def test_bad_values_are_row_issues_naming_file_row_and_field_not_value(
    clean: Generated, tmp_path: Path
) -> None:
    out, manifest, captured = clean
    entry = census_entries(manifest)[0]
    src = school_paths(out, entry["file"])
    _fsm_header, fsm_rows = read_table(src["fsmperiod"])
    target_upn = fsm_rows[1][0]

    def change(table: str, t: Table) -> Table:
        header, rows = t
        if table == "pupilonroll":
            rows[2][header.index("dob")] = "2016-13-45"
            rows[4][header.index("parttime")] = "sometimes"
        if table == "fsmperiod":
            rows[1][header.index("fsmenddate")] = "31/02/2020"
        return header, rows

    paths = rewrite(src, tmp_path / "b", change)
    got, _ = parse_all(paths.values())
    expected = expected_school(captured[entry["laestab"]])
    issues = [(n, i) for n, _, found in got for i in found]
    by_kind = {(i.file, i.record, i.field): (n, i) for n, i in issues}
    assert set(by_kind) == {
        (paths["pupilonroll"].name, 3, "dob"),
        (paths["pupilonroll"].name, 5, "part_time"),
        (paths["fsmperiod"].name, 2, "fsm_periods"),
    }
    n, dob_issue = by_kind[(paths["pupilonroll"].name, 3, "dob")]
    assert n == 3
    assert dob_issue.code == VALUE
    assert got[2].record.dob is None
    message = dob_issue.message
    assert paths["pupilonroll"].name in message
    assert "row 3" in message
    assert "dob" in message
    assert "2016-13-45" not in message
    assert "2016-13-45" not in repr(dob_issue.as_dict())
    assert got[4].record.part_time is None
    n, fsm_issue = by_kind[(paths["fsmperiod"].name, 2, "fsm_periods")]
    assert got[n - 1].record.upn == target_upn
    assert "31/02/2020" not in fsm_issue.message
    assert fsm_issue.item == "fsmenddate"
    # The rest of those rows is intact.
    assert got[2].record.surname == expected[2].surname
    assert got[2].record.upn == expected[2].upn


def test_orphans_and_short_rows(clean: Generated, tmp_path: Path) -> None:
    out, manifest, _ = clean
    src = school_paths(out, census_entries(manifest)[0]["file"])

    def change(table: str, t: Table) -> Table:
        header, rows = t
        if table == "addressesonroll":
            rows.append(["Z999999999999", *[""] * (len(header) - 1)])
            rows.append(["", *[""] * (len(header) - 1)])
        if table == "fsmperiod":
            rows.insert(0, ["Y999999999999", "2020-Apr-25 00:00:00", "", "ENG"])
        if table == "pupilonroll":
            rows[6] = rows[6][:5]  # a short row mid-file: an issue, not truncation
        return header, rows

    paths = rewrite(src, tmp_path / "x", change)
    got, sink = parse_all(paths.values())
    assert [(i.code, i.file, i.record) for i in sink] == [
        (ORPHAN, paths["addressesonroll"].name, 151),
        (ORPHAN, paths["addressesonroll"].name, 152),
        (ORPHAN, paths["fsmperiod"].name, 1),
    ]
    assert [(i.code, i.record) for i in got[6].issues] == [(SHAPE, 7)]
    assert got[6].record.dob is None
    assert got[6].record.upn


def test_faulty_files_row_faults_and_whole_file_faults(faulty: Generated) -> None:
    out, manifest, captured = faulty
    codes = {"truncated": TRUNCATED, "wrong_encoding": ENCODING}
    whole = [f for f in manifest["faults"] if f["location"] == {"file": True}]
    assert {f["fault"] for f in whole} == set(codes)
    for fault in whole:
        with pytest.raises(ParseError) as raised:
            parse_all(out / fault["file"])
        assert raised.value.code == codes[fault["fault"]]
        assert raised.value.file == fault["file"]
        assert raised.value.line is not None
        if fault["fault"] == "wrong_encoding":  # the accented forename is on the first data row
            data = (out / fault["file"]).read_bytes()
            assert raised.value.line == 2
            assert data[raised.value.offset or 0] >= 0x80
            assert "Ren" not in str(raised.value)
    row_faults = {(f["file"], f["location"]["row"]) for f in manifest["faults"] if "row" in f["location"]}
    seen = 0
    for entry in census_entries(manifest):
        if entry["whole_file_fault"]:
            continue
        got, orphans = parse_all(out / entry["file"])
        rows = captured[entry["laestab"]]
        assert orphans == []
        assert_same(got, expected_school(rows))
        for (number, _, issues), (_, overrides) in zip(got, rows, strict=True):
            address_file = entry["file"].replace("pupilonroll", "addressesonroll")
            faulted = (entry["file"], number) in row_faults or (address_file, number) in row_faults
            assert faulted == bool(overrides)
            seen += faulted
            assert all(i.code == VALUE and i.field == "dob" for i in issues)
    assert seen > 20


def test_cut_and_malformed_csv(clean: Generated, tmp_path: Path) -> None:
    out, manifest, _ = clean
    src = school_paths(out, census_entries(manifest)[0]["file"])
    paths = rewrite(src, tmp_path / "t", lambda _, t: t)
    data = paths["fsmperiod"].read_bytes()
    paths["fsmperiod"].write_bytes(data[: data.rindex(b",", 0, len(data) - 30)])  # cut inside the last row
    with pytest.raises(ParseError) as raised:
        parse_all(paths.values())
    assert raised.value.code == TRUNCATED
    assert raised.value.file == paths["fsmperiod"].name
    lines = data.split(b"\r\n")
    lines[2] = b'"' + lines[2]  # an unbalanced quote on line 3
    paths["fsmperiod"].write_bytes(b"\r\n".join(lines))
    with pytest.raises(ParseError) as raised:
        parse_all(paths.values())
    assert raised.value.code == MALFORMED
    assert raised.value.line == 3
    paths["fsmperiod"].write_bytes(b"")
    with pytest.raises(ParseError) as raised:
        parse_all(paths.values())
    assert raised.value.code == TRUNCATED
    paths["fsmperiod"].write_bytes(data + "é".encode()[:1])  # cut inside a UTF-8 character
    with pytest.raises(ParseError) as raised:
        parse_all(paths.values())
    assert raised.value.code == TRUNCATED
