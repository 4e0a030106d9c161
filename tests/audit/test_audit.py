"""The audit trail proves itself: the share register and the access log are hash-chained, their heads
kept in the other store and in every share manifest, and `censustrace audit verify` reports a tampered,
deleted or inserted row, newest rows deleted and an old backup restored, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from censustrace.audit.heads import dispose_stores, store_engine
from censustrace.audit.log import lookups_of, os_actor
from censustrace.audit.tables import access_log, share_register_chain
from censustrace.audit.verify import verify_audit
from censustrace.config import Settings
from censustrace.intake.stage import pupil_key
from censustrace.shares.build import manifest_name
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.register import find_share
from censustrace.shares.steps import build_share, check_share, release_share, run_share
from censustrace.shares.tables import disclosures, shares
from censustrace.shares.verify import verify_shares
from censustrace.viewer import auth
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.shares import Census, ingest_census


def kinds(result: dict[str, Any], log: str | None = None) -> set[str]:
    return {p["kind"] for p in result["problems"] if log is None or p["log"] == log}


@contextmanager
def behind_the_triggers(engine: Engine, table: str) -> Iterator[Connection]:
    """A transaction that edits ``table`` as an attacker with the database's keys would: triggers off."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL session_replication_role = replica"))
            yield conn
            return
        saved = conn.execute(
            text("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = :t"), {"t": table}
        ).all()
        for name, _ in saved:
            conn.execute(text(f'DROP TRIGGER "{name}"'))
        yield conn
        for _, sql in saved:
            conn.execute(text(sql))


def upns(settings: Settings, count: int) -> list[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [
            str(u) for (u,) in conn.execute(select(pupil.c.upn).distinct().order_by(pupil.c.upn).limit(count))
        ]


def look_up(settings: Settings, wanted: list[str]) -> None:
    """A subject access from the command line: logged by pupil key with the operating-system user."""
    from censustrace.cli.shares import _log_lookups
    from censustrace.compliance.subject import subject_access

    _log_lookups(settings, wanted, subject_access(wanted, settings))


@pytest.fixture
def filled(sh: Settings, census: Callable[..., Census]) -> Settings:
    """Two delivered shares, a blocked attempt, three lookups and a user: both chains non-empty."""
    ingest_census(sh, census())
    run_share("t-research", sh)
    run_share("t-nursing", sh)
    with pytest.raises(ShareBlocked):
        run_share("t-marketing", sh)
    look_up(sh, upns(sh, 3))
    auth.add_user(store_engine(sh), "alice", "auditor", "a long test password 1")
    return sh


def delivered(settings: Settings) -> list[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [
            str(s)
            for (s,) in conn.execute(
                select(shares.c.share_id).where(shares.c.status == "delivered").order_by(shares.c.id)
            )
        ]


def test_a_clean_trail_verifies_and_manifests_carry_the_heads(filled: Settings) -> None:
    result = verify_audit(filled)
    assert result["ok"], result["problems"]
    assert result["chains"]["share_register"]["rows"] == 3  # 2 delivered + 1 blocked
    # 3 lookups (one row per pupil) + the user added
    assert result["chains"]["access_log"]["rows"] == 4
    _first, second = (find_share(filled, s) for s in delivered(filled))
    manifest = json.loads(
        Path(second.file_path or "").with_name(manifest_name(second.file_name or "")).read_text()
    )
    # Built after the first share was sealed: its manifest remembers that head.
    assert manifest["audit"]["share_register"]["seq"] >= 1
    assert verify_shares(filled)["ok"]
    rows, _ = auth.read_access_log(store_engine(filled), limit=10)
    lookups = [r for r in rows if r["action"] == "subject_access"]
    assert len(lookups) == 3
    assert all(r["user_name"].startswith("os:") and r["via"] == "cli" for r in lookups)
    assert any(r["action"] == "user.add" and r["what"] == "user alice role auditor" for r in rows)


def test_who_looked_this_pupil_up(filled: Settings) -> None:
    upn = upns(filled, 1)[0]
    found = lookups_of(store_engine(filled), pupil_key(filled.pupil_key_secret_value(), upn))
    assert [(r["action"], r["what"], r["via"]) for r in found] == [
        ("subject_access", "disclosures.cli", "cli")
    ]
    with store_engine(filled).connect() as conn:  # the UPN itself is nowhere in the log
        assert upn not in json.dumps(
            [dict(r._mapping) for r in conn.execute(select(access_log))], default=str
        )


def test_a_tampered_register_row_is_found(filled: Settings) -> None:
    share_id = delivered(filled)[0]
    with warehouse_engine(filled.warehouse_db_url).begin() as conn:
        conn.execute(update(shares).where(shares.c.share_id == share_id).values(recipient="Someone Else"))
    result = verify_audit(filled)
    assert not result["ok"]
    assert {(p["kind"], p.get("share_id")) for p in result["problems"]} == {("tampered", share_id)}
    assert [p["code"] for p in verify_shares(filled)["problems"]] == ["CT-AUDIT-TAMPERED"]


def test_deleted_and_inserted_disclosure_rows_are_found(filled: Settings) -> None:
    first, second = delivered(filled)
    engine = warehouse_engine(filled.warehouse_db_url)
    with engine.begin() as conn:
        victim = conn.execute(select(disclosures).where(disclosures.c.share_id == first).limit(1)).one()
        conn.execute(
            delete(disclosures).where(
                disclosures.c.share_id == first, disclosures.c.pupil_key == victim.pupil_key
            )
        )
        other = conn.execute(select(disclosures).where(disclosures.c.share_id == first).limit(1)).one()
        conn.execute(
            insert(disclosures).values({**other._mapping, "share_id": second, "pupil_key": "f" * 64})
        )
    found = {(p["kind"], p.get("share_id")) for p in verify_audit(filled)["problems"]}
    assert found == {("deleted", first), ("inserted", second)}


def test_an_inserted_and_a_deleted_share_are_found(filled: Settings) -> None:
    first = delivered(filled)[0]
    engine = warehouse_engine(filled.warehouse_db_url)
    with engine.begin() as conn:
        row = conn.execute(select(shares).where(shares.c.share_id == first)).one()._mapping
        forged = {k: v for k, v in row.items() if k != "id"} | {"share_id": "shr_forged0000000000000000"}
        conn.execute(insert(shares).values(forged))
    problems = verify_audit(filled)["problems"]
    assert [(p["kind"], p["share_id"], p["row"]) for p in problems] == [
        ("inserted", "shr_forged0000000000000000", None)
    ]
    with engine.begin() as conn:
        conn.execute(delete(disclosures).where(disclosures.c.share_id == first))
        conn.execute(delete(shares).where(shares.c.share_id == first))
    assert ("deleted", first) in {(p["kind"], p.get("share_id")) for p in verify_audit(filled)["problems"]}


def test_access_log_tampering_is_found(filled: Settings) -> None:
    engine = store_engine(filled)
    with behind_the_triggers(engine, "access_log") as conn:
        conn.execute(update(access_log).where(access_log.c.seq == 2).values(user_name="nobody"))
    assert {(p["log"], p["row"], p["kind"]) for p in verify_audit(filled)["problems"]} == {
        ("access_log", 2, "tampered")
    }


def test_a_deleted_middle_log_row_and_an_unchained_row_are_found(filled: Settings) -> None:
    engine = store_engine(filled)
    with behind_the_triggers(engine, "access_log") as conn:
        conn.execute(delete(access_log).where(access_log.c.seq == 2))
        conn.execute(
            insert(access_log).values(
                at="2026-12-01T00:00:00.000000Z",
                user_name="ghost",
                role="compliance",
                action="export",
                what="share_register.csv",
                outcome="ok",
                via="session",
            )
        )
    found = {(p["log"], p["row"], p["kind"]) for p in verify_audit(filled)["problems"]}
    assert ("access_log", 2, "deleted") in found
    assert ("access_log", None, "inserted") in found


def test_deleting_the_newest_rows_is_seen_from_the_other_store(filled: Settings) -> None:
    # The newest access log row and the newest register seal: each chain is consistent on its own.
    with behind_the_triggers(store_engine(filled), "access_log") as conn:
        conn.execute(delete(access_log).where(access_log.c.seq == 4))
    with behind_the_triggers(warehouse_engine(filled.warehouse_db_url), "share_register_chain") as conn:
        conn.execute(delete(share_register_chain).where(share_register_chain.c.seq == 3))
    found = {(p["log"], p["kind"]) for p in verify_audit(filled)["problems"]}
    assert ("access_log", "truncated") in found
    assert ("share_register", "truncated") in found


def test_a_rewritten_tail_is_seen(filled: Settings) -> None:
    """Delete the newest log row and append a different one in its place, correctly chained."""
    engine = store_engine(filled)
    with behind_the_triggers(engine, "access_log") as conn:
        conn.execute(delete(access_log).where(access_log.c.seq == 4))
    from censustrace.audit.log import record_access

    record_access(engine, os_actor(), "export", "share_register.csv")  # seq 4 again, another hash
    assert ("access_log", 4, "rewritten") in {
        (p["log"], p["row"], p["kind"]) for p in verify_audit(filled)["problems"]
    }


def test_postgres_refuses_truncate(filled: Settings) -> None:
    if not filled.warehouse_db_url.startswith("postgresql"):
        # SQLite has no TRUNCATE: DELETE without WHERE is refused by the row triggers instead.
        with pytest.raises(DBAPIError), store_engine(filled).begin() as conn:
            conn.execute(text("DELETE FROM access_log"))
        with pytest.raises(DBAPIError), warehouse_engine(filled.warehouse_db_url).begin() as conn:
            conn.execute(text("DELETE FROM share_register_chain"))
        return
    for engine, table in (
        (store_engine(filled), "access_log"),
        (warehouse_engine(filled.warehouse_db_url), "shares"),
        (warehouse_engine(filled.warehouse_db_url), "disclosures"),
        (warehouse_engine(filled.warehouse_db_url), "share_register_chain"),
    ):
        with pytest.raises(DBAPIError, match="TRUNCATE is refused"), engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {table} CASCADE"))
    assert verify_audit(filled)["ok"]


def test_a_restored_old_backup_is_detected(
    filled: Settings, tmp_path: Path, census: Callable[..., Census]
) -> None:
    from censustrace.ops.backup import backup, restore

    backup(filled, tmp_path / "old")
    look_up(filled, upns(filled, 2))
    third = run_share("t-research", filled)["share_id"]  # its manifest goes to the outbox
    assert verify_audit(filled)["ok"]
    from tests.plugins.helpers.stores import wipe_store

    # As a restore asks: the pipeline and the viewer stopped (no engine of this process keeps the old
    # files open), the stores lost.
    dispose_stores()
    wipe_store(filled.warehouse_db_url)
    wipe_store(filled.lineage_db_url)
    restore(filled, tmp_path / "old")
    result = verify_audit(filled)
    assert not result["ok"]
    found = {(p["log"], p["kind"], p.get("share_id")) for p in result["problems"]}
    # The third share's manifest is in the outbox, its share is not in the restored register; and the
    # manifest saw an access log head (the two lookups) the restored store never had.
    assert ("share_register", "deleted", third) in found
    assert ("access_log", "truncated", None) in found


def test_rekey_keeps_the_chain_valid_and_lookups_findable(filled: Settings) -> None:
    from censustrace.ops.rekey import rekey

    upn = upns(filled, 1)[0]
    new_secret = b"n" * 64
    rekey(filled, new_secret)
    result = verify_audit(filled)
    assert result["ok"], result["problems"]
    engine = store_engine(filled)
    assert len(lookups_of(engine, pupil_key(new_secret, upn))) == 1
    assert lookups_of(engine, pupil_key(filled.pupil_key_secret_value(), upn)) == []
    rows, _ = auth.read_access_log(engine, limit=1)
    assert rows[0]["action"] == "rekey"
    assert rows[0]["seq"] == result["chains"]["access_log"]["head"]["seq"]


def test_two_concurrent_releases_both_complete_and_chain(sh: Settings, census: Callable[..., Census]) -> None:
    ingest_census(sh, census())
    built = []
    for agreement in ("t-research", "t-nursing"):
        share_id = str(check_share(agreement, sh)["share_id"])
        build_share(share_id, sh)
        built.append(share_id)
    errors: list[BaseException] = []

    def release(share_id: str) -> None:
        try:
            release_share(share_id, sh)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=release, args=(s,)) for s in built]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert {find_share(sh, s).status for s in built} == {"delivered"}
    result = verify_audit(sh)
    assert result["ok"], result["problems"]
    assert result["chains"]["share_register"]["head"]["seq"] == 2


def test_audit_verify_command_prints_problems_and_exits_1(
    filled: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from censustrace.cli import app
    from censustrace.config import get_settings

    for key, value in (
        ("CENSUSTRACE_HOME", str(filled.home)),
        ("CENSUSTRACE_WAREHOUSE_URL", filled.warehouse_db_url),
        ("CENSUSTRACE_LINEAGE_URL", filled.lineage_db_url),
        ("CENSUSTRACE_POLICIES_DIR", str(filled.policies_dir)),
    ):
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    try:
        ok = CliRunner().invoke(app, ["audit", "verify", "--json"])
        assert ok.exit_code == 0, ok.output
        assert json.loads(ok.output)["ok"] is True
        share_id = delivered(filled)[0]
        with warehouse_engine(filled.warehouse_db_url).begin() as conn:
            conn.execute(update(shares).where(shares.c.share_id == share_id).values(pupils=1))
        bad = CliRunner().invoke(app, ["audit", "verify", "--json"])
        assert bad.exit_code == 1
        body = json.loads(bad.output)
        assert body["ok"] is False
        assert body["problems"] == [
            {
                "log": "share_register",
                "row": 1,
                "kind": "tampered",
                "message": f"share {share_id}: its register row was changed",
                "share_id": share_id,
            }
        ]
    finally:
        get_settings.cache_clear()
