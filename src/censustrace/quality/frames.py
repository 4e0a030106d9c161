"""Read an extract's staged rows into one pandas frame per suite: only the columns the suite reads.

A suite's frame has one row per row of its staging table, in record (and period) order. A column the
suite names that is not in its table is taken from the record's ``staged_pupil`` row (an FSM period's
``dob`` and ``reference_date``); one that is in neither is left out, so GX reports the expectation as
failed ("column missing from the data") instead of the run crashing. ``parse_rejected`` says whether the
parse rule already rejected the record (its ``reject_codes`` hold a code that is not a validation code).

Dates are read as ISO text and converted in one vectorised call (SQLite and PostgreSQL alike).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Column, Connection, Date, String, Table, cast, func, select

from censustrace.intake.reject_codes import StagedCodes
from censustrace.quality.suites import PARSE_REJECTED, Suites, SuiteSpec
from censustrace.warehouse.tables import staged_fsm_period, staged_pupil, staged_pupil_address

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

TABLES: Final = {t.name: t for t in (staged_pupil, staged_pupil_address, staged_fsm_period)}


def read_frames(
    conn: Connection, extract_id: str, suites: Suites, codes: StagedCodes
) -> dict[str, pd.DataFrame]:
    """Suite name -> its frame of the extract's staged rows."""
    rejected = codes.parse_rejected()
    return {suite.name: read_frame(conn, extract_id, suite, rejected) for suite in suites}


def read_frame(conn: Connection, extract_id: str, suite: SuiteSpec, rejected: set[int]) -> pd.DataFrame:
    frame = read_staged(conn, suite, [extract_id]).drop(columns=EXTRACT_COLUMN)
    if PARSE_REJECTED in suite.columns():
        frame[PARSE_REJECTED] = frame["record_number"].isin(rejected) if rejected else False
    return frame


#: The column of :func:`read_staged`'s frame that says which extract a row belongs to.
EXTRACT_COLUMN: Final = "__extract"


def read_staged(conn: Connection, suite: SuiteSpec, extract_ids: Sequence[str]) -> pd.DataFrame:
    """The columns the suite reads of these extracts' staged rows, in (extract, record, period) order,
    typed (dates as datetimes, record and period numbers as int64), each row's extract in
    :data:`EXTRACT_COLUMN` (one extract validated alone, or a batch of them)."""
    import pandas as pd

    table = TABLES[suite.table]
    selected = [(name, column) for name in suite.columns() if (column := _source(table, name)) is not None]
    query = select(
        table.c.extract_id.label(EXTRACT_COLUMN),
        *(_readable(column).label(name) for name, column in selected),
    ).where(table.c.extract_id.in_(extract_ids))
    if table is not staged_pupil and any(column.table is staged_pupil for _, column in selected):
        query = query.select_from(
            table.join(
                staged_pupil,
                (staged_pupil.c.extract_id == table.c.extract_id)
                & (staged_pupil.c.record_number == table.c.record_number),
            )
        )
    else:
        query = query.select_from(table)
    order = [table.c.extract_id, table.c.record_number]
    order += [table.c.period_number] if "period_number" in table.c else []
    # Plain tuples: pandas builds a frame from SQLAlchemy Row objects several times slower.
    rows = [tuple(row) for row in conn.execute(query.order_by(*order))]
    frame = pd.DataFrame.from_records(rows, columns=[EXTRACT_COLUMN, *(name for name, _ in selected)])
    for name, column in selected:
        if isinstance(column.type, Date):
            frame[name] = pd.to_datetime(frame[name], format="%Y-%m-%d")
        elif column.name in ("record_number", "period_number"):
            frame[name] = frame[name].astype("int64")
    return frame


def _source(table: Table, name: str) -> Column[Any] | None:
    if name in table.c:
        return table.c[name]
    if name in staged_pupil.c and name not in ("issues", "reject_codes"):
        return staged_pupil.c[name]
    return None


def _readable(column: Column[Any]) -> Any:
    # Dates as ISO text on both backends, parsed by pandas in one call (not one Python date per value).
    if isinstance(column.type, Date):
        return cast(column, String)
    # An empty text is an absent value (a record with no UPN is staged with ``upn`` "").
    if isinstance(column.type, String):
        return func.nullif(column, "")
    return column


__all__ = ["EXTRACT_COLUMN", "read_frame", "read_frames", "read_staged"]
