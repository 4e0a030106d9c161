"""The extract registry: one row in ``extracts`` per received file, and ``register``, the use case that
writes it.

Ids: the first receipt of some bytes is extract ``ext_<first 20 hex digits of their sha256>``, so the
same bytes always name the same extract; the n-th receipt of the same bytes gets its own row,
``ext_<...>-<n>``, normally with status ``duplicate`` and ``duplicate_of`` the first.

LA CSV exports come as three files per school (``pupilonroll``, ``addressesonroll``, ``fsmperiod``,
told apart by their header row and grouped by the ``_<LA>_<ESTAB>_<TERM>_<YEAR>`` in their names). The
pupilonroll file heads the extract; the two others are its *parts* (``part_of``), in any order of
arrival. A part waits (status ``received``, no ``part_of``) until a pupilonroll of the same school and
census claims it; a pupilonroll waits until it has one part of each kind; the file that completes the
group makes the extract ready to stage. Parts follow their extract's status from then on. A part whose
bytes were seen before is registered as a ``duplicate`` but may still be claimed (an unchanged FSM table
in a resubmission); a pupilonroll whose bytes were seen before is a duplicate unless a part with new
bytes is waiting for it (then it heads a new extract, ``ext_<...>-<n>``). See docs/data-model.md.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from sqlalchemy import Connection, Row, exists, select, text, update

from censustrace.census import codes
from censustrace.census.formats import ParseError, detect_format, la_csv, parse_extract
from censustrace.census.formats.errors import HEADER
from censustrace.census.formats.header import ExtractHeader, file_name_parts
from censustrace.census.formats.safexml import decode_head
from censustrace.config import Settings
from censustrace.intake.archive import ArchivedFile, archive_path_for
from censustrace.intake.quarantine import (
    IngestError,
    Reason,
    quarantine,
    reason_from_error,
    safe_file_name,
)
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import DUPLICATE, RECEIVED, UNFINISHED, extracts

EXTRACT_PREFIX: Final = "ext_"
ID_HEX_DIGITS: Final = 20
PUPILONROLL: Final = la_csv.PUPILONROLL
PART_TABLES: Final = (la_csv.ADDRESSESONROLL, la_csv.FSMPERIOD)
# Serialises registrations on PostgreSQL (SQLite's BEGIN IMMEDIATE already does).
REGISTRY_LOCK_KEY: Final = 0x52454749
_SNIFF_BYTES: Final = 64 * 1024


def extract_id_for(sha256: str, receipt: int = 1) -> str:
    """The registry id of the ``receipt``-th receipt of the bytes with this sha256."""
    base = EXTRACT_PREFIX + sha256[:ID_HEX_DIGITS]
    return base if receipt == 1 else f"{base}-{receipt}"


@dataclass(frozen=True, slots=True)
class ExtractRow:
    """One registry row (see ``warehouse.tables.extracts`` and docs/data-model.md)."""

    id: int
    extract_id: str
    sha256: str
    size: int
    original_name: str
    received_at: dt.datetime
    format: str | None
    csv_table: str | None
    la: str | None
    estab: str | None
    laestab: str | None
    urn: str | None
    term: str | None
    year: int | None
    reference_date: dt.date | None
    status: str
    reasons: list[Reason]
    rows_read: int | None
    rows_rejected: int | None
    pupil_count: int | None
    supersedes: str | None
    superseded_by: str | None
    duplicate_of: str | None
    part_of: str | None
    retry_of: str | None
    staged_at: dt.datetime | None
    loaded_at: dt.datetime | None
    quarantined_at: dt.datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> ExtractRow:
        data = row._mapping
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, dt.date | dt.datetime):
                out[key] = value.isoformat()
        return out


def get_extract(conn: Connection, extract_id: str, *, lock: bool = False) -> ExtractRow | None:
    """The registry row ``extract_id``; ``lock`` holds it (FOR UPDATE) until the transaction ends."""
    query = select(extracts).where(extracts.c.extract_id == extract_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else ExtractRow.of(row)


def extract_files(conn: Connection, extract_id: str) -> list[ExtractRow]:
    """The files that make an extract: its own row first, then its parts (CSV) in table order."""
    rows = [
        ExtractRow.of(r)
        for r in conn.execute(
            select(extracts).where((extracts.c.extract_id == extract_id) | (extracts.c.part_of == extract_id))
        )
    ]
    order = {name: i for i, name in enumerate((PUPILONROLL, *PART_TABLES))}
    return sorted(rows, key=lambda r: (r.extract_id != extract_id, order.get(r.csv_table or "", 0)))


def find_extract(settings: Settings, extract_id: str) -> ExtractRow:
    """The registry row ``extract_id``, or CT-INGEST-NOT-FOUND."""
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        row = get_extract(conn, extract_id)
    if row is None:
        raise IngestError(f"no extract {extract_id} in the registry", code="CT-INGEST-NOT-FOUND")
    return row


def list_extracts(
    settings: Settings, *, laestab: str | None = None, status: str | None = None
) -> list[ExtractRow]:
    """Registry rows in receipt order, optionally of one school and/or status."""
    query = select(extracts).order_by(extracts.c.id)
    if laestab is not None:
        query = query.where(extracts.c.laestab == laestab)
    if status is not None:
        query = query.where(extracts.c.status == status)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [ExtractRow.of(r) for r in conn.execute(query)]


@contextmanager
def opened_files(files: Sequence[tuple[Path, str]]) -> Iterator[list[Path]]:
    """The archived files ``(archive path, original name)`` under their received (made safe) names.

    The readers take the school, term and year of a CTF or CSV from the file name, and name the file
    in every message: links in a private folder give them the received names while the bytes read are
    the archived ones."""
    with tempfile.TemporaryDirectory(prefix="censustrace-extract-") as folder:
        links: list[Path] = []
        for archive_path, name in files:
            link = Path(folder) / safe_file_name(name)
            if link.exists() or link.is_symlink():  # two files received under one name
                link = link.with_name(f"{len(links)}_{link.name}")
            link.symlink_to(archive_path)
            links.append(link)
        yield links


# --- reading the header -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Inspection:
    """What the header of one received file says (or why it cannot be read)."""

    format: str | None = None
    csv_table: str | None = None
    header: ExtractHeader | None = None
    error: Reason | None = None

    @property
    def key(self) -> tuple[str, str, int] | None:
        h = self.header
        return None if h is None else (h.laestab, h.term, h.year)

    def values(self) -> dict[str, Any]:
        h = self.header
        values: dict[str, Any] = {"format": self.format, "csv_table": self.csv_table}
        if h is not None:
            values.update(
                la=h.la,
                estab=h.estab,
                laestab=h.laestab,
                urn=h.urn,
                term=h.term,
                year=h.year,
                reference_date=h.reference_date,
            )
        return values


def csv_rules(settings: Settings) -> la_csv.CsvRules:
    """How strict the LA CSV reader is on this instance."""
    return la_csv.CsvRules(settings.csv_unknown_columns, settings.csv_side_table_max_rows)


def csv_table_of(path: Path) -> str | None:
    """Which LA export table a CSV file is, from its header row (as ``detect_format`` reads it)."""
    with path.open("rb") as fh:
        head = fh.read(_SNIFF_BYTES)
    lines = decode_head(head).lstrip().splitlines()
    first = lines[0] if lines else ""
    separator = "," if "," in first else ("\t" if "\t" in first else ";")
    return la_csv.identify(c.strip().strip('"').lower() for c in first.split(separator))


def inspect_file(archive_path: Path, original_name: str) -> Inspection:
    """Format and header of one archived file, reading only its beginning.

    An LA CSV table carries no header items: the school, term and year come from its file name
    (``<table>_<LA>_<ESTAB>_<TERM>_<YEAR>.csv``), and its columns are checked once its group is
    complete (:func:`inspect_extract`)."""
    with opened_files([(archive_path, original_name)]) as (path,):
        try:
            fmt = detect_format(path)
            if fmt != "la_csv":
                return Inspection(fmt, None, parse_extract(path).header)
            table = csv_table_of(path)
            named = file_name_parts(path)
            if named is None:
                raise ParseError(
                    HEADER,
                    path,
                    "an LA export table must be named <table>_<LA>_<ESTAB>_<TERM>_<YEAR>.csv",
                    item="file name",
                )
            header = ExtractHeader(
                format="la_csv",
                la=named.la,
                estab=named.estab,
                urn=None,
                term=named.term,
                year=named.year,
                reference_date=codes.reference_date(named.term, named.year),
                source_files=(path.name,),
            )
            return Inspection(fmt, table, header)
        except ParseError as exc:
            return Inspection(error=reason_from_error(exc))


def inspect_extract(settings: Settings, files: Sequence[ExtractRow]) -> ExtractHeader | Reason:
    """The header of a whole extract (all its files), or why it cannot be read."""
    with opened_files(
        [(archive_path_for(settings.archive_dir, f.sha256), f.original_name) for f in files]
    ) as paths:
        try:
            return parse_extract(paths, csv_rules=csv_rules(settings)).header
        except ParseError as exc:
            return reason_from_error(exc)


# --- register -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    """The registry row of one receipt, and what to do next.

    ``ready`` is the extract to stage now: this file's own for XML/CTF (unless it is a duplicate or was
    quarantined), the pupilonroll's when this file completed a CSV group, else None (waiting)."""

    extract: ExtractRow
    resumed: bool
    ready: str | None
    errors: tuple[Reason, ...]
    lineage: StepLineage

    @property
    def extract_id(self) -> str:
        return self.extract.extract_id

    @property
    def status(self) -> str:
        return self.extract.status


def register(archived: ArchivedFile, received_at: dt.datetime, settings: Settings) -> Registration:
    """Register one archived file: read its header only, insert (or resume) its registry row, group LA
    CSV tables, and quarantine it now if its header cannot be read.

    Same bytes already registered: a new ``duplicate`` row, nothing loaded again; unless the earlier row
    is unfinished (``received``/``staged``, e.g. after a crash), which is resumed instead."""
    engine = warehouse_engine(settings.warehouse_db_url)
    info = inspect_file(archived.archive_path, archived.original_name)
    # One registration at a time (SQLite: BEGIN IMMEDIATE; PostgreSQL: an advisory lock), so the same
    # bytes received twice at once, or two tables of one CSV group, always see each other.
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": REGISTRY_LOCK_KEY})
        row, resumed = _insert_or_resume(conn, archived, received_at, info)
        ready = _group(conn, row) if info.error is None else None
        row = get_extract(conn, row.extract_id) or row
    errors: tuple[Reason, ...] = ()
    if info.error is not None and row.status in UNFINISHED:
        errors = (info.error,)
        quarantine(row.extract_id, errors, settings)
        ready = None
    elif ready is not None and row.format == "la_csv":
        with engine.connect() as conn:
            group = extract_files(conn, ready)
        checked = inspect_extract(settings, group)
        if not isinstance(checked, ExtractHeader):
            errors = (checked,)
            quarantine(ready, errors, settings)
            ready = None
    with engine.connect() as conn:
        row = get_extract(conn, row.extract_id) or row
    return Registration(row, resumed, ready, errors, register_lineage(settings, row))


def _insert_or_resume(
    conn: Connection, archived: ArchivedFile, received_at: dt.datetime, info: Inspection
) -> tuple[ExtractRow, bool]:
    earlier = [
        ExtractRow.of(r)
        for r in conn.execute(
            select(extracts).where(extracts.c.sha256 == archived.sha256).order_by(extracts.c.id)
        )
    ]
    # A retry after a crash receives the same file again (same name, same bytes): resume its row. The
    # same bytes under another name while the first is still in flight is a second copy: a duplicate.
    unfinished = [r for r in earlier if r.status in UNFINISHED and r.original_name == archived.original_name]
    if unfinished:
        return unfinished[-1], True
    values: dict[str, Any] = {
        "extract_id": extract_id_for(archived.sha256, len(earlier) + 1),
        "sha256": archived.sha256,
        "size": archived.size,
        "original_name": archived.original_name,
        "received_at": received_at,
        "status": RECEIVED,
        "reasons": [],
        **info.values(),
    }
    if earlier and not (info.csv_table == PUPILONROLL and _new_parts_waiting(conn, info)):
        values.update(status=DUPLICATE, duplicate_of=earlier[0].extract_id)
    conn.execute(extracts.insert().values(**values))
    row = get_extract(conn, values["extract_id"])
    assert row is not None
    return row, False


def _same_group(source: Inspection | ExtractRow) -> Any:
    """Rows of the same LA CSV group (school, term and year) as ``source``."""
    if isinstance(source, Inspection):
        assert source.key is not None
        laestab, term, year = source.key
        return _group_clause(laestab, term, year)
    return _group_clause(source.laestab, source.term, source.year)


def _group_clause(laestab: str | None, term: str | None, year: int | None) -> Any:
    return (
        (extracts.c.format == "la_csv")
        & (extracts.c.laestab == laestab)
        & (extracts.c.term == term)
        & (extracts.c.year == year)
    )


def _new_parts_waiting(conn: Connection, info: Inspection) -> bool:
    """Whether a sibling table with bytes never seen before waits for a pupilonroll of this group."""
    query = select(
        exists().where(
            _same_group(info),
            extracts.c.csv_table.in_(PART_TABLES),
            extracts.c.part_of.is_(None),
            extracts.c.status == RECEIVED,
        )
    )
    return bool(conn.execute(query).scalar())


def _claimable(table: str, row: ExtractRow) -> Any:
    return (
        select(extracts)
        .where(
            _same_group(row),
            extracts.c.csv_table == table,
            extracts.c.part_of.is_(None),
            extracts.c.status.in_((RECEIVED, DUPLICATE)),
        )
        .order_by(extracts.c.id.desc())
        .limit(1)
    )


def _part_tables(conn: Connection, head: str) -> set[str]:
    query = select(extracts.c.csv_table).where(extracts.c.part_of == head)
    return {t for t in conn.execute(query).scalars() if t}


def _group(conn: Connection, row: ExtractRow) -> str | None:
    """Claim CSV parts for a pupilonroll (or a pupilonroll for a part); the extract to stage if complete."""
    if row.format != "la_csv":
        return row.extract_id if row.status in UNFINISHED else None
    if row.csv_table is None:
        return None
    if row.csv_table == PUPILONROLL:
        if row.status not in UNFINISHED:
            return None
        head = row.extract_id
        if row.status == RECEIVED:
            have = _part_tables(conn, head)
            for table in PART_TABLES:
                if table not in have:
                    part = conn.execute(_claimable(table, row)).first()
                    if part is not None:
                        _claim(conn, part.extract_id, head)
    else:
        if row.part_of is None and row.status in (RECEIVED, DUPLICATE):
            waiting = conn.execute(
                select(extracts.c.extract_id)
                .where(_same_group(row), extracts.c.csv_table == PUPILONROLL, extracts.c.status == RECEIVED)
                .order_by(extracts.c.id.desc())
            ).scalars()
            for candidate in waiting:
                if row.csv_table not in _part_tables(conn, candidate):
                    _claim(conn, row.extract_id, candidate)
                    row = get_extract(conn, row.extract_id) or row
                    break
        if row.part_of is None:
            return None
        head_row = get_extract(conn, row.part_of)
        if head_row is None or head_row.status not in UNFINISHED:
            return None
        head = head_row.extract_id
    return head if _part_tables(conn, head) >= set(PART_TABLES) else None


def _claim(conn: Connection, part: str, head: str) -> None:
    conn.execute(update(extracts).where(extracts.c.extract_id == part).values(part_of=head))


def extract_of(conn: Connection, row: ExtractRow) -> ExtractRow:
    """The extract whose data holds this file's: itself, the extract it is part of, or (for a
    duplicate) that of the first receipt of the same bytes."""
    seen: set[str] = set()
    while row.extract_id not in seen:
        seen.add(row.extract_id)
        nxt = row.part_of or (row.duplicate_of if row.status == DUPLICATE else None)
        found = get_extract(conn, nxt) if nxt else None
        if found is None:
            return row
        row = found
    return row


# --- lineage ------------------------------------------------------------------------------------------


def census_facet(row: ExtractRow, pupil_count: int | None = None) -> CensusExtractDatasetFacet:
    """The censusExtract facet of a registered file: bytes, receipt and header; never pupil data."""
    return CensusExtractDatasetFacet(
        sha256=row.sha256,
        size=row.size,
        originalName=row.original_name,
        receivedAt=row.received_at.isoformat(),
        format=row.format,
        laestab=row.laestab,
        urn=row.urn,
        term=row.term,
        year=row.year,
        referenceDate=row.reference_date.isoformat() if row.reference_date else None,
        pupilCount=pupil_count,
    )


def archive_input(settings: Settings, row: ExtractRow) -> InputDataset:
    """The archived file of a registry row as a lineage input, at its sha256 version."""
    facets: dict[str, DatasetFacet] = {
        "version": DatasetVersionDatasetFacet(datasetVersion=row.sha256),
        "censusExtract": census_facet(row),
    }
    name = file_dataset_name(archive_path_for(settings.archive_dir, row.sha256))
    return InputDataset(namespace=FILE_NAMESPACE, name=name, facets=facets)


def register_lineage(settings: Settings, row: ExtractRow) -> StepLineage:
    url = settings.warehouse_db_url
    output = OutputDataset(
        namespace=warehouse_namespace(url),
        name=warehouse_dataset_name(url, extracts.name),
        facets={"version": DatasetVersionDatasetFacet(datasetVersion=row.extract_id)},
    )
    return StepLineage(inputs=[archive_input(settings, row)], outputs=[output])


__all__ = [
    "PART_TABLES",
    "ExtractRow",
    "IngestError",
    "Inspection",
    "Registration",
    "archive_input",
    "census_facet",
    "csv_table_of",
    "extract_files",
    "extract_id_for",
    "extract_of",
    "find_extract",
    "get_extract",
    "inspect_extract",
    "inspect_file",
    "list_extracts",
    "opened_files",
    "register",
    "register_lineage",
]
