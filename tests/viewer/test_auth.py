"""The security core on both databases: passwords, login limits, sessions, tokens, the access log."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.exc import DBAPIError

from censustrace.audit.tables import access_log
from censustrace.lineage.store.db import current_revision, make_engine, upgrade
from censustrace.viewer import auth
from censustrace.viewer import db as viewer_db
from censustrace.viewer.tables import api_tokens, sessions, users

PASSWORD = "correct horse battery staple"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A freshly migrated lineage store (with the viewer's tables), SQLite or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('auth') / 'lineage.db'}"
    else:
        url = request.getfixturevalue("new_postgres_database")()
    upgrade(url)
    viewer_db.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


def test_store_is_at_the_viewer_revision(store: Engine) -> None:
    assert current_revision(store) == "0007"
    assert viewer_db.current_revision(store) == "0001"


def test_passwords_are_argon2_hashed_and_names_unique(store: Engine) -> None:
    auth.add_user(store, "clara", "compliance", PASSWORD)
    with store.connect() as conn:
        stored = conn.execute(select(users.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    with pytest.raises(auth.AuthError) as taken:
        auth.add_user(store, "CLARA", "auditor", PASSWORD)
    assert taken.value.code == "CT-VIEWER-USER-EXISTS"
    with pytest.raises(auth.AuthError, match="role"):
        auth.add_user(store, "x", "admin", PASSWORD)
    with pytest.raises(auth.AuthError, match="at least 12"):
        auth.add_user(store, "y", "auditor", "short")
    with pytest.raises(auth.AuthError, match="user and token names"):
        auth.add_user(store, "<script>", "auditor", PASSWORD)


def test_wrong_password_and_unknown_user_get_the_same_answer(store: Engine) -> None:
    auth.add_user(store, "clara", "compliance", PASSWORD)
    with pytest.raises(auth.LoginRefused) as wrong:
        auth.login(store, "clara", "not the password", "10.0.0.1")
    with pytest.raises(auth.LoginRefused) as unknown:
        auth.login(store, "nobody", PASSWORD, "10.0.0.1")
    assert wrong.value.message == unknown.value.message == auth.WRONG_LOGIN
    token, principal = auth.login(store, " Clara ", PASSWORD, "10.0.0.1")
    assert (principal.name, principal.role, principal.via) == ("clara", "compliance", "session")
    with store.connect() as conn:
        assert conn.execute(select(sessions.c.token_hash)).scalar_one() == auth.token_hash(token)


def test_logins_are_rate_limited_per_name_even_with_the_right_password(store: Engine) -> None:
    auth.add_user(store, "clara", "compliance", PASSWORD)
    for _ in range(auth.MAX_FAILURES_PER_NAME):
        with pytest.raises(auth.LoginRefused) as refused:
            auth.login(store, "clara", "guess", "10.0.0.2")
        assert not refused.value.rate_limited
    with pytest.raises(auth.LoginRefused) as limited:
        auth.login(store, "clara", PASSWORD, "10.0.0.3")
    assert limited.value.rate_limited
    assert limited.value.message == auth.TOO_MANY
    # An unknown name is limited the same way, so the limit tells nothing about who exists.
    for _ in range(auth.MAX_FAILURES_PER_NAME):
        with pytest.raises(auth.LoginRefused):
            auth.login(store, "ghost", "guess", "10.0.0.4")
    with pytest.raises(auth.LoginRefused) as ghost:
        auth.login(store, "ghost", "guess", "10.0.0.4")
    assert ghost.value.rate_limited


def test_sessions_expire_when_idle_and_end_at_logout(store: Engine) -> None:
    auth.add_user(store, "clara", "compliance", PASSWORD)
    token, principal = auth.login(store, "clara", PASSWORD, "c")
    idle = timedelta(minutes=30)
    assert auth.check_session(store, token, idle).principal == principal
    old = auth.stamp(auth.now() - timedelta(minutes=31))
    with store.begin() as conn:
        conn.execute(update(sessions).values(last_seen_at=old))
    check = auth.check_session(store, token, idle)
    assert check.principal is None
    assert check.expired
    assert auth.check_session(store, token, idle).expired is False  # deleted: just unknown now
    token, principal = auth.login(store, "clara", PASSWORD, "c")
    assert principal.session_id is not None
    auth.logout(store, principal.session_id)
    assert auth.check_session(store, token, idle).principal is None


def test_tokens_are_hashed_typed_and_revocable(store: Engine) -> None:
    auth.add_user(store, "ed", "engineer", PASSWORD)
    producer = auth.add_token(store, "airflow", "producer")
    api = auth.add_token(store, "ed", "api")
    with store.connect() as conn:
        hashes = set(conn.execute(select(api_tokens.c.token_hash)).scalars())
    assert hashes == {auth.token_hash(producer), auth.token_hash(api)}
    assert auth.check_token(store, producer) == auth.Principal("airflow", None, "producer")
    found = auth.check_token(store, api)
    assert found is not None
    assert (found.name, found.role, found.via) == ("ed", "engineer", "token")
    assert auth.check_token(store, api + "x") is None
    with pytest.raises(auth.AuthError, match="no user"):
        auth.add_token(store, "nobody", "api")
    assert auth.revoke_token(store, api[:12]) == 1
    assert auth.check_token(store, api) is None


def test_the_access_log_is_append_only(store: Engine) -> None:
    who = auth.Principal("clara", "compliance", "session")
    auth.log_access(store, who, "subject_access", "subject_access.lookup", result_count=2)
    rows, total = auth.read_access_log(store)
    assert total == 1
    assert rows[0]["result_count"] == 2
    assert rows[0]["user_name"] == "clara"
    for statement in (update(access_log).values(result_count=0), delete(access_log)):
        with pytest.raises(DBAPIError, match="append-only"), store.begin() as conn:
            conn.execute(statement)
    with store.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM access_log")).scalar_one() == 1


def test_a_revoked_producer_token_is_refused(store: Engine) -> None:
    producer = auth.add_token(store, "airflow", "producer")
    assert auth.check_token(store, producer) == auth.Principal("airflow", None, "producer")
    assert auth.check_token(store, producer) is not None  # the intake's short memory of valid producers
    assert auth.revoke_token(store, producer[:12]) == 1
    assert auth.check_token(store, producer) is None
