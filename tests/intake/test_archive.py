from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import pytest

from censustrace.config import Settings
from censustrace.intake.archive import ArchiveError, archive_file, verify_archive
from censustrace.intake.landing import pending_files
from censustrace.intake.receive import receive


def test_archive_keeps_exact_bytes_under_sha256_read_only(tmp_path: Path) -> None:
    data = b"<Message>\r\n\xef\xbb\xbf odd bytes \x00\xff</Message>"
    src = tmp_path / "SC.xml"
    src.write_bytes(data)
    result = archive_file(src, tmp_path / "archive")
    sha = hashlib.sha256(data).hexdigest()
    assert result.sha256 == sha
    assert result.size == len(data)
    assert result.archive_path == tmp_path / "archive" / sha[:2] / sha
    assert result.archive_path.read_bytes() == data
    assert not result.archive_path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    assert src.read_bytes() == data  # the source is untouched
    assert not result.already_archived


def test_same_bytes_twice_are_stored_once(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(b"same")
    (tmp_path / "b.xml").write_bytes(b"same")
    first = archive_file(tmp_path / "a.xml", tmp_path / "archive")
    second = archive_file(tmp_path / "b.xml", tmp_path / "archive")
    assert second.already_archived
    assert second.archive_path == first.archive_path
    assert [p for p in (tmp_path / "archive").rglob("*") if p.is_file()] == [first.archive_path]


def test_tampered_archive_entry_is_detected(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_bytes(b"original")
    entry = archive_file(tmp_path / "a.xml", tmp_path / "archive").archive_path
    entry.chmod(0o644)
    entry.write_bytes(b"changed")
    assert verify_archive(tmp_path / "archive") == [entry.name]
    with pytest.raises(ArchiveError, match="does not match"):
        archive_file(tmp_path / "a.xml", tmp_path / "archive")


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match=r"gone\.xml: not a regular file"):
        archive_file(tmp_path / "gone.xml", tmp_path / "archive")


def test_pending_files_skips_partial_uploads_and_other_files(tmp_path: Path) -> None:
    for name in ["b.xml", "a.CSV", ".c.xml.part", "notes.txt", "manifest.json"]:
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.xml").mkdir()
    assert [p.name for p in pending_files(tmp_path)] == ["a.CSV", "b.xml"]


def test_receive_archives_records_receipt_and_clears_landing(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    landed = settings.landing_dir / "SC_330_4001_AUT_2026.xml"
    landed.write_bytes(b"<Message/>")
    receipt = receive(landed, settings)
    assert not landed.exists()
    assert receipt.archived.archive_path.read_bytes() == b"<Message/>"
    (line,) = (settings.home / "receipts.jsonl").read_text().splitlines()
    assert json.loads(line)["original_name"] == landed.name
    (inp,) = receipt.lineage.inputs
    (out,) = receipt.lineage.outputs
    assert inp.name == str(landed.resolve())
    assert inp.facets is not None
    assert out.facets is not None
    assert inp.facets["version"].datasetVersion == receipt.archived.sha256
    assert out.facets["version"].datasetVersion == receipt.archived.sha256
