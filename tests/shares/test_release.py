"""No lineage, no share: the release with the lineage store down, an outbox that cannot be written, a
staged file that changed, and a retry after each, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from censustrace.config import Settings
from censustrace.lineage.store.tables import raw_events
from censustrace.shares.build import staging_dir
from censustrace.shares.errors import ShareError, ShareLineageError, ShareOutboxError
from censustrace.shares.lineage import release_run_id
from censustrace.shares.register import find_share
from censustrace.shares.release import recipient_dir
from censustrace.shares.steps import build_share, check_share, release_share, run_share
from censustrace.shares.tables import disclosures, shares
from censustrace.warehouse.db import warehouse_engine
from tests.plugins.helpers.shares import Census, ingest_census, lineage_engine


def visible(settings: Settings) -> list[Path]:
    """Every file in the share outbox, hidden part files included."""
    root = settings.share_outbox_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def events_of(settings: Settings, share_id: str) -> int:
    engine = lineage_engine(settings)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(raw_events)
                    .where(raw_events.c.run_uuid == release_run_id(share_id))
                ).scalar_one()
            )
    finally:
        engine.dispose()


def built_share(settings: Settings, census: Callable[..., Census]) -> str:
    ingest_census(settings, census(), emit=False)
    share_id = str(check_share("t-research", settings)["share_id"])
    build_share(share_id, settings)
    return share_id


def unreachable_store(settings: Settings, tmp_path: Path) -> str:
    """A real lineage store that cannot be reached: a closed port, or a path under a regular file."""
    if settings.warehouse_db_url.startswith("postgresql"):
        return "postgresql+psycopg2://postgres@127.0.0.1:9/censustrace_nowhere"
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    return f"sqlite:///{blocker}/lineage.db"


def test_lineage_store_down_releases_nothing_and_a_retry_releases_once(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    share_id = built_share(sh, census)
    down = sh.model_copy(update={"lineage_url": unreachable_store(sh, tmp_path)})
    with pytest.raises(ShareLineageError) as caught:
        release_share(share_id, down)
    assert caught.value.code == "CT-SHARE-LINEAGE"
    assert "unreachable" in caught.value.message
    assert "nothing was released" in caught.value.message
    assert visible(sh) == []  # not even a hidden part file left behind
    assert find_share(sh, share_id).status == "built"
    assert events_of(sh, share_id) == 0

    # The CLI's next run resumes the same share; the store is back.
    result = run_share("t-research", sh)
    assert result["share_id"] == share_id
    assert result["status"] == "delivered"
    files = visible(sh)
    assert [p.name for p in files] == sorted(
        [Path(result["file"]).name, Path(result["file"]).stem + ".manifest.json"]
    )
    assert events_of(sh, share_id) == 1
    assert release_share(share_id, sh) == result  # again: nothing new
    assert events_of(sh, share_id) == 1
    assert visible(sh) == files
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        assert conn.execute(select(func.count()).select_from(disclosures)).scalar_one() == result["pupils"]
        assert conn.execute(select(func.count()).select_from(shares)).scalar_one() == 1
    assert not (staging_dir(sh, share_id) / Path(result["file"]).name).exists()  # one copy of the data


def test_an_outbox_that_cannot_be_written_releases_nothing(
    sh: Settings, census: Callable[..., Census]
) -> None:
    share_id = built_share(sh, census)
    blocker = recipient_dir(sh, "Test University")
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the recipient's folder should be")
    with pytest.raises(ShareOutboxError, match="cannot write to the outbox folder") as caught:
        release_share(share_id, sh)
    assert caught.value.code == "CT-SHARE-OUTBOX"
    assert visible(sh) == [blocker]
    assert find_share(sh, share_id).status == "built"
    assert events_of(sh, share_id) == 0  # no lineage of a share that was not released
    blocker.unlink()
    assert release_share(share_id, sh)["status"] == "delivered"
    assert events_of(sh, share_id) == 1


def test_a_changed_staged_file_is_not_released(sh: Settings, census: Callable[..., Census]) -> None:
    share_id = built_share(sh, census)
    share = find_share(sh, share_id)
    staged = staging_dir(sh, share_id) / str(share.file_name)
    staged.write_bytes(staged.read_bytes() + b"extra,row\r\n")
    with pytest.raises(ShareError) as caught:
        release_share(share_id, sh)
    assert caught.value.code == "CT-SHARE-TAMPERED"
    assert visible(sh) == []
    assert events_of(sh, share_id) == 0


def test_a_crash_after_the_file_appeared_is_completed_without_a_second_copy(
    sh: Settings, census: Callable[..., Census]
) -> None:
    share_id = built_share(sh, census)
    result = release_share(share_id, sh)
    # As if the process died between the rename and marking the share delivered.
    with warehouse_engine(sh.warehouse_db_url).begin() as conn:
        conn.execute(
            update(shares).where(shares.c.share_id == share_id).values(status="recorded", delivered_at=None)
        )
    again = release_share(share_id, sh)
    assert again["status"] == "delivered"
    assert again["sha256"] == result["sha256"]
    assert len([p for p in visible(sh) if p.suffix == ".csv"]) == 1
    assert events_of(sh, share_id) == 1


def test_only_a_built_share_is_released(sh: Settings, census: Callable[..., Census]) -> None:
    ingest_census(sh, census(), emit=False)
    share_id = str(check_share("t-research", sh)["share_id"])
    with pytest.raises(ShareError) as caught:
        release_share(share_id, sh)
    assert caught.value.code == "CT-SHARE-STATE"
    with pytest.raises(ShareError) as missing:
        release_share("shr_nosuchshare", sh)
    assert missing.value.code == "CT-SHARE-NOT-FOUND"


def test_a_release_keeps_the_lineage_summary_its_share_page_shows(
    sh: Settings, census: Callable[..., Census]
) -> None:
    from censustrace.lineage.store.queries import find_dataset, find_dataset_version
    from censustrace.lineage.store.tables import upstream_summaries

    share_id = built_share(sh, census)
    release_share(share_id, sh)
    share = find_share(sh, share_id)
    engine = lineage_engine(sh)
    try:
        with engine.connect() as conn:
            dataset_id = find_dataset(conn, "file", str(share.file_path))
            assert dataset_id is not None
            start = find_dataset_version(conn, dataset_id, str(share.sha256))
            kept = conn.execute(
                select(upstream_summaries.c.summary).where(upstream_summaries.c.start_version_id == start)
            ).scalar_one_or_none()
    finally:
        engine.dispose()
    assert kept is not None  # kept by the release, before anyone opened the page
    assert kept["groups"]
