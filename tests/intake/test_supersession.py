"""Supersession that matches the domain, on SQLite and PostgreSQL: a CTF never becomes or replaces a
school's census; School Census XML and LA CSV returns of one school, term and year are one census; a
file whose name disagrees with its header is quarantined."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from censustrace.config import Settings
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.intake.registry import find_extract
from censustrace.warehouse.current import current_pupils
from censustrace.warehouse.db import warehouse_engine
from tests.plugins.helpers.warehouse import generated, land


def _school(tmp_path_factory: pytest.TempPathFactory, fmt: str, pupils: int = 10) -> list[Path]:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=pupils, fmt=fmt, seed=21)
    return [folder / str(f["file"]) for f in manifest["files"]]


def _ingest(settings: Settings, paths: list[Path]) -> IngestOutcome:
    outcomes = [ingest_file(land(settings, p), settings) for p in paths]
    return outcomes[-1]


def _current(settings: Settings) -> set[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return {row["extract_id"] for row in current_pupils(conn)}


def test_a_ctf_never_replaces_nor_becomes_a_census(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    census = _ingest(wh, _school(tmp_path_factory, "xml"))
    ctf = _ingest(wh, _school(tmp_path_factory, "ctf", pupils=4))
    head = find_extract(wh, ctf.extract_id or "")
    assert head.format == "ctf_xml"
    assert head.laestab == find_extract(wh, census.extract_id or "").laestab  # the same school
    assert (ctf.status, ctf.supersedes) == ("loaded", None)
    assert ctf.as_dict()["supersedes"] is None
    assert ctf.rows.loaded == 4
    assert find_extract(wh, census.extract_id or "").superseded_by is None
    assert _current(wh) == {census.extract_id}  # the transfer changed no pupil's current record


def test_a_ctf_alone_is_loaded_but_not_current(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ctf = _ingest(wh, _school(tmp_path_factory, "ctf", pupils=4))
    assert (ctf.status, ctf.supersedes, ctf.errors) == ("loaded", None, ())
    assert _current(wh) == set()
    later = _ingest(wh, _school(tmp_path_factory, "xml"))
    assert later.supersedes is None  # a census return supersedes only a census return
    assert _current(wh) == {later.extract_id}


def test_xml_and_csv_returns_of_one_school_and_term_are_one_census(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    csv = _ingest(wh, _school(tmp_path_factory, "csv"))
    xml = _ingest(wh, _school(tmp_path_factory, "xml"))
    assert find_extract(wh, csv.extract_id or "").laestab == find_extract(wh, xml.extract_id or "").laestab
    assert (csv.status, xml.status) == ("loaded", "loaded")
    assert xml.supersedes == csv.extract_id
    assert find_extract(wh, csv.extract_id or "").superseded_by == xml.extract_id
    assert _current(wh) == {xml.extract_id}


def test_another_term_is_another_census(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    (source,) = _school(tmp_path_factory, "xml")
    spring = tmp_path / source.name.replace("AUT_2026", "SPR_2027")
    spring.write_text(
        source.read_text(encoding="utf-8")
        .replace("<Term>AUT</Term>", "<Term>SPR</Term>")
        .replace("<Year>2026</Year>", "<Year>2027</Year>"),
        encoding="utf-8",
    )
    autumn = _ingest(wh, [source])
    later = _ingest(wh, [spring])
    assert later.status == "loaded"
    assert later.supersedes is None
    assert _current(wh) == {autumn.extract_id, later.extract_id}


@pytest.mark.parametrize(
    ("fmt", "rename", "item"),
    [
        ("xml", ("_AUT_", "_SPR_"), "Message/Header/CollectionDetails/Term"),
        ("ctf", ("CTF_330_", "CTF_331_"), "CTfile/Header/SourceSchool/LEA"),
    ],
)
def test_a_name_that_disagrees_with_the_header_is_quarantined(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str, rename: tuple[str, str], item: str
) -> None:
    (source,) = _school(tmp_path_factory, fmt)
    misnamed = source.name.replace(*rename)
    assert misnamed != source.name
    outcome = ingest_file(land(wh, source, misnamed), wh)
    assert outcome.status == "quarantined"
    (error,) = outcome.errors
    assert error["code"] == "CT-PARSE-NAME-MISMATCH"
    assert misnamed in error["message"]
    assert item in error["location"]
    assert _current(wh) == set()


def _census_of(settings: Settings, outcome: IngestOutcome) -> dict[str, Any]:
    row = find_extract(settings, outcome.extract_id or "")
    return {"laestab": row.laestab, "term": row.term, "year": row.year}


def test_generated_files_carry_headers_that_match_their_names(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for fmt in ("xml", "ctf", "csv"):
        outcome = _ingest(wh, _school(tmp_path_factory, fmt))
        assert outcome.status == "loaded", outcome.errors
        assert _census_of(wh, outcome)["term"] == "AUT"


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_upgrading_a_populated_warehouse_keeps_rows_and_takes_ctfs_out_of_current(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from censustrace.warehouse.db import upgrade

    url = (
        f"sqlite:///{tmp_path / 'old.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("new_postgres_database")()
    )
    upgrade(url, "0003")  # the last landed release
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        if backend == "sqlite":
            conn.execute(sa.text("PRAGMA foreign_keys=ON"))
        for n, fmt in enumerate(("school_census_xml", "ctf_xml"), 1):
            conn.execute(
                sa.text(
                    "INSERT INTO extracts (id, extract_id, sha256, size, original_name, received_at, "
                    "status, reasons, format, laestab, term, year) VALUES (:n, :id, :sha, 1, 'f', :at, "
                    "'loaded', '[]', :fmt, '3304001', 'AUT', 2026)"
                ),
                {"n": n, "id": f"ext_{n}", "sha": str(n), "at": "2026-10-01 00:00:00+00:00", "fmt": fmt},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO pupil (extract_id, record_number, laestab, census_term, census_year, "
                    "reference_date) VALUES (:id, 1, '3304001', 'AUT', 2026, '2026-10-01')"
                ),
                {"id": f"ext_{n}"},
            )
    engine.dispose()
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM pupil")).scalar() == 2
        current = conn.execute(sa.text("SELECT extract_id FROM current_pupil")).scalars().all()
        assert current == ["ext_1"]
        assert conn.execute(sa.text("SELECT count(*) FROM extracts WHERE retry_of IS NULL")).scalar() == 2
        assert conn.execute(sa.text("SELECT count(*) FROM quarantine_action")).scalar() == 0
    engine.dispose()
