"""The current view of the warehouse: per school and census (term, year), the rows of the latest
accepted extract, i.e. ``loaded`` and not superseded.

The SQL views ``current_pupil``, ``current_pupil_address`` and ``current_fsm_period`` (created by the
migration, the same on SQLite and PostgreSQL) are what other tools query; the helpers here read them,
and rebuild :class:`PupilRecord` values from the warehouse rows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import Connection, RowMapping, Select, Table, TableClause, column, select, table

from censustrace.census.model import FsmPeriod, PupilRecord
from censustrace.warehouse.tables import (
    ADDRESS_COLUMNS,
    CURRENT_VIEWS,
    LIST_FIELDS,
    LIST_SEPARATOR,
    fsm_period,
    pupil,
    pupil_address,
)


def _view(source: Table) -> TableClause:
    return table(CURRENT_VIEWS[source.name], *(column(c.name, c.type) for c in source.columns))


current_pupil = _view(pupil)
current_pupil_address = _view(pupil_address)
current_fsm_period = _view(fsm_period)


def current_pupils_query(
    laestab: str | None = None, *, term: str | None = None, year: int | None = None
) -> Select[Any]:
    """``SELECT`` over the current pupils, optionally of one school and/or census, in a stable order."""
    query = select(current_pupil).order_by(
        current_pupil.c.laestab,
        current_pupil.c.census_year,
        current_pupil.c.census_term,
        current_pupil.c.record_number,
    )
    for name, value in (("laestab", laestab), ("census_term", term), ("census_year", year)):
        if value is not None:
            query = query.where(current_pupil.c[name] == value)
    return query


def current_pupils(
    conn: Connection, laestab: str | None = None, *, term: str | None = None, year: int | None = None
) -> list[RowMapping]:
    """The current ``pupil`` rows (one per pupil record of each school's latest accepted extract)."""
    return list(conn.execute(current_pupils_query(laestab, term=term, year=year)).mappings())


def pupil_records(conn: Connection, extract_id: str) -> Iterator[tuple[int, PupilRecord]]:
    """``(record number, PupilRecord)`` for every published record of one extract, as the reader gave
    it: the inverse of what ``stage`` stored (absent address items ``""``, code lists split again)."""
    addresses = {
        row.record_number: row
        for row in conn.execute(select(pupil_address).where(pupil_address.c.extract_id == extract_id))
    }
    periods: dict[int, list[FsmPeriod]] = defaultdict(list)
    for row in conn.execute(
        select(fsm_period)
        .where(fsm_period.c.extract_id == extract_id)
        .order_by(fsm_period.c.record_number, fsm_period.c.period_number)
    ):
        periods[row.record_number].append(FsmPeriod(row.start_date, row.end_date, row.uk_country or ""))
    own = {"extract_id", "record_number", "pupil_key", *LIST_FIELDS}
    fields = [c.name for c in pupil.columns if c.name not in own]
    query = select(pupil).where(pupil.c.extract_id == extract_id).order_by(pupil.c.record_number)
    for found in conn.execute(query).mappings():
        number = found["record_number"]
        address = addresses.get(number)
        lines: tuple[str, ...] = ()
        postcode = uprn = None
        if address is not None:
            lines = tuple(getattr(address, name) or "" for name in ADDRESS_COLUMNS)
            postcode, uprn = address.postcode, address.uprn
        values: dict[str, Any] = {name: found[name] for name in fields}
        yield (
            number,
            PupilRecord(
                **values,
                nationality=_split(found["nationality"]),
                sen_needs=_split(found["sen_needs"]),
                address_lines=lines,
                postcode=postcode,
                uprn=uprn,
                fsm_periods=tuple(periods.get(number, ())),
            ),
        )


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(text.split(LIST_SEPARATOR)) if text else ()


__all__: Sequence[str] = [
    "current_fsm_period",
    "current_pupil",
    "current_pupil_address",
    "current_pupils",
    "current_pupils_query",
    "pupil_records",
]
