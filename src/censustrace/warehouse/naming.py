"""Names of warehouse datasets (OpenLineage naming spec) and where each warehouse column comes from.

PostgreSQL follows the spec: namespace ``postgres://{host}:{port}``, name ``{database}.{schema}.{table}``
(schema ``public``: the warehouse does not set a search path). The spec has no entry for SQLite, so we
use namespace ``sqlite`` and name ``{instance}.{table}`` with the instance's configured name
(``CENSUSTRACE_INSTANCE``), not the database file's path: a home moved or restored elsewhere keeps its
dataset names. Releases before 0.2 used ``{absolute database path}.{table}``; ``censustrace init`` renames
those and keeps the old names as aliases (:func:`legacy_sqlite_table`). Table names never contain a dot,
so a name still splits unambiguously at its last dot.

Column sources are the census readers' own mapping tables, so the lineage cannot drift from what the
readers do. Pupil items are paths relative to the pupil element (``PupilIdentifiers/UPN``), header items
absolute (``Message/Header/Source/LEA``), CSV items column names of one of the three tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from sqlalchemy.engine import URL, make_url

from censustrace.census.formats import census_xml, ctf_xml, la_csv
from censustrace.census.formats.header import FormatName
from censustrace.census.formats.xmlplan import xml_address_paths
from censustrace.warehouse.tables import ADDRESS_COLUMNS

DEFAULT_SCHEMA: Final = "public"
SQLITE_NAMESPACE: Final = "sqlite"


def warehouse_namespace(url: str | URL) -> str:
    """The OpenLineage namespace of the warehouse database at ``url``."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        return f"postgres://{u.host or 'localhost'}:{u.port or 5432}"
    if u.get_backend_name() == "sqlite":
        return SQLITE_NAMESPACE
    raise ValueError(f"no OpenLineage naming for {u.get_backend_name()}")


def warehouse_dataset_name(url: str | URL, table: str, *, instance: str | None = None) -> str:
    """The OpenLineage dataset name of ``table`` in the warehouse at ``url``; SQLite names carry
    ``instance`` (default: this instance's ``CENSUSTRACE_INSTANCE``)."""
    u = make_url(url)
    if u.get_backend_name() == "postgresql":
        return f"{u.database}.{DEFAULT_SCHEMA}.{table}"
    if u.get_backend_name() == "sqlite":
        if instance is None:
            from censustrace.config import get_settings

            instance = get_settings().instance_name
        return f"{instance}.{table}"
    raise ValueError(f"no OpenLineage naming for {u.get_backend_name()}")


def legacy_sqlite_table(name: str) -> str | None:
    """The table of a SQLite dataset name in the old form (``/absolute/path/warehouse.db.<table>``), or
    None for any other name."""
    path, dot, table = name.rpartition(".")
    return table if dot and path.startswith("/") and table.isidentifier() else None


# --- column sources -----------------------------------------------------------------------------------

Transform = Literal["identity", "transformation", "masked", "derived"]


@dataclass(frozen=True, slots=True)
class SourceItem:
    """One input of a warehouse column: which input file (``role``: ``"file"`` for XML/CTF, the table
    name for the LA CSV export) and which item in it."""

    role: str
    item: str
    transform: Transform = "identity"


ColumnSources = dict[str, dict[str, tuple[SourceItem, ...]]]

_DESCRIPTIONS: Final[dict[str, str]] = {
    "pupil_key": "HMAC-SHA256 of the UPN with the instance's pupil-key secret",
    "nationality": "repeated items joined with ';'",
    "sen_needs": "repeated items joined with ';' in rank order",
    "fsm_eligible": "true when an FSM period covers the census reference date",
    "laestab": "LA number followed by establishment number",
}


def description(column: str) -> str | None:
    """How a column is computed from its sources, when it is not a plain copy."""
    return _DESCRIPTIONS.get(column)


def _items(role: str, mapping: dict[str, str | tuple[str, ...]]) -> dict[str, tuple[SourceItem, ...]]:
    out: dict[str, tuple[SourceItem, ...]] = {}
    for column, items in mapping.items():
        paths = (items,) if isinstance(items, str) else items
        transform: Transform = "identity" if len(paths) == 1 else "derived"
        if column in ("nationality", "sen_needs"):
            transform = "transformation"
        out[column] = tuple(SourceItem(role, path, transform) for path in paths)
    return out


def _xml_sources(
    fmt: FormatName, pupil_items: dict[str, str], header: dict[str, str | tuple[str, ...]]
) -> ColumnSources:
    reader = census_xml if fmt == "school_census_xml" else ctf_xml
    fsm = reader.FSM_GROUP
    pupil = _items("file", {**pupil_items, **header})
    pupil["pupil_key"] = (SourceItem("file", pupil_items["upn"], "masked"),)
    pupil["fsm_eligible"] = tuple(
        SourceItem("file", f"{fsm}/{item}", "derived") for item in ("FSMstartDate", "FSMendDate")
    )
    address = dict(
        zip((*ADDRESS_COLUMNS, "postcode", "uprn"), xml_address_paths(reader.ADDRESS), strict=True)
    )
    periods = {
        "start_date": f"{fsm}/FSMstartDate",
        "end_date": f"{fsm}/FSMendDate",
        "uk_country": f"{fsm}/UKcountry",
    }
    return {
        "pupil": pupil,
        "pupil_address": _items("file", dict(address)),
        "fsm_period": _items("file", dict(periods)),
    }


def column_sources(fmt: FormatName) -> ColumnSources:
    """For each canonical table, each column's source items in a file of format ``fmt``.

    Columns with no source item in the file (``extract_id``, ``record_number``, ``period_number``; a
    CTF's or CSV's term and year, taken from the file name) are absent."""
    if fmt == "school_census_xml":
        src, cd = "Message/Header/Source/", "Message/Header/CollectionDetails/"
        header: dict[str, str | tuple[str, ...]] = {
            "laestab": (src + "LEA", src + "Estab"),
            "urn": src + "URN",
            "census_term": cd + "Term",
            "census_year": cd + "Year",
            "reference_date": cd + "ReferenceDate",
        }
        return _xml_sources(fmt, {i.field: i.source for i in census_xml.ITEMS}, header)
    if fmt == "ctf_xml":
        school = "CTfile/Header/SourceSchool/"
        items = {i.field: i.source for i in ctf_xml.ITEMS}
        items["entry_date"] = ctf_xml.SCHOOL_GROUP + "/EntryDate"
        items["language"] = ctf_xml.LANGUAGE_GROUP + "/Language"
        items["sen_provision"] = ctf_xml.SEN_GROUP + "/SENprovision"
        items["sen_needs"] = ctf_xml.SEN_NEED_GROUP + "/SENtype"
        return _xml_sources(
            fmt, items, {"laestab": (school + "LEA", school + "Estab"), "urn": school + "URN"}
        )
    return _csv_sources()


def _csv_sources() -> ColumnSources:
    por, addr, fsm = la_csv.PUPILONROLL, la_csv.ADDRESSESONROLL, la_csv.FSMPERIOD
    pupil = _items(por, {i.field: i.source for i in la_csv.PUPIL_ITEMS})
    pupil["pupil_key"] = (SourceItem(por, "upn", "masked"),)
    pupil["fsm_eligible"] = tuple(SourceItem(fsm, c, "derived") for c in la_csv.FSM_COLUMNS[:2])
    address_columns = (*la_csv.ADDRESS_COLUMNS, la_csv.POSTCODE_COLUMN, la_csv.UPRN_COLUMN)
    return {
        "pupil": pupil,
        "pupil_address": _items(
            addr, dict(zip((*ADDRESS_COLUMNS, "postcode", "uprn"), address_columns, strict=True))
        ),
        "fsm_period": _items(
            fsm, dict(zip(("start_date", "end_date", "uk_country"), la_csv.FSM_COLUMNS, strict=True))
        ),
    }


#: CSV rows of the address and FSM tables are matched to pupil rows on this column.
CSV_JOIN_COLUMN: Final = "upn"
