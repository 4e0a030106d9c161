"""Trace by anything a user holds (share id, outbound file, extract id, received sha256, dataset name with
or without version), back to the received files and forward to the shares; and a home moved to another
folder verifies clean and traces the same. SQLite and PostgreSQL (the ``sh`` fixture)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from censustrace.config import Settings
from censustrace.lineage.store.db import make_engine
from censustrace.lineage.store.ingest import store_event
from censustrace.lineage.store.queries import LineageNotFound
from censustrace.shares.steps import run_share
from censustrace.shares.traceback import LineageAmbiguous, trace_any
from censustrace.shares.verify import verify_shares
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from tests.plugins.helpers.shares import Census, ingest_census


def _trace(settings: Settings, target: str, version: str | None = None) -> dict[str, Any]:
    engine = make_engine(settings.lineage_db_url)
    try:
        return trace_any(settings, engine, target, version)
    finally:
        engine.dispose()


def _shas(result: dict[str, Any]) -> set[str]:
    return {s["sha256"] for s in result["sources"]}


def _shares(result: dict[str, Any]) -> set[str]:
    return {c["share_id"] for c in result["consumers"]}


@pytest.fixture
def shared(sh: Settings, census: Callable[..., Census]) -> tuple[Settings, Census, list[Any], dict[str, Any]]:
    generated = census()
    outcomes = ingest_census(sh, generated)
    sent = run_share("t-research", sh)
    assert sent["status"] == "delivered"
    return sh, generated, outcomes, sent


def test_trace_by_share_file_extract_sha_and_dataset(
    shared: tuple[Settings, Census, list[Any], dict[str, Any]],
) -> None:
    settings, (folder, manifest), outcomes, sent = shared
    received = {f["sha256"] for f in manifest["files"]}
    share_id, outbound = sent["share_id"], Path(sent["file"])

    by_share = _trace(settings, share_id)
    assert by_share["resolved"] == {"kind": "share", "input": share_id, "share_id": share_id}
    assert _shas(by_share) == received
    assert _shares(by_share) == {share_id}
    (consumer,) = by_share["consumers"]
    assert (consumer["recipient"], consumer["agreement"], consumer["sha256"]) == (
        "Test University",
        "t-research",
        sent["sha256"],
    )
    assert set(by_share) >= {"target", "sources", "graph", "consumers"}  # today's keys kept
    # The outbound file, however the user writes its path.
    relative = f"{outbound.parent.name}/{outbound.name}"
    for held in (str(outbound), relative, outbound.name, f"dataset:file:{outbound}@{sent['sha256']}"):
        traced = _trace(settings, held)
        assert traced["target"] == by_share["target"], held
        assert _shas(traced) == received

    # One extract: back to its own file only, forward to the share that used it.
    first = outcomes[0]
    by_extract = _trace(settings, first.extract_id)
    assert by_extract["resolved"]["kind"] == "extract"
    assert _shas(by_extract) == {first.sha256}
    assert _shares(by_extract) == {share_id}
    # Its received file, by sha256 or by a copy of the file the school sent.
    for held in (first.sha256, str(folder / manifest["files"][0]["file"])):
        by_sha = _trace(settings, held)
        assert by_sha["resolved"]["kind"] == "sha256"
        assert _shas(by_sha) == {first.sha256}
        assert _shares(by_sha) == {share_id}
    # A warehouse dataset name, with and without a version.
    url = settings.warehouse_db_url
    pupil = warehouse_dataset_name(url, "pupil")
    at_version = _trace(settings, f"{pupil}@{first.extract_id}")
    assert _shas(at_version) == {first.sha256}
    assert _shares(at_version) == {share_id}
    same = _trace(settings, f"dataset:{warehouse_namespace(url)}:{pupil}", version=first.extract_id)
    assert same["target"] == at_version["target"]
    assert _trace(settings, pupil)["resolved"]["kind"] == "dataset"


def test_unknown_and_ambiguous_inputs_get_stable_codes(
    shared: tuple[Settings, Census, list[Any], dict[str, Any]],
) -> None:
    settings = shared[0]
    with pytest.raises(LineageNotFound) as missing:
        _trace(settings, "shr_000000000000000000000000")
    assert missing.value.code == "CT-LINEAGE-NOT-FOUND"
    engine = make_engine(settings.lineage_db_url)
    try:
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime="2026-11-28T10:00:00.000000Z",
            run=Run(runId=str(generate_new_uuid())),
            job=Job(namespace="elsewhere", name="copy"),
            outputs=[OutputDataset(namespace=ns, name="pupils.csv") for ns in ("sftp://a", "sftp://b")],
            producer="https://example.invalid/censustrace-tests",
        )
        store_event(engine, Serde.to_json(event))
    finally:
        engine.dispose()
    with pytest.raises(LineageAmbiguous) as ambiguous:
        _trace(settings, "pupils.csv")
    assert ambiguous.value.code == "CT-LINEAGE-AMBIGUOUS"
    assert ambiguous.value.exit_code == 2


def test_a_moved_home_verifies_clean_and_traces_the_same(
    shared: tuple[Settings, Census, list[Any], dict[str, Any]], tmp_path: Path
) -> None:
    """A restore to another folder: the home moved whole (its old folder gone), the databases reached at
    their URLs. Shares verify clean and every trace gives the same answer."""
    settings, _census, outcomes, sent = shared
    assert verify_shares(settings)["ok"] is True
    held = [sent["share_id"], outcomes[0].extract_id, outcomes[1].sha256]
    before = {target: _trace(settings, target) for target in held}

    moved = tmp_path / "restored" / "home"
    moved.parent.mkdir()
    shutil.move(settings.home, moved)
    after_move = settings.model_copy(update={"home": moved})
    report = verify_shares(after_move)
    assert report["problems"] == []
    assert report["ok"] is True
    assert report["shares"] == 1
    for target, expected in before.items():
        traced = _trace(after_move, target)
        assert (traced["sources"], traced["consumers"], traced["target"]) == (
            expected["sources"],
            expected["consumers"],
            expected["target"],
        )
    new_path = moved / "shares" / "outbox" / Path(sent["file"]).parent.name / Path(sent["file"]).name
    assert new_path.is_file()
    assert _trace(after_move, str(new_path))["resolved"]["share_id"] == sent["share_id"]
