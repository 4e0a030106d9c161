"""The extract registry: ids, duplicates, resumption, LA CSV grouping, header errors, safe quarantine."""

from __future__ import annotations

import datetime as dt
import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from censustrace.config import Settings
from censustrace.intake.archive import ArchivedFile
from censustrace.intake.ingest import ingest_file
from censustrace.intake.publish import publish
from censustrace.intake.quarantine import REASON_FILE, IngestError, quarantine, reason, safe_file_name
from censustrace.intake.receive import receive
from censustrace.intake.registry import Registration, extract_id_for, find_extract, list_extracts, register
from censustrace.intake.stage import stage
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import extracts, pupil
from tests.plugins.helpers.warehouse import generated, land, rows_of


def _register(settings: Settings, path: Path) -> Registration:
    receipt = receive(path, settings)
    return register(receipt.archived, receipt.received_at, settings)


def _registry_rows(settings: Settings) -> int:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(extracts)).scalar_one())


def test_extract_ids_are_stable() -> None:
    sha = "ab" * 32
    assert extract_id_for(sha) == "ext_abababababababababab"
    assert extract_id_for(sha, 3) == "ext_abababababababababab-3"


def _xml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=12, fmt="xml", seed=5)
    return folder / str(manifest["files"][0]["file"])


def _csv(tmp_path_factory: pytest.TempPathFactory, seed: int = 5) -> dict[str, Path]:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=12, fmt="csv", seed=seed)
    return {f["table"]: folder / f["file"] for f in manifest["files"]}


def test_register_reads_the_header_and_resumes_unfinished_rows(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = _xml(tmp_path_factory)
    first = _register(wh, land(wh, source))
    row = first.extract
    assert (row.status, row.format, row.laestab, row.urn is not None, row.term, row.year) == (
        "received",
        "school_census_xml",
        "3304000",
        True,
        "AUT",
        2026,
    )
    assert row.extract_id == extract_id_for(row.sha256)
    assert first.ready == row.extract_id
    assert not first.resumed
    assert first.lineage.outputs[0].name.endswith(".extracts")
    again = _register(wh, land(wh, source))  # e.g. re-delivered after a crash before staging
    assert again.resumed
    assert again.extract_id == row.extract_id
    assert again.ready == row.extract_id
    assert _registry_rows(wh) == 1


def test_a_header_error_quarantines_at_once(wh: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    path = wh.landing_dir / "SC_330_4000_AUT_2026.xml"
    path.write_bytes(_xml(tmp_path_factory).read_bytes().replace(b"<Term>AUT</Term>", b"<Term>XYZ</Term>"))
    registration = _register(wh, path)
    assert registration.status == "quarantined"
    assert registration.ready is None
    assert [e["code"] for e in registration.errors] == ["CT-PARSE-HEADER"]
    assert (wh.quarantine_dir / registration.extract.sha256 / path.name).is_file()


def test_a_csv_table_named_without_school_and_census_is_quarantined(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    table = _csv(tmp_path_factory)["pupilonroll"]
    registration = _register(wh, land(wh, table, "export.csv"))
    assert registration.status == "quarantined"
    assert registration.errors[0]["code"] == "CT-PARSE-HEADER"
    assert "file name" in registration.errors[0]["location"]


@pytest.mark.parametrize(
    "order", list(itertools.permutations(["pupilonroll", "addressesonroll", "fsmperiod"]))
)
def test_csv_tables_group_in_any_order(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, order: tuple[str, ...]
) -> None:
    tables = _csv(tmp_path_factory)
    registrations = [_register(wh, land(wh, tables[t])) for t in order]
    assert [r.ready is not None for r in registrations] == [False, False, True]
    head = next(r for r in registrations if r.extract.csv_table == "pupilonroll").extract_id
    assert registrations[-1].ready == head
    stage(head, wh)
    result = publish(head, {}, wh)
    assert result.rows.loaded == 12
    rows = list_extracts(wh)
    assert {(r.csv_table, r.status, r.part_of) for r in rows} == {
        ("pupilonroll", "loaded", None),
        ("addressesonroll", "loaded", head),
        ("fsmperiod", "loaded", head),
    }


def test_tables_of_one_group_registered_at_the_same_moment_find_each_other(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tables = _csv(tmp_path_factory)
    receipts = [receive(land(wh, path), wh) for path in tables.values()]
    with ThreadPoolExecutor(max_workers=3) as pool:
        registrations = list(pool.map(lambda r: register(r.archived, r.received_at, wh), receipts))
    assert sum(r.ready is not None for r in registrations) == 1
    head = next(r.ready for r in registrations if r.ready)
    assert {r.part_of for r in list_extracts(wh) if r.csv_table != "pupilonroll"} == {head}


def test_a_part_cannot_be_staged_and_an_incomplete_group_waits(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tables = _csv(tmp_path_factory)
    head = _register(wh, land(wh, tables["pupilonroll"]))
    part = _register(wh, land(wh, tables["fsmperiod"]))
    assert part.extract.part_of == head.extract_id
    with pytest.raises(IngestError) as incomplete:
        stage(head.extract_id, wh)
    assert incomplete.value.code == "CT-INGEST-INCOMPLETE"
    with pytest.raises(IngestError) as of_part:
        stage(part.extract_id, wh)
    assert of_part.value.code == "CT-INGEST-STATE"


def _changed(path: Path, target: Path) -> Path:
    """The same table without its last data row (new bytes, same school and census)."""
    lines = path.read_bytes().split(b"\r\n")
    target.write_bytes(b"\r\n".join([*lines[:-2], b""]))
    return target


def _ingest(settings: Settings, *paths: Path) -> list[str]:
    return [ingest_file(land(settings, p), settings).status for p in paths]


def test_a_resubmission_with_an_unchanged_table_reuses_it(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    t = _csv(tmp_path_factory)
    assert _ingest(wh, t["addressesonroll"], t["fsmperiod"], t["pupilonroll"]) == [
        "received",
        "received",
        "loaded",
    ]
    new_pupils = _changed(t["pupilonroll"], tmp_path / t["pupilonroll"].name)
    # The LA sends the pupil table again with one pupil fewer; the FSM table is byte-identical.
    statuses = _ingest(wh, t["fsmperiod"], new_pupils, t["addressesonroll"])
    assert statuses == ["duplicate", "received", "loaded"]
    rows = list_extracts(wh)
    heads = [r for r in rows if r.csv_table == "pupilonroll"]
    assert [h.pupil_count for h in heads] == [12, 11]
    assert heads[1].supersedes == heads[0].extract_id
    reused = [r for r in rows if r.part_of == heads[1].extract_id]
    assert sorted((r.csv_table, r.status, r.duplicate_of is not None) for r in reused) == [
        ("addressesonroll", "loaded", True),
        ("fsmperiod", "loaded", True),
    ]


def test_an_unchanged_pupil_table_with_new_addresses_is_a_new_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    t = _csv(tmp_path_factory)
    _ingest(wh, t["addressesonroll"], t["fsmperiod"], t["pupilonroll"])
    new_addresses = _changed(t["addressesonroll"], tmp_path / t["addressesonroll"].name)
    assert _ingest(wh, new_addresses, t["fsmperiod"], t["pupilonroll"]) == ["received", "duplicate", "loaded"]
    heads = [r for r in list_extracts(wh) if r.csv_table == "pupilonroll"]
    assert [h.extract_id for h in heads] == [
        extract_id_for(heads[0].sha256),
        extract_id_for(heads[0].sha256, 2),
    ]
    assert heads[1].duplicate_of is None
    assert heads[1].supersedes == heads[0].extract_id


def test_the_same_three_tables_again_are_duplicates(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    t = _csv(tmp_path_factory)
    order = (t["addressesonroll"], t["fsmperiod"], t["pupilonroll"])
    _ingest(wh, *order)
    assert _ingest(wh, *order) == ["duplicate", "duplicate", "duplicate"]
    assert rows_of(wh, pupil) == 12
    assert _registry_rows(wh) == 6


def test_a_duplicate_of_a_quarantined_file_reports_why(wh: Settings) -> None:
    path = wh.landing_dir / "bad.xml"
    path.write_bytes(b"<Message>")
    first = ingest_file(path, wh)
    path.write_bytes(b"<Message>")
    second = ingest_file(path, wh)
    assert (first.status, second.status) == ("quarantined", "duplicate")
    assert second.extract_id == first.extract_id
    assert second.errors == first.errors


# --- quarantine ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("SC_330_4001_AUT_2026.xml", "SC_330_4001_AUT_2026.xml"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\head\\census.xml", "census.xml"),
        ("..", "file"),
        ("", "file"),
        (".hidden.xml", "hidden.xml"),
        ("-rf.xml", "rf.xml"),
        ("a..b...xml", "a.b.xml"),
        ("my census ü 日本.xml", "my_census_ü_日本.xml"),
        ("tab\tnew\nline\x00.csv", "tab_new_line_.csv"),
        (REASON_FILE, f"file_{REASON_FILE}"),
    ],
)
def test_safe_file_names(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


def test_long_names_are_cut_keeping_the_extension() -> None:
    safe = safe_file_name("ü" * 300 + ".xml")
    assert safe.endswith(".xml")
    assert len(safe.encode()) <= 200


def test_quarantine_never_leaves_its_folder(wh: Settings, tmp_path: Path) -> None:
    source = tmp_path / "x.xml"
    source.write_bytes(b"bytes")
    receipt = receive(land(wh, source), wh)
    evil = ArchivedFile(
        receipt.archived.sha256, 5, "../../../../escape.xml", receipt.archived.archive_path, False
    )
    when = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    result = quarantine(evil, [reason("CT-TEST", "test")], wh, received_at=when)
    (copy,) = result.files
    assert copy.path == wh.quarantine_dir / receipt.archived.sha256 / "escape.xml"
    assert copy.path.read_bytes() == b"bytes"
    assert copy.extract_id is None  # never registered: files only
    assert sorted(p.name for p in wh.home.rglob("escape.xml")) == ["escape.xml"]


def test_quarantine_refuses_loaded_and_unknown_extracts(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outcome = ingest_file(land(wh, _xml(tmp_path_factory)), wh)
    with pytest.raises(IngestError) as loaded:
        quarantine(outcome.extract_id or "", [reason("CT-TEST", "test")], wh)
    assert loaded.value.code == "CT-INGEST-STATE"
    with pytest.raises(IngestError) as unknown:
        quarantine("ext_nope", [reason("CT-TEST", "test")], wh)
    assert unknown.value.code == "CT-INGEST-NOT-FOUND"
    assert find_extract(wh, outcome.extract_id or "").status == "loaded"
