"""Bulk loading of rows into warehouse tables, inside the caller's transaction.

SQLite: SQLAlchemy Core ``insert()`` with executemany, one batch at a time. PostgreSQL: ``COPY ... FROM
STDIN`` through psycopg2's ``copy_expert`` on the same connection, so the rows are part of the caller's
transaction and vanish with it on rollback (or when the process dies before COMMIT).
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, cast

from sqlalchemy import JSON, Boolean, Connection, Date, Table
from sqlalchemy.types import TypeEngine

#: Rows per batch: large enough that COPY/executemany overheads vanish, small enough to bound memory.
BATCH_SIZE: Final = 5000

Row = Sequence[Any]


def _copy_encoder(type_: TypeEngine[Any]) -> Callable[[Any], str]:
    """How one column's Python value is written in COPY's CSV format (None is the unquoted empty field)."""

    def quoted(text: str) -> str:
        return '"' + text.replace('"', '""') + '"'

    if isinstance(type_, JSON):
        return lambda v: quoted(json.dumps(v, separators=(",", ":"), ensure_ascii=False))
    if isinstance(type_, Boolean):
        return lambda v: "t" if v else "f"
    if isinstance(type_, Date):
        return lambda v: cast(dt.date, v).isoformat()
    # Text and numbers: always quoted, so an empty string stays an empty string and not NULL.
    return lambda v: quoted(str(v))


def _copy(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> None:
    encoders = [_copy_encoder(table.c[name].type) for name in columns]
    buffer = io.StringIO()
    for row in rows:
        buffer.write(
            ",".join("" if value is None else enc(value) for enc, value in zip(encoders, row, strict=True))
        )
        buffer.write("\n")
    buffer.seek(0)
    names = ", ".join(f'"{name}"' for name in columns)
    sql = f'COPY "{table.name}" ({names}) FROM STDIN WITH (FORMAT csv)'
    # The DBAPI connection under this SQLAlchemy connection: same session, same open transaction.
    cursor = cast(Any, connection.connection.cursor())
    try:
        cursor.copy_expert(sql, buffer)
    finally:
        cursor.close()


def bulk_insert(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in the connection's transaction."""
    if not rows:
        return 0
    if connection.dialect.name == "postgresql":
        _copy(connection, table, columns, rows)
    else:
        connection.execute(table.insert(), [dict(zip(columns, row, strict=True)) for row in rows])
    return len(rows)


class BulkWriter:
    """Buffers rows for several tables and writes them in batches, parents before children.

    ``tables`` are given parent first (``staged_pupil`` before its address and FSM rows), because
    foreign keys are checked row by row on both backends. Call :meth:`flush` once at the end.
    """

    def __init__(
        self,
        connection: Connection,
        tables: Iterable[tuple[Table, Sequence[str]]],
        batch_size: int = BATCH_SIZE,
    ) -> None:
        self.connection = connection
        self.batch_size = batch_size
        self._columns = {table: tuple(columns) for table, columns in tables}
        self._buffers: dict[Table, list[Row]] = {table: [] for table in self._columns}
        self._first = next(iter(self._columns))
        self.written: dict[str, int] = {table.name: 0 for table in self._columns}
        self.batches = 0

    def add(self, table: Table, row: Row) -> None:
        self._buffers[table].append(row)
        if table is self._first and len(self._buffers[table]) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row, parent table first."""
        for table, rows in self._buffers.items():
            if rows:
                self.written[table.name] += bulk_insert(self.connection, table, self._columns[table], rows)
                rows.clear()
        self.batches += 1
