"""The disclosure log of a build: written whole or not at all, once per share however many runs build it,
on SQLite (spooled, one short write) and PostgreSQL (streamed with COPY while the file is written)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import func, select

from censustrace.config import Settings
from censustrace.shares import build
from censustrace.shares.steps import build_share, check_share, release_share
from censustrace.shares.tables import disclosures, shares
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.load import CopyStream
from tests.plugins.helpers.shares import Census, ingest_census


def _logged(settings: Settings, share_id: str) -> tuple[int, str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        count = conn.execute(
            select(func.count()).select_from(disclosures).where(disclosures.c.share_id == share_id)
        ).scalar_one()
        status = conn.execute(select(shares.c.status).where(shares.c.share_id == share_id)).scalar_one()
    return count, status


def test_two_concurrent_builds_of_one_share_record_it_once(
    sh: Settings, census: Callable[..., Census]
) -> None:
    ingest_census(sh, census())
    share_id = check_share("t-research", sh)["share_id"]
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(build_share(share_id, sh))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert results[0] == results[1]
    count, status = _logged(sh, share_id)
    assert status == "built"
    assert count == results[0]["pupils"] > 0
    assert release_share(share_id, sh)["status"] == "delivered"


def test_a_build_that_fails_after_writing_rows_records_nothing_and_can_be_retried(
    sh: Settings, census: Callable[..., Census], monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_census(sh, census())
    share_id = check_share("t-research", sh)["share_id"]

    def disk_full(*args: Any, **kwargs: Any) -> Any:
        raise OSError(28, "No space left on device")

    # Every pupil's disclosure row has been handed to the log when the manifest is written.
    with monkeypatch.context() as patched:
        patched.setattr(build, "_manifest", disk_full)
        with pytest.raises(OSError, match="No space left"):
            build_share(share_id, sh)
    assert _logged(sh, share_id) == (0, "checked")

    built = build_share(share_id, sh)
    assert _logged(sh, share_id) == (built["pupils"], "built")


@pytest.mark.postgres
def test_copy_stream_keeps_nothing_of_a_refused_or_aborted_copy(sh: Settings) -> None:
    if not sh.warehouse_url.startswith("postgresql"):
        pytest.skip("COPY is PostgreSQL's")
    engine = warehouse_engine(sh.warehouse_db_url)
    columns = ("share_id", "pupil_key", "extract_id", "record_number", "blank_fields")

    def copy(keys: list[str], abort: Exception | None = None) -> None:
        with write_transaction(engine) as conn:
            stream = CopyStream(conn, disclosures, columns)
            for key in keys:
                stream.write(f"shr_x,{key},ext_x,1,\n")
            stream.close(abort)
            if abort is not None:
                raise abort

    # The server refuses a duplicate key: close() raises it, and the transaction keeps no row.
    with pytest.raises(Exception, match="duplicate key"):
        copy(["a" * 64] * 3)
    # An abort from the writer's side ends the COPY; the writer's own error is what surfaces.
    with pytest.raises(RuntimeError, match="stopped"):
        copy(["b" * 64], RuntimeError("stopped"))
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(disclosures)).scalar_one() == 0
