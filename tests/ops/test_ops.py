"""Operations procedures of docs/operations.md, exercised for real on SQLite and PostgreSQL: backup,
drop, restore and the trace still works; rotating the pupil-key secret keeps past disclosures and
recorded objections findable by UPN."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from censustrace.compliance.subject import subject_access
from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.lineage.store.db import make_engine
from censustrace.lineage.traceback import trace_target
from censustrace.ops.backup import BackupError, backup, restore
from censustrace.ops.rekey import RekeyError, rekey
from censustrace.shares.steps import run_share
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.shares import consent_files, ingest_census
from tests.plugins.helpers.stores import wipe_store
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET


def _pupil_rows(settings: Settings) -> int:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return int(conn.execute(select(func.count()).select_from(pupil)).scalar_one())


def _trace_sources(settings: Settings) -> dict[str, set[str]]:
    """Each loaded extract's version of the pupil table -> the sha256 of the files it traces to."""
    from censustrace.intake.registry import list_extracts

    url = settings.warehouse_db_url
    target = f"dataset:{warehouse_namespace(url)}:{warehouse_dataset_name(url, 'pupil')}"
    engine = make_engine(settings.lineage_db_url)
    try:
        return {
            row.extract_id: {s["sha256"] for s in trace_target(engine, target, row.extract_id)["sources"]}
            for row in list_extracts(settings)
            if row.status == "loaded"
        }
    finally:
        engine.dispose()


def test_backup_drop_restore_and_the_trace_still_works(sh: Settings, census, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ingest_census(sh, census(schools=2, pupils_per_school=20))
    rows, sources = _pupil_rows(sh), _trace_sources(sh)
    assert rows == 40
    assert len(sources) == 2
    assert all(len(files) == 1 for files in sources.values())

    manifest = backup(sh, tmp_path / "backup")
    assert {i["store"] for i in manifest["stores"]} == {"warehouse", "lineage"}
    assert all(i["revision"] for i in manifest["stores"])
    with pytest.raises(BackupError, match="not empty"):
        backup(sh, tmp_path / "backup")

    wipe_store(sh.warehouse_db_url)
    wipe_store(sh.lineage_db_url)
    restore(sh, tmp_path / "backup")
    assert _pupil_rows(sh) == rows
    assert _trace_sources(sh) == sources

    # A damaged dump is refused before anything is touched.
    dump = next(p for p in (tmp_path / "backup").iterdir() if p.name.startswith("warehouse."))
    dump.write_bytes(dump.read_bytes() + b"x")
    with pytest.raises(BackupError, match="sha256"):
        restore(sh, tmp_path / "backup")
    assert _pupil_rows(sh) == rows


def test_rekey_keeps_disclosures_and_objections_findable(sh: Settings, census) -> None:  # type: ignore[no-untyped-def]
    made = census(schools=2, pupils_per_school=40, consents=True)
    ingest_census(sh, made)
    for path in consent_files(made):
        ingest_consent_file(path, sh)
    before = run_share("t-nursing", sh)
    assert before["status"] == "delivered"
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        upns = list(conn.execute(select(pupil.c.upn).order_by(pupil.c.record_number)).scalars())
    found_before = subject_access(upns, sh)

    new_secret = secrets.token_hex(32)
    with pytest.raises(RekeyError, match="current one"):
        rekey(sh, PUPIL_KEY_SECRET.encode())
    result = rekey(sh, new_secret.encode())
    assert result["pupils"] == len(set(upns))
    assert result["rows"]["disclosures"] == before["pupils"]

    rotated = Settings(
        home=sh.home,
        warehouse_url=sh.warehouse_url,
        lineage_url=sh.lineage_url,
        pupil_key_secret=SecretStr(new_secret),
        policies_dir=sh.policies_dir,
    )
    # Every stored key is now the new secret's; the subject access answer is unchanged.
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        for upn, key in conn.execute(select(pupil.c.upn, pupil.c.pupil_key)):
            assert key == hmac.new(new_secret.encode(), upn.encode(), hashlib.sha256).hexdigest()
    assert subject_access(upns, rotated) == found_before
    # Objections recorded under the old key still exclude the same pupils from a new share.
    after = run_share("t-nursing", rotated, run_key="after-rotation")
    assert after["excluded"] == before["excluded"]
    assert after["pupils"] == before["pupils"]
    # The old secret no longer matches anything: a second rotation from it is refused, nothing changed.
    with pytest.raises(RekeyError, match="not made with the current secret"):
        rekey(sh, secrets.token_hex(32).encode())


def test_rekey_rekeys_objections_of_pupils_not_seen_yet(sh: Settings, census, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """An objection sent before its pupil's census is re-keyed from its archived file, so it still
    applies when the pupil appears after the rotation."""
    from censustrace.consent.tables import consent_decisions

    upn = "A330400026001"
    path = tmp_path / "early.csv"
    path.write_text(
        f"upn,purpose,decision,recorded_on,source\r\n{upn},research.approved,objected,2026-01-05,x\r\n"
    )
    assert ingest_consent_file(path, sh).rows_pending == 1
    new_secret = secrets.token_hex(32)
    result = rekey(sh, new_secret.encode())
    assert result["pending_keys"] == 1
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        (key,) = conn.execute(select(consent_decisions.c.pupil_key)).scalars()
    assert key == hmac.new(new_secret.encode(), upn.encode(), hashlib.sha256).hexdigest()
