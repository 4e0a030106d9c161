"""A failed statement's error text carries no pupil data: not the statement's parameters (SQLAlchemy would
print them), not the failing row PostgreSQL names in its DETAIL; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from censustrace.db import make_engine

UPN = "A123456789012"
NAME = "Zebedee"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('dberr') / 'e.db'}"
    return str(request.getfixturevalue("new_postgres_database")())


def test_a_failing_insert_names_the_constraint_but_no_value(url: str) -> None:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "CREATE TABLE t (upn VARCHAR(13) NOT NULL, surname VARCHAR(40), n INTEGER CHECK (n > 0))"
                )
            )
        with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t (upn, surname, n) VALUES (:u, :s, 0)"), {"u": UPN, "s": NAME})
        message = str(raised.value)
        assert "INSERT INTO t" in message  # the statement still says what failed
        assert "check" in message.lower()
        assert UPN not in message
        assert NAME not in message
        with pytest.raises(IntegrityError) as raised, engine.begin() as conn:
            conn.execute(text("INSERT INTO t (upn, surname, n) VALUES (NULL, :s, 1)"), {"s": NAME})
        assert NAME not in str(raised.value)
        assert "upn" in str(raised.value).lower()
    finally:
        engine.dispose()
