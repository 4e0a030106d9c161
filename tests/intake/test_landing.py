"""Landing without races: a receiver claims a file by atomic rename and removes only its own claim; a
same-named upload arriving meanwhile is never lost; ``deliver`` never replaces a file still waiting."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from censustrace.cli import app
from censustrace.config import Settings
from censustrace.intake import ingest as ingest_module
from censustrace.intake import receive as receive_module
from censustrace.intake.archive import archive_path_for
from censustrace.intake.ingest import ingest_file, receive_and_register
from censustrace.intake.landing import (
    CHANGED,
    CLAIM_DIR,
    EXISTS,
    GONE,
    LandingError,
    claim,
    deliver_into,
    pending_files,
)
from censustrace.intake.receive import receive
from censustrace.intake.registry import find_extract
from tests.plugins.helpers.warehouse import generated, land


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.ensure_dirs()
    return settings


def test_a_same_named_upload_during_a_receive_is_kept_and_received_later(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=2, pupils_per_school=8, fmt="xml", seed=3)
    first, second = (folder / f["file"] for f in manifest["files"])
    landed = land(wh, first, "upload.xml")
    real_register = ingest_module.register

    def register_while_a_reupload_lands(*args: Any, **kwargs: Any) -> Any:
        # The school uploads a corrected file under the same name between archiving and clean-up.
        land(wh, second, "upload.xml")
        return real_register(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "register", register_while_a_reupload_lands)
    received = receive_and_register(landed, wh)
    monkeypatch.setattr(ingest_module, "register", real_register)
    assert received.receipt.archived.sha256 == _sha(first.read_bytes())
    assert landed.read_bytes() == second.read_bytes()  # the re-upload is still waiting, untouched
    assert pending_files(wh.landing_dir) == [landed]
    later = ingest_file(landed, wh)
    assert later.status == "loaded"
    assert later.sha256 == _sha(second.read_bytes())
    assert archive_path_for(wh.archive_dir, later.sha256).read_bytes() == second.read_bytes()
    assert not landed.exists()
    assert not (wh.landing_dir / CLAIM_DIR).exists()  # no claim left behind


def test_a_file_changed_while_it_is_archived_is_not_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path)
    landed = settings.landing_dir / "SC_330_4001_AUT_2026.xml"
    landed.write_bytes(b"<Message>first part")
    real_archive = receive_module.archive_file

    def archive_while_a_writer_appends(source: Path, *args: Any, **kwargs: Any) -> Any:
        done = real_archive(source, *args, **kwargs)
        with source.open("ab") as fh:  # an uploader that writes in place, still going
            fh.write(b" and the rest</Message>")
        return done

    monkeypatch.setattr(receive_module, "archive_file", archive_while_a_writer_appends)
    with pytest.raises(LandingError) as caught:
        receive(landed, settings)
    assert caught.value.code == CHANGED
    assert landed.read_bytes() == b"<Message>first part and the rest</Message>"  # given back whole
    assert not (settings.home / "receipts.jsonl").exists()


def test_two_receivers_racing_for_one_file_one_wins(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    landed = settings.landing_dir / "a.xml"
    landed.write_bytes(b"<Message/>")
    taken = claim(landed)
    with pytest.raises(LandingError) as caught:
        claim(settings.landing_dir / "b.xml")
    assert caught.value.code == GONE
    assert taken.path.read_bytes() == b"<Message/>"
    assert taken.name == "a.xml"
    assert not landed.exists()


def test_a_claim_left_by_a_crash_is_listed_again_and_taken_over(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    landed = settings.landing_dir / "crashed.xml"
    landed.write_bytes(b"<Message>bytes</Message>")
    left = claim(landed)  # the receiver crashed after claiming
    assert pending_files(settings.landing_dir) == []  # fresh claims belong to a running receiver
    assert pending_files(settings.landing_dir, stale_after=0) == [left.path]
    # A retry of the same task asks for the landing path: the claim of that name is taken over.
    receipt = receive(landed, settings)
    assert receipt.archived.original_name == "crashed.xml"
    assert receipt.archived.archive_path.read_bytes() == b"<Message>bytes</Message>"
    assert not (settings.landing_dir / CLAIM_DIR).exists()


def test_deliver_never_replaces_a_file_still_waiting(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    old = tmp_path / "one" / "SC_330_4001_AUT_2026.xml"
    new = tmp_path / "two" / "SC_330_4001_AUT_2026.xml"
    old.write_bytes(b"first upload")
    new.write_bytes(b"second upload")
    deliver_into(old, settings.landing_dir)
    with pytest.raises(LandingError) as caught:
        deliver_into(new, settings.landing_dir)
    assert caught.value.code == EXISTS
    assert "SC_330_4001_AUT_2026.xml" in caught.value.message
    assert (settings.landing_dir / old.name).read_bytes() == b"first upload"
    assert [p.name for p in settings.landing_dir.iterdir() if p.is_file()] == [old.name]  # no temp left


def test_cli_deliver_refuses_a_waiting_name_and_delivers_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("CENSUSTRACE_HOME", str(home))
    from censustrace.config import get_settings

    get_settings.cache_clear()
    source = tmp_path / "src"
    source.mkdir()
    (source / "a.xml").write_bytes(b"a")
    (source / "b.xml").write_bytes(b"b")
    (home / "landing").mkdir(parents=True)
    (home / "landing" / "a.xml").write_bytes(b"waiting")
    try:
        result = CliRunner().invoke(app, ["deliver", str(source), "--json"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    out = json.loads(result.stdout)
    assert [Path(p).name for p in out["delivered"]] == ["b.xml"]
    assert [(r["file"], r["code"]) for r in out["refused"]] == [("a.xml", EXISTS)]
    assert (home / "landing" / "a.xml").read_bytes() == b"waiting"


def test_a_receipt_records_the_received_name_not_the_claim(wh: Settings, tmp_path: Path) -> None:
    source = tmp_path / "SC_330_4001_AUT_2026.xml"
    source.write_bytes(b"<Message><Header/></Message>")
    outcome = ingest_file(land(wh, source), wh)
    row = find_extract(wh, outcome.extract_id or "")
    assert row.original_name == "SC_330_4001_AUT_2026.xml"
    receipts = [json.loads(line) for line in (wh.home / "receipts.jsonl").read_text().splitlines()]
    assert receipts[-1]["original_name"] == "SC_330_4001_AUT_2026.xml"


def test_a_failed_registration_gives_the_file_back_to_the_landing_folder(
    wh: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "SC_330_4001_AUT_2026.xml"
    source.write_bytes(b"<Message/>")
    landed = land(wh, source)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("warehouse down")

    monkeypatch.setattr(ingest_module, "register", unreachable)
    with pytest.raises(ConnectionError):
        receive_and_register(landed, wh)
    assert landed.read_bytes() == b"<Message/>"  # waiting again under its own name
    assert not (wh.landing_dir / CLAIM_DIR).exists()
