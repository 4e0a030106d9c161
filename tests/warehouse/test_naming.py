"""Warehouse dataset names (OpenLineage naming spec) and column sources."""

from __future__ import annotations

from pathlib import Path

import pytest

from censustrace.census.formats import census_xml, ctf_xml, la_csv
from censustrace.warehouse.naming import column_sources, warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import fsm_period, pupil, pupil_address


def test_postgres_names_follow_the_spec() -> None:
    url = "postgresql+psycopg2://u:secret@db.example:6543/census"
    assert warehouse_namespace(url) == "postgres://db.example:6543"
    assert warehouse_dataset_name(url, "pupil") == "census.public.pupil"
    assert warehouse_namespace("postgresql://u@db/census") == "postgres://db:5432"


def test_sqlite_names_carry_the_instance_not_the_machine_path(tmp_path: Path) -> None:
    from censustrace.config import get_settings
    from censustrace.warehouse.naming import legacy_sqlite_table

    url = f"sqlite:///{tmp_path}/w.db"
    assert warehouse_namespace(url) == "sqlite"
    assert warehouse_dataset_name(url, "fsm_period", instance="county-a") == "county-a.fsm_period"
    moved = f"sqlite:///{tmp_path}/elsewhere/w.db"
    assert warehouse_dataset_name(moved, "pupil") == warehouse_dataset_name(url, "pupil")
    assert warehouse_dataset_name(url, "pupil") == f"{get_settings().instance_name}.pupil"
    assert str(tmp_path) not in warehouse_dataset_name(url, "pupil")
    assert legacy_sqlite_table(f"{tmp_path}/w.db.fsm_period") == "fsm_period"
    assert legacy_sqlite_table("county-a.fsm_period") is None


@pytest.mark.parametrize("fmt", ["school_census_xml", "ctf_xml", "la_csv"])
def test_every_data_column_has_a_source(fmt: str) -> None:
    sources = column_sources(fmt)  # type: ignore[arg-type]
    keys = {"extract_id", "record_number", "period_number"}
    # CTF and CSV carry no term or year (file name) and no reference date (derived from them).
    derived = {"census_term", "census_year", "reference_date"} if fmt != "school_census_xml" else set()
    if fmt == "la_csv":
        derived |= {"laestab", "urn"}
    if fmt == "ctf_xml":
        derived |= {"boarder", "part_time", "yssa", "top_up_funding"}  # not in a CTF
    for table in (pupil, pupil_address, fsm_period):
        expected = {c.name for c in table.columns} - keys - (derived if table is pupil else set())
        assert set(sources[table.name]) == expected, table.name
    upn = sources["pupil"]["upn"][0]
    assert upn.item == {"school_census_xml": "PupilIdentifiers/UPN", "ctf_xml": "UPN", "la_csv": "upn"}[fmt]
    assert sources["pupil"]["pupil_key"][0].transform == "masked"


def test_sources_are_the_readers_items() -> None:
    xml_items = {i.source for i in census_xml.ITEMS}
    assert {s.item for s in column_sources("school_census_xml")["pupil"]["surname"]} <= xml_items
    assert column_sources("ctf_xml")["pupil"]["sex"][0].item == "Gender"
    assert {i.source for i in la_csv.PUPIL_ITEMS} >= {
        s.item
        for items in column_sources("la_csv")["pupil"].values()
        for s in items
        if s.role == "pupilonroll"
    }
    assert ctf_xml.LAYOUT.root == "CTfile"
