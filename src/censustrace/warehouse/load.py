"""Bulk loading of rows into warehouse tables, inside the caller's transaction.

Rows are tuples of Python values in column order, as SQLAlchemy would bind them; each value goes
through the column type's own bind processor for the dialect (so it is stored exactly as a Core
``insert()`` would store it), and then:

* SQLite: one ``executemany`` per batch on the DBAPI cursor of the same connection, with positional
  parameters (no per-row dict and no SQLAlchemy statement machinery per row);
* PostgreSQL: ``COPY ... FROM STDIN`` (CSV) through psycopg2's ``copy_expert`` on the same connection.

Either way the rows are part of the caller's transaction and vanish with it on rollback (or when the
process dies before COMMIT).

On SQLite, :class:`AttachedSpool` keeps rows in a temporary database of SQLite's own instead, to be
copied into the real tables in a short transaction: a loader can then do its slow work (parsing) before
taking SQLite's write lock, which is one lock for the whole database.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, Final, cast

from sqlalchemy import Boolean, Column, Connection, Date, Dialect, MetaData, Table
from sqlalchemy.schema import CreateTable
from sqlalchemy.types import TypeEngine

#: Rows per batch: large enough that COPY/executemany overheads vanish, small enough to bound memory.
BATCH_SIZE: Final = 5000

Row = Sequence[Any]
_Processor = Callable[[Any], Any]


# --- values as the database receives them -------------------------------------------------------------


def _bind_processor(type_: TypeEngine[Any], dialect: Dialect) -> tuple[_Processor, type | None] | None:
    """The column type's bind processor for the dialect (None if it has none), and the class of values
    it would store unchanged (they skip the call).

    Shortcuts for the values written by the hundred thousand on SQLite, storing exactly what SQLAlchemy
    stores: a ``DATE`` is ISO text, which ``date.isoformat`` writes in C (SQLAlchemy formats a dict); a
    ``bool`` goes to the sqlite3 module as it is, which binds it as 1/0 (SQLAlchemy's ``int()``)."""
    processor: _Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    if processor is None:
        return None
    if dialect.name == "sqlite":
        if type(type_) is Date:
            return dt.date.isoformat, None
        if type(type_) is Boolean:
            return processor, bool
    return processor, None


class _Encoder:
    """Applies the bind processors of a table's columns to rows (only where a column has one)."""

    def __init__(self, dialect: Dialect, table: Table, columns: Sequence[str]) -> None:
        self.processors: list[tuple[int, _Processor, bool, type | None]] = []
        for at, name in enumerate(columns):
            found = _bind_processor(table.c[name].type, dialect)
            if found is not None:
                processor, unchanged = found
                # Skipping None is only right where the processor keeps it None (JSON may write 'null').
                keeps_none = processor is dt.date.isoformat or processor(None) is None
                self.processors.append((at, processor, keeps_none, unchanged))

    def __call__(self, rows: Iterable[Row]) -> list[Row]:
        if not self.processors:
            return list(rows)
        processors = self.processors
        out: list[Row] = []
        for row in rows:
            values = list(row)
            for at, processor, keeps_none, unchanged in processors:
                value = values[at]
                if value is None:
                    if keeps_none:
                        continue
                elif value.__class__ is unchanged:
                    continue
                values[at] = processor(value)
            out.append(values)
        return out


# --- the two backends -----------------------------------------------------------------------------------


def _qualified(table: Table) -> str:
    return f'"{table.schema}"."{table.name}"' if table.schema else f'"{table.name}"'


def _quoted(value: Any) -> str:
    return '"' + str(value).replace('"', '""') + '"'


class _Inserter:
    """Writes batches of one table's rows on one connection (the backend's fastest way)."""

    def __init__(self, connection: Connection, table: Table, columns: Sequence[str]) -> None:
        self.connection = connection
        self.columns = tuple(columns)
        self.encode = _Encoder(connection.dialect, table, columns)
        # Identifiers from the table definition (checked: every column is the table's), never data.
        names = ", ".join(f'"{table.c[name].name}"' for name in columns)
        if connection.dialect.name == "postgresql":
            self.sql = f"COPY {_qualified(table)} ({names}) FROM STDIN WITH (FORMAT csv)"
        else:
            marks = ", ".join("?" * len(columns))
            self.sql = f"INSERT INTO {_qualified(table)} ({names}) VALUES ({marks})"  # noqa: S608

    def write(self, rows: Sequence[Row]) -> None:
        encoded = self.encode(rows)
        # The DBAPI connection under this SQLAlchemy connection: same session, same open transaction.
        cursor = cast(Any, self.connection.connection.cursor())
        try:
            if self.connection.dialect.name == "postgresql":
                cursor.copy_expert(self.sql, _csv(encoded, len(self.columns)))
            else:
                cursor.executemany(self.sql, encoded)
        finally:
            cursor.close()


def _csv(rows: Iterable[Row], width: int) -> io.StringIO:
    """Rows in COPY's CSV format: NULL is the unquoted empty field, so an empty string must be quoted.

    The csv module writes both as an unquoted empty field, so the (rare) row holding an empty string is
    written by hand with every value quoted. CRLF line ends make the csv module quote any value holding
    a CR as well as an LF (PostgreSQL takes an unquoted CR for the end of the row)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    for row in rows:
        if width > 1 and "" not in row:
            writer.writerow(row)
        else:  # an empty string to keep apart from NULL, or a lone value that could read as "\."
            buffer.write(",".join("" if value is None else _quoted(value) for value in row))
            buffer.write("\r\n")
    buffer.seek(0)
    return buffer


def bulk_insert(connection: Connection, table: Table, columns: Sequence[str], rows: Sequence[Row]) -> int:
    """Insert ``rows`` (tuples in ``columns`` order) into ``table`` in the connection's transaction."""
    if not rows:
        return 0
    _Inserter(connection, table, columns).write(rows)
    return len(rows)


class CopyStream:
    """``COPY table FROM STDIN`` on PostgreSQL, running in a thread while the caller produces its rows.

    The server parses, indexes and stores each chunk while this process builds the next one (on another
    core), instead of after it. The caller writes text in COPY's CSV format (``_csv``'s rules) with
    :meth:`write`; :meth:`close` waits for the server and raises what it refused. Use it inside the
    transaction of ``connection``, and nothing else on that connection until it is closed."""

    _QUEUED: Final = 8  # chunks waiting at most: bounds memory, whatever the number of rows

    def __init__(self, connection: Connection, table: Table, columns: Sequence[str]) -> None:
        import queue
        import threading

        if connection.dialect.name != "postgresql":
            raise ValueError("CopyStream needs PostgreSQL")
        names = ", ".join(f'"{table.c[name].name}"' for name in columns)
        sql = f"COPY {_qualified(table)} ({names}) FROM STDIN WITH (FORMAT csv)"
        self._chunks: queue.Queue[str | BaseException | None] = queue.Queue(self._QUEUED)
        self._error: BaseException | None = None
        self._ended = False  # the end marker (or an abort) has been taken from the queue
        cursor = cast(Any, connection.connection.cursor())

        def copy() -> None:
            try:
                cursor.copy_expert(sql, self, size=1 << 20)
            except BaseException as exc:  # handed to close() in the caller's thread
                self._error = exc
                while not self._ended:  # unblock a writer waiting on a full queue, up to the end
                    item = self._chunks.get()
                    self._ended = item is None or isinstance(item, BaseException)
            finally:
                cursor.close()

        self._thread = threading.Thread(target=copy, name=f"copy-{table.name}", daemon=True)
        self._thread.start()

    def read(self, size: int = -1) -> str:
        """Called by psycopg2 in the COPY thread: the next chunk, "" at the end."""
        chunk = self._chunks.get()
        if chunk is None or isinstance(chunk, BaseException):
            self._ended = True
        if isinstance(chunk, BaseException):
            raise chunk  # psycopg2 ends the COPY with an error: nothing of it is stored
        return chunk or ""

    def write(self, text: str) -> None:
        if self._error is not None:
            self.close()
        self._chunks.put(text)

    def close(self, error: BaseException | None = None) -> None:
        """End the COPY and wait for the server; raise what it refused. With ``error``, abort it instead
        (the caller raises its own error; the server's reply to the abort is not news)."""
        if self._thread.is_alive():
            self._chunks.put(error)
            self._thread.join()
        if self._error is not None and error is None:
            raise self._error


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
        self._inserters = {table: _Inserter(connection, table, columns) for table, columns in tables}
        self._buffers: dict[Table, list[Row]] = {table: [] for table in self._inserters}
        self._first = next(iter(self._inserters))
        self.written: dict[str, int] = {table.name: 0 for table in self._inserters}
        self.batches = 0

    def add(self, table: Table, row: Row) -> None:
        rows = self._buffers[table]
        rows.append(row)
        if table is self._first and len(rows) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Write every buffered row, parent table first."""
        for table, rows in self._buffers.items():
            if rows:
                self._inserters[table].write(rows)
                self.written[table.name] += len(rows)
                rows.clear()
        self.batches += 1


class AttachedSpool:
    """SQLite: rows for several tables kept in a private temporary database attached to one connection,
    then copied into the real tables with one ``INSERT ... SELECT`` per table in a transaction.

    ``ATTACH ''`` makes a database of SQLite's own in a temporary file (not in memory, so memory stays
    bounded whatever the number of rows) that SQLite deletes when it is detached or the connection dies.
    Filling it takes no lock on the warehouse, so a loader can parse before it takes SQLite's write lock
    (one lock for the whole database) and hold that lock only for the copy, which runs inside SQLite.

    The DBAPI connection must be the same from creation to :meth:`close` (an engine with one connection):
    the spool exists on that connection only. ``tables`` are given parent first, with the columns the
    rows hold (as for :class:`BulkWriter`). :meth:`add` rows, :meth:`finish`, then :meth:`copy_into` in
    the transaction, and :meth:`close` after it.
    """

    SCHEMA: Final = "spool"

    def __init__(self, connection: Connection, tables: Iterable[tuple[Table, Sequence[str]]]) -> None:
        if connection.dialect.name != "sqlite":
            raise ValueError("an attached spool is for SQLite only")
        self._raw = cast(Any, connection.connection).driver_connection
        self._layout = tuple((table, tuple(columns)) for table, columns in tables)
        self._twins, ddl = _spool_tables(self._layout, connection.dialect)
        self._raw.execute(f"ATTACH DATABASE '' AS {self.SCHEMA}")
        try:
            for create in ddl:
                self._raw.execute(create)
            self._raw.execute("BEGIN")  # one transaction on the spool only: the warehouse is not touched
            self._writer = BulkWriter(connection, [(self._twins[t], c) for t, c in self._layout])
        except BaseException:
            self.close()
            raise
        self._writer_add = self._writer.add

    def add(self, table: Table, row: Row) -> None:
        self._writer_add(self._twins[table], row)

    def finish(self) -> None:
        """Write the last rows and commit the spool (before the transaction that copies them begins)."""
        self._writer.flush()
        self._raw.execute("COMMIT")

    def copy_into(self, connection: Connection) -> dict[str, int]:
        """Copy every row into the real tables in the connection's open transaction, parents first;
        rows per table."""
        written = {}
        for table, columns in self._layout:
            names = ", ".join(f'"{name}"' for name in columns)
            result = connection.exec_driver_sql(
                f"INSERT INTO main.{_qualified(table)} ({names}) "  # noqa: S608 (names from the table)
                f"SELECT {names} FROM {_qualified(self._twins[table])}"
            )
            written[table.name] = result.rowcount
        return written

    def close(self) -> None:
        """Drop the spool (outside any transaction of the connection)."""
        if self._raw.in_transaction:
            self._raw.execute("ROLLBACK")
        self._raw.execute(f"DETACH DATABASE {self.SCHEMA}")


@lru_cache(maxsize=16)
def _spool_tables(
    layout: tuple[tuple[Table, tuple[str, ...]], ...], dialect: Dialect
) -> tuple[dict[Table, Table], tuple[str, ...]]:
    """The spool's twin of each table and their ``CREATE TABLE`` statements (built once per layout).

    Same names and declared types (so the same column affinities), no keys: rows are checked when they
    reach the real tables."""
    spool = MetaData(schema=AttachedSpool.SCHEMA)
    twins = {
        table: Table(table.name, spool, *(Column(name, table.c[name].type) for name in columns))
        for table, columns in layout
    }
    return twins, tuple(str(CreateTable(twin).compile(dialect=dialect)) for twin in twins.values())
