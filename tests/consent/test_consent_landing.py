"""landing/consent/ belongs to census_consent: census_ingest's discovery never reads it, and the
consent step takes each file once (archived, applied, removed from landing), on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from censustrace.config import Settings
from censustrace.consent.landing import consent_landing_dir, take_consent_files
from censustrace.intake.landing import pending_files

CONSENTS = (
    "upn,purpose,decision,recorded_on,source\r\nA123456789012,research.approved,objected,2026-01-05,form\r\n"
)


def test_census_ingest_never_reads_the_consent_folder(sh: Settings) -> None:
    folder = consent_landing_dir(sh)
    folder.mkdir(parents=True)
    (folder / "consents_330_4000_AUT_2026.csv").write_text(CONSENTS)
    assert pending_files(sh.landing_dir) == []


def test_consent_files_are_taken_once_and_kept_pending(sh: Settings) -> None:
    folder = consent_landing_dir(sh)
    folder.mkdir(parents=True)
    path = folder / "consents_330_4000_AUT_2026.csv"
    path.write_text(CONSENTS)
    (folder / ".uploading.csv").write_text(CONSENTS)
    result = take_consent_files(sh)
    assert result["applied"] == 1
    (item,) = result["files"]
    assert item["rows"]["applied"] == 1
    assert item["rows"]["pending"] == 1  # no census for that pupil yet: kept, not dropped
    assert not path.exists()
    assert sorted(p.name for p in folder.iterdir()) == [".uploading.csv"]
    assert take_consent_files(sh)["files"] == []
    assert any(Path(sh.archive_dir).rglob("*"))
