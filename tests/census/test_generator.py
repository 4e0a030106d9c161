"""The generator against its promises: valid options only, same seed same bytes, clean data clean and
realistic, every injected fault in the manifest and every manifest fault really in the files."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from stdnum.gb import upn as stdnum_upn

from censustrace.census import codes
from censustrace.census.generator import (
    MANIFEST_NAME,
    UNKNOWN_CODES,
    WHOLE_FILE_FAULTS,
    GeneratorOptions,
    generate,
    names,
)
from censustrace.census.generator.faults import BAD_POSTCODES, plan_whole_file_faults
from censustrace.census.identifiers import is_temporary_upn, is_valid_uln, is_valid_upn
from censustrace.errors import UsageError
from tests.census import checker

Generated = tuple[Path, dict[str, Any]]


def run(out: Path, **kwargs: Any) -> dict[str, Any]:
    return generate(GeneratorOptions(out=out, **kwargs))


def census_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """The entries a reader starts from: XML/CTF files and CSV pupilonroll tables."""
    return [f for f in manifest["files"] if f["table"] in (None, "pupilonroll")]


def rows_of(out: Path, manifest: dict[str, Any]) -> dict[str, list[checker.Row]]:
    return {
        f["file"]: checker.read_census_file(out / f["file"])
        for f in census_files(manifest)
        if f["whole_file_fault"] is None
    }


# --- options ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"schools": 0}, "--schools"),
        ({"schools": 9001}, "--schools"),
        ({"pupils_per_school": 0}, "--pupils-per-school"),
        ({"pupils_per_school": 5001}, "--pupils-per-school"),
        ({"term": "WINTER"}, "--term"),
        ({"term": "aut"}, "--term"),
        ({"year": 1999}, "--year"),
        ({"year": 2101}, "--year"),
        ({"la": "33"}, "--la"),
        ({"la": "33A"}, "--la"),
        ({"la": "001"}, "--la"),
        ({"seed": -1}, "--seed"),
        ({"fmt": "pdf"}, "--format"),
        ({"faults": -0.1}, "--faults"),
        ({"faults": 1.5}, "--faults"),
        ({"faults": float("nan")}, "--faults"),
    ],
)
def test_bad_options_raise_usage_error_naming_the_option(
    kwargs: dict[str, Any], option: str, tmp_path: Path
) -> None:
    with pytest.raises(UsageError) as err:
        GeneratorOptions(out=tmp_path / "out", **kwargs)
    assert option in err.value.message
    assert err.value.exit_code == 2


def test_out_that_is_a_file_is_refused(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(UsageError, match="--out"):
        GeneratorOptions(out=blocker)
    with pytest.raises(UsageError, match="--out"):
        run(blocker / "below", schools=1, pupils_per_school=1)


# --- determinism -------------------------------------------------------------------------------------


def _folder_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("fmt", ["xml", "ctf", "csv"])
def test_same_options_and_seed_give_identical_bytes(fmt: str, tmp_path: Path) -> None:
    options = {"schools": 8, "pupils_per_school": 40, "faults": 0.1, "consents": True, "fmt": fmt, "seed": 11}
    first = run(tmp_path / "a", **options)
    second = run(tmp_path / "b", **options)
    assert first == second
    assert _folder_bytes(tmp_path / "a") == _folder_bytes(tmp_path / "b")
    run(tmp_path / "c", **{**options, "seed": 12})
    assert _folder_bytes(tmp_path / "c") != _folder_bytes(tmp_path / "a")


def test_pupils_do_not_depend_on_the_fault_rate(tmp_path: Path) -> None:
    run(tmp_path / "clean", schools=4, pupils_per_school=60, seed=5)
    faulty = run(tmp_path / "faulty", schools=4, pupils_per_school=60, seed=5, faults=0.2)
    faulted = {
        (f["file"], f["location"]["pupil_index"]) for f in faulty["faults"] if "pupil_index" in f["location"]
    }
    assert faulted
    for entry in faulty["files"]:
        if entry["whole_file_fault"]:
            continue
        a = checker.read_census_file(tmp_path / "clean" / entry["file"])
        b = checker.read_census_file(tmp_path / "faulty" / entry["file"])
        for ra, rb in zip(a, b, strict=True):
            if (entry["file"], ra.index) not in faulted:
                assert ra.values == rb.values


# --- clean output ------------------------------------------------------------------------------------

CLEAN_CASES = [("xml", "AUT", 2026), ("ctf", "SPR", 2017), ("csv", "SUM", 2018), ("xml", "AUT", 2012)]


@pytest.fixture(scope="module", params=CLEAN_CASES, ids=lambda c: f"{c[0]}-{c[1]}{c[2]}")
def clean(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    fmt, term, year = request.param
    out = tmp_path_factory.mktemp(f"clean-{fmt}-{term}{year}")
    return out, run(
        out, schools=12, pupils_per_school=150, fmt=fmt, term=term, year=year, seed=3, consents=True
    )


def test_clean_output_has_no_faults_at_all(clean: Generated) -> None:
    out, manifest = clean
    assert manifest["faults"] == []
    assert all(f["whole_file_fault"] is None for f in manifest["files"])
    ref = codes.reference_date(manifest["generator"]["term"], manifest["generator"]["year"])
    for name, rows in rows_of(out, manifest).items():
        assert len(rows) == 150, name
        assert checker.defects(rows, ref) == [], name


def test_every_header_agrees_with_its_file_name(clean: Generated) -> None:
    from censustrace.census.formats import parse_extract
    from censustrace.census.formats.header import file_name_parts

    out, manifest = clean
    for entry in manifest["files"]:
        path = out / entry["file"]
        named = file_name_parts(path)
        assert named is not None
        if named.prefix in ("addressesonroll", "fsmperiod"):
            continue  # read with their pupilonroll (same name suffix)
        header = parse_extract(path).header  # a disagreement would be CT-PARSE-NAME-MISMATCH
        assert (header.la, header.estab, header.term, header.year) == named[1:]
        assert header.laestab == entry["laestab"]


def test_clean_output_is_realistic(clean: Generated) -> None:
    out, manifest = clean
    g = manifest["generator"]
    ref = codes.reference_date(g["term"], g["year"])
    for rows in rows_of(out, manifest).values():
        assert checker.realism_problems(rows, g["term"], g["year"], ref) == []


def test_every_identifier_the_generator_writes_passes_the_checks(clean: Generated) -> None:
    out, manifest = clean
    rows = [r for rs in rows_of(out, manifest).values() for r in rs]
    upns = [r.values["upn"] for r in rows]
    assert all(is_valid_upn(u) and checker.upn_ok(u) for u in upns)
    ulns = [r.values["uln"] for r in rows if r.values["uln"]]
    assert ulns
    assert all(is_valid_uln(u) and checker.uln_ok(u) for u in ulns)
    formers = [r.values["former_upn"] for r in rows if r.values["former_upn"]]
    assert formers
    assert all(is_temporary_upn(u) for u in formers)
    temporary = [u for u in upns if is_temporary_upn(u)]
    assert 0 < len(temporary) < 0.03 * len(upns)
    # python-stdnum agrees on every permanent UPN (all generated LAs are real LA numbers).
    permanent = [u for u in upns if not is_temporary_upn(u)]
    assert all(stdnum_upn.is_valid(u) for u in permanent)
    # Some pupils' UPNs were allocated at this school, some at another school of the LA, some elsewhere.
    allocators: Counter[str] = Counter()
    for entry in census_files(manifest):
        for row in checker.read_census_file(out / entry["file"]):
            upn = row.values["upn"]
            if upn[1:4] != entry["laestab"][:3]:
                allocators["other LA"] += 1
            else:
                allocators["own" if upn[1:8] == entry["laestab"] else "LA"] += 1
    assert allocators["own"] > 0
    assert allocators["LA"] > 0
    assert allocators["other LA"] > 0


def test_upns_are_unique_except_dual_registrations(clean: Generated) -> None:
    out, manifest = clean
    by_upn: dict[str, list[tuple[str, checker.Row]]] = {}
    for name, rows in rows_of(out, manifest).items():
        for row in rows:
            by_upn.setdefault(row.values["upn"], []).append((name, row))
    duals = {u: seen for u, seen in by_upn.items() if len(seen) > 1}
    assert duals, "expected some dual registrations"
    for seen in duals.values():
        assert len(seen) == 2
        (file_a, a), (file_b, b) = seen
        assert file_a != file_b
        assert sorted([a.values["enrol_status"], b.values["enrol_status"]]) == ["M", "S"]
        assert (a.values["surname"], a.values["dob"]) == (b.values["surname"], b.values["dob"])
    statuses = Counter(r.values["enrol_status"] for rows in rows_of(out, manifest).values() for r in rows)
    assert statuses["M"] == statuses["S"] > 0


def test_refused_and_not_obtained_codes_appear(clean: Generated) -> None:
    out, manifest = clean
    rows = [r for rs in rows_of(out, manifest).values() for r in rs]
    ethnicities = Counter(r.values["ethnicity"] for r in rows)
    languages = Counter(r.values["language"] for r in rows)
    assert ethnicities["REFU"] + ethnicities["NOBT"] > 0
    assert languages["REF"] + languages["NOT"] > 0
    assert ethnicities["WBRI"] > len(rows) / 3
    if manifest["generator"]["term"] == "SPR" and manifest["generator"]["year"] == 2017:
        nationalities = Counter(code for r in rows for code in r.values["nationality"])
        assert nationalities["NYO"] > 0
        assert nationalities["REF"] > 0


def test_manifest_lists_every_file_with_its_hash(clean: Generated) -> None:
    out, manifest = clean
    assert json.loads((out / MANIFEST_NAME).read_text(encoding="utf-8")) == manifest
    listed = {f["file"] for f in manifest["files"]} | {f["file"] for f in manifest["consents"]}
    assert listed | {MANIFEST_NAME} == {p.name for p in out.iterdir()}
    for entry in manifest["files"] + manifest["consents"]:
        assert hashlib.sha256((out / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    g = manifest["generator"]
    assert sum(f["pupils"] for f in manifest["files"]) == g["schools"] * g["pupils_per_school"]
    assert "out" not in g
    assert g["version"]


def test_consent_files(clean: Generated) -> None:
    out, manifest = clean
    upns_by_laestab = {
        f["laestab"]: {r.values["upn"] for r in checker.read_census_file(out / f["file"])}
        for f in census_files(manifest)
    }
    ref = codes.reference_date(manifest["generator"]["term"], manifest["generator"]["year"]).isoformat()
    total = 0
    for entry in manifest["consents"]:
        with (out / entry["file"]).open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == ["upn", "purpose", "decision", "recorded_on", "source"]
            rows = list(reader)
        assert len(rows) == entry["rows"]
        for row in rows:
            assert row["upn"] in upns_by_laestab[entry["laestab"]]
            assert row["purpose"] in names.OBJECTION_SHARE
            assert row["decision"] in ("object", "consent")
            assert row["recorded_on"] <= ref
        total += len(rows)
    assert 0 < total < 0.15 * 12 * 150


def test_layouts_follow_the_brief(clean: Generated) -> None:
    out, manifest = clean
    entry = census_files(manifest)[0]
    path = out / entry["file"]
    if entry["format"] == "xml":
        root = etree.parse(str(path)).getroot()
        assert root.findtext("Header/CollectionDetails/Collection") == "SC"
        assert root.findtext("Header/CollectionDetails/ReferenceDate") == entry["reference_date"]
        assert root.findtext("Header/Source/LEA") + root.findtext("Header/Source/Estab") == entry["laestab"]
        assert root.find("Pupils/PupilOnRoll/PupilIdentifiers/UPN") is not None
        assert (
            entry["file"]
            == f"SC_{entry['laestab'][:3]}_{entry['laestab'][3:]}_{entry['term']}_{entry['year']}.xml"
        )
    elif entry["format"] == "ctf":
        root = etree.parse(str(path)).getroot()
        assert root.tag == "CTfile"
        assert root.findtext("Header/SourceSchool/URN") == entry["urn"]
        assert root.find("CTFpupilData/Pupil/BasicDetails/NCyearActual") is not None
    else:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert all(re.fullmatch(r"[0-9]{4}-[A-Z][a-z]{2}-[0-9]{2} 00:00:00", r["entrydate"]) for r in rows)
        assert {r["boarder"] for r in rows} <= {"True", "False"}
        assert all(r["dob"] == "" or re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", r["dob"]) for r in rows)


# --- faults -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module", params=["xml", "ctf", "csv"])
def faulty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Generated:
    out = tmp_path_factory.mktemp(f"faulty-{request.param}")
    return out, run(out, schools=12, pupils_per_school=150, fmt=request.param, faults=0.08, seed=7)


def test_every_injected_fault_is_in_the_manifest_and_vice_versa(faulty: Generated) -> None:
    out, manifest = faulty
    ref = codes.reference_date(manifest["generator"]["term"], manifest["generator"]["year"])
    found = {d for rows in rows_of(out, manifest).values() for d in checker.defects(rows, ref)}
    listed = [
        (f["file"], json.dumps(f["location"], sort_keys=True), f["fault"])
        for f in manifest["faults"]
        if "file" not in f["location"]
    ]
    assert len(listed) == len(set(listed))
    assert found == set(listed)
    kinds = Counter(f for _, _, f in listed)
    assert set(kinds) == {"upn_check_letter", "duplicate_upn", "impossible_dob", "unknown_code",
                          "missing_mandatory", "bad_postcode"}  # fmt: skip
    # Roughly the asked-for rate of the rows that could be faulted.
    rows = sum(f["pupils"] for f in census_files(manifest) if f["whole_file_fault"] is None)
    assert 0.04 * rows < len(listed) < 0.12 * rows


def test_fault_locations_name_no_pupil(faulty: Generated) -> None:
    _, manifest = faulty
    for fault in manifest["faults"]:
        location = fault["location"]
        assert set(location) <= {"pupil_index", "table", "row", "field", "file"}
        assert all(isinstance(v, (int, bool)) or k in ("table", "field") for k, v in location.items())


def test_whole_file_faults_really_break_the_files(faulty: Generated) -> None:
    out, manifest = faulty
    broken = [f for f in manifest["files"] if f["whole_file_fault"]]
    expected_kinds = (
        {"truncated", "wrong_encoding"}
        if manifest["generator"]["format"] == "csv"
        else set(WHOLE_FILE_FAULTS)
    )
    assert {f["whole_file_fault"] for f in broken} == expected_kinds
    listed = {(f["file"], f["fault"]) for f in manifest["faults"] if f["location"] == {"file": True}}
    assert listed == {(f["file"], f["whole_file_fault"]) for f in broken}
    for entry in broken:
        path, kind = out / entry["file"], entry["whole_file_fault"]
        if kind == "wrong_encoding":
            with pytest.raises(UnicodeDecodeError):
                checker.read_text_strictly(path)
            assert path.read_bytes().decode("cp1252")  # the right encoding reads it
        elif entry["format"] == "csv":  # truncated: no final newline, a short last row
            text = path.read_text(encoding="utf-8")
            assert not text.endswith("\n")
            rows = list(csv.reader(text.splitlines()))
            assert len(rows[-1]) < len(rows[0])
        else:
            with pytest.raises(etree.XMLSyntaxError):
                etree.parse(str(path))


def test_twelve_schools_at_two_percent_get_one_of_each_whole_file_fault(tmp_path: Path) -> None:
    manifest = run(tmp_path, schools=12, pupils_per_school=5, faults=0.02)
    assert sorted(f["whole_file_fault"] for f in manifest["files"] if f["whole_file_fault"]) == sorted(
        WHOLE_FILE_FAULTS
    )


def test_whole_file_fault_rule() -> None:
    assert plan_whole_file_faults(12, 0.0, "xml", 1) == {}
    assert plan_whole_file_faults(3, 0.5, "xml", 1) == {}
    assert len(plan_whole_file_faults(4, 0.01, "xml", 1)) == 1
    assert len(plan_whole_file_faults(1000, 0.01, "xml", 1)) == 10
    assert len(plan_whole_file_faults(100, 1.0, "csv", 1)) == 25
    assert set(plan_whole_file_faults(40, 0.5, "csv", 1).values()) == {"truncated", "wrong_encoding"}


def test_fault_values_are_really_wrong() -> None:
    sets = {"ethnicity": codes.ETHNICITY, "language": codes.LANGUAGE, "sex": codes.SEX,
            "enrol_status": codes.ENROL_STATUS, "sen_provision": codes.SEN_PROVISION,
            "service_child": codes.SERVICE_CHILD}  # fmt: skip
    assert set(UNKNOWN_CODES) == set(sets)
    for field, values in UNKNOWN_CODES.items():
        assert not set(values) & sets[field], field
    assert not any(checker.POSTCODE.fullmatch(p) for p in BAD_POSTCODES)


def test_synthetic_names_survive_windows_1252() -> None:
    for weighted in (names.SURNAMES, names.FEMALE_FORENAMES, names.MALE_FORENAMES, names.STREETS):
        for value in weighted.values:
            value.encode("cp1252")
    assert not names.NON_ASCII_FORENAME.isascii()


# --- scale ---------------------------------------------------------------------------------------------


def test_memory_stays_bounded_for_fifty_thousand_pupils(tmp_path: Path) -> None:
    tracemalloc.start()
    try:
        manifest = run(tmp_path, schools=50, pupils_per_school=1000, faults=0.01)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(f["pupils"] for f in manifest["files"]) == 50_000
    # About 3 MB in practice; holding every pupil would need well over 100 MB.
    assert peak < 20 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
