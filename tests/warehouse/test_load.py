"""Bulk loading: COPY (PostgreSQL) and executemany (SQLite) keep every value exactly, in the caller's
transaction, and write parents before children."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Connection, select
from sqlalchemy.pool import StaticPool

from censustrace.config import Settings
from censustrace.warehouse.db import make_engine, warehouse_engine, write_transaction
from censustrace.warehouse.load import AttachedSpool, BulkWriter, bulk_insert
from censustrace.warehouse.tables import extracts, staged_fsm_period, staged_pupil, staged_pupil_address

EXTRACT = "ext_0000000000000000test"
TRICKY = ['a "quoted", comma', "line\nbreak", "", "Zoë 日本 \\N", "\\.", "tab\there", " spaces "]


def _register(conn: Connection) -> None:
    conn.execute(
        extracts.insert().values(
            extract_id=EXTRACT,
            sha256="0" * 64,
            size=1,
            original_name="x.xml",
            received_at=dt.datetime(2026, 10, 1, tzinfo=dt.UTC),
            status="received",
            reasons=[],
        )
    )


def _pupil(number: int, text: str | None) -> dict[str, object]:
    return {
        "extract_id": EXTRACT,
        "record_number": number,
        "pupil_key": None,
        "upn": text,
        "surname": text,
        "dob": dt.date(2015, 2, 28) if number % 2 else None,
        "boarder": [True, False, None][number % 3],
        "laestab": "3304001",
        "census_term": "AUT",
        "census_year": 2026,
        "reference_date": dt.date(2026, 10, 1),
        "issues": [{"code": "CT-PARSE-VALUE", "field": "dob", "item": 'a"b'}] if number % 2 else None,
        "reject_codes": None if number % 2 else ["X:y"],
    }


def test_bulk_insert_keeps_every_value(wh: Settings) -> None:
    rows = [_pupil(n, text) for n, text in enumerate([*TRICKY, None], 1)]
    columns = list(rows[0])
    with write_transaction(warehouse_engine(wh.warehouse_db_url)) as conn:
        _register(conn)
        assert bulk_insert(conn, staged_pupil, columns, [tuple(r.values()) for r in rows]) == len(rows)
        got = [dict(r) for r in conn.execute(select(*(staged_pupil.c[c] for c in columns))).mappings()]
    assert sorted(got, key=lambda r: r["record_number"]) == rows  # "" stays "", None stays NULL


def test_rows_vanish_with_the_transaction(wh: Settings) -> None:
    engine = warehouse_engine(wh.warehouse_db_url)
    with write_transaction(engine) as conn:
        _register(conn)

    def insert_then_fail() -> None:
        with write_transaction(engine) as conn:
            bulk_insert(conn, staged_pupil, list(_pupil(1, "x")), [tuple(_pupil(1, "x").values())])
            raise RuntimeError("abort")

    with pytest.raises(RuntimeError):
        insert_then_fail()
    with engine.connect() as conn:
        assert conn.execute(select(staged_pupil)).all() == []


def test_writer_flushes_parents_first_in_batches(wh: Settings) -> None:
    pupil_columns = list(_pupil(1, "x"))
    address_columns = ["extract_id", "record_number", "postcode"]
    fsm_columns = ["extract_id", "record_number", "period_number", "start_date"]
    with write_transaction(warehouse_engine(wh.warehouse_db_url)) as conn:
        _register(conn)
        writer = BulkWriter(
            conn,
            [
                (staged_pupil, pupil_columns),
                (staged_pupil_address, address_columns),
                (staged_fsm_period, fsm_columns),
            ],
            batch_size=3,
        )
        for n in range(1, 8):
            # The child rows are added first: the writer must still write their pupil before them.
            writer.add(staged_pupil_address, (EXTRACT, n, "B1 1AA"))
            writer.add(staged_fsm_period, (EXTRACT, n, 1, dt.date(2026, 1, 1)))
            writer.add(staged_pupil, tuple(_pupil(n, "x").values()))
        writer.flush()
    assert writer.written == {"staged_pupil": 7, "staged_pupil_address": 7, "staged_fsm_period": 7}
    assert writer.batches == 3


def test_carriage_returns_quotes_and_empty_strings_survive(wh: Settings) -> None:
    """COPY's CSV takes a bare CR for the end of a row, and an unquoted empty field for NULL."""
    texts = ["cr\rhere", "crlf\r\nhere", '"', '""', ",", "", " ", "\\", None]
    rows = [_pupil(n, text) for n, text in enumerate(texts, 1)]
    columns = list(rows[0])
    with write_transaction(warehouse_engine(wh.warehouse_db_url)) as conn:
        _register(conn)
        writer = BulkWriter(conn, [(staged_pupil, columns)], batch_size=4)  # three batches
        for row in rows:
            writer.add(staged_pupil, tuple(row.values()))
        writer.flush()
        got = [dict(r) for r in conn.execute(select(*(staged_pupil.c[c] for c in columns))).mappings()]
    assert sorted(got, key=lambda r: r["record_number"]) == rows


def test_attached_spool_copies_every_value_exactly(wh: Settings) -> None:
    """SQLite: rows through the spool (a temporary database) read back as rows written directly."""
    if not wh.warehouse_db_url.startswith("sqlite"):
        pytest.skip("the attached spool is SQLite's")
    rows = [_pupil(n, text) for n, text in enumerate([*TRICKY, None], 1)]
    columns = list(rows[0])
    engine = make_engine(wh.warehouse_db_url, poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            spool = AttachedSpool(
                conn,
                [
                    (staged_pupil, columns),
                    (staged_pupil_address, ["extract_id", "record_number", "postcode"]),
                ],
            )
            for row in rows:
                spool.add(staged_pupil, tuple(row.values()))
                spool.add(staged_pupil_address, (EXTRACT, row["record_number"], row["upn"]))
            spool.finish()
        with write_transaction(engine) as conn:
            _register(conn)
            # Filling the spool took no write lock: the warehouse still has no staged row.
            assert conn.execute(select(staged_pupil)).all() == []
            written = spool.copy_into(conn)
        spool.close()
        with engine.connect() as conn:
            assert [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")] == ["main"]
    finally:
        engine.dispose()
    assert written == {"staged_pupil": len(rows), "staged_pupil_address": len(rows)}
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        got = [dict(r) for r in conn.execute(select(*(staged_pupil.c[c] for c in columns))).mappings()]
        postcodes = dict(
            conn.execute(select(staged_pupil_address.c.record_number, staged_pupil_address.c.postcode)).all()
        )
    assert sorted(got, key=lambda r: r["record_number"]) == rows
    assert postcodes == {r["record_number"]: r["upn"] for r in rows}


def test_spool_rows_vanish_when_it_is_closed_unused(wh: Settings) -> None:
    if not wh.warehouse_db_url.startswith("sqlite"):
        pytest.skip("the attached spool is SQLite's")
    engine = make_engine(wh.warehouse_db_url, poolclass=StaticPool)
    try:
        with engine.connect() as conn:
            spool = AttachedSpool(conn, [(staged_pupil, list(_pupil(1, "x")))])
            spool.add(staged_pupil, tuple(_pupil(1, "x").values()))
            spool.close()  # e.g. the parse failed: nothing was copied anywhere
            assert [r[1] for r in conn.exec_driver_sql("PRAGMA database_list")] == ["main"]
    finally:
        engine.dispose()
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        assert conn.execute(select(staged_pupil)).all() == []
