"""Format detection by content and ``parse_extract`` dispatch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from censustrace.census.formats import (
    ParsedExtract,
    census_xml,
    ctf_xml,
    detect_format,
    la_csv,
    parse_extract,
)
from censustrace.census.formats.errors import LAYOUT, TRUNCATED, ParseError
from censustrace.census.formats.header import ExtractHints
from censustrace.census.generator import GeneratorOptions, generate
from censustrace.errors import UsageError

Sets = dict[str, tuple[Path, dict[str, Any]]]


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory) -> Sets:
    out: Sets = {}
    for fmt in ("xml", "ctf", "csv"):
        folder = tmp_path_factory.mktemp(fmt)
        out[fmt] = folder, generate(GeneratorOptions(out=folder, schools=2, pupils_per_school=40, fmt=fmt))
    return out


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_each_format_is_detected_from_content_not_name(sets: Sets, tmp_path: Path) -> None:
    expected = {"xml": "school_census_xml", "ctf": "ctf_xml", "csv": "la_csv"}
    for fmt, (folder, manifest) in sets.items():
        for entry in manifest["files"]:
            assert detect_format(folder / entry["file"]) == expected[fmt]
            # A misleading name changes nothing.
            assert detect_format(_copy(folder / entry["file"], tmp_path / "extract.csv")) == expected[fmt]


def test_bom_leading_space_comment_and_utf16(sets: Sets, tmp_path: Path) -> None:
    folder, manifest = sets["xml"]
    source = folder / manifest["files"][0]["file"]
    text = source.read_text(encoding="utf-8")
    body = text.split("\n", 1)[1]
    variants = {
        "bom.xml": b"\xef\xbb\xbf" + source.read_bytes(),
        "comment.xml": ("\n  <!-- exported by MIS <Message> -->\n" + body).encode(),
        "utf16.xml": ('<?xml version="1.0" encoding="UTF-16"?>\n' + body).encode("utf-16"),
    }
    reference = list(census_xml.iter_records(source))
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        assert detect_format(path) == "school_census_xml", name
        assert [r.record for r in census_xml.iter_records(path)] == [r.record for r in reference], name
    csv_folder, csv_manifest = sets["csv"]
    table = csv_folder / csv_manifest["files"][1]["file"]  # addressesonroll
    assert detect_format(_copy(table, tmp_path / "a.csv")) == "la_csv"
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    assert detect_format(tmp_path / "b.csv") == "la_csv"


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (b"", TRUNCATED),
        (b'<?xml version="1.0"?>\n<html><body/></html>', LAYOUT),
        (b"upn,purpose,decision,recorded_on,source\r\n", LAYOUT),
        (b"%PDF-1.7\n", LAYOUT),
    ],
)
def test_unknown_content_is_refused(tmp_path: Path, content: bytes, code: str) -> None:
    path = tmp_path / "SC_330_2000_AUT_2026.xml"
    path.write_bytes(content)
    with pytest.raises(ParseError) as raised:
        detect_format(path)
    assert raised.value.code == code


def test_parse_extract_dispatches_and_streams(sets: Sets) -> None:
    for fmt, reader in (("xml", census_xml), ("ctf", ctf_xml)):
        folder, manifest = sets[fmt]
        path = folder / manifest["files"][0]["file"]
        extract = parse_extract(str(path))
        assert isinstance(extract, ParsedExtract)
        assert extract.paths == (path,)
        assert extract.header == reader.read_header(path)
        assert list(extract) == list(reader.iter_records(path))
        assert len(list(extract.records())) == manifest["files"][0]["pupils"]
    folder, manifest = sets["csv"]
    paths = [folder / f["file"] for f in manifest["files"][:3]]
    hints = ExtractHints(urn=manifest["files"][0]["urn"])
    extract = parse_extract(paths, hints)
    assert extract.format == "la_csv"
    assert extract.header.urn == hints.urn
    sink: list[Any] = []
    assert list(extract.records(sink)) == list(la_csv.iter_records(paths, hints))
    assert sink == []
    alone = parse_extract(paths[0])  # the pupilonroll table finds its siblings
    assert alone.header.source_files == tuple(p.name for p in paths)
    assert len(list(alone)) == manifest["files"][0]["pupils"]


def test_parse_extract_refuses_mixed_or_several_xml(sets: Sets) -> None:
    xml_folder, xml_manifest = sets["xml"]
    xmls = [xml_folder / f["file"] for f in xml_manifest["files"]]
    with pytest.raises(UsageError):
        parse_extract(xmls)
    csv_folder, csv_manifest = sets["csv"]
    with pytest.raises(UsageError):
        parse_extract([xmls[0], csv_folder / csv_manifest["files"][0]["file"]])
    with pytest.raises(UsageError):
        parse_extract([])


def test_header_problems_surface_at_parse_extract(tmp_path: Path) -> None:
    path = tmp_path / "upload.xml"
    path.write_text('<?xml version="1.0"?>\n<Message><Pupils/></Message>', encoding="utf-8")
    with pytest.raises(ParseError) as raised:
        parse_extract(path)
    assert raised.value.code == "CT-PARSE-HEADER"
    missing = tmp_path / "nowhere.xml"
    with pytest.raises(ParseError) as raised:
        parse_extract(missing)
    assert raised.value.code == "CT-PARSE-IO"
    assert raised.value.file == "nowhere.xml"
