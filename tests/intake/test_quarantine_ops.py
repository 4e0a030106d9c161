"""Quarantine you can act on, on SQLite and PostgreSQL: list, show, retry (the archived bytes through
today's suites, linked to the original receipt, ordered by original receipt time) and discard."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from censustrace.config import Settings
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.intake.quarantine_ops import (
    DISCARDED,
    OPEN,
    RETRIED,
    RETRYING,
    QuarantineError,
    discard,
    list_quarantined,
    retry,
    show_quarantined,
)
from censustrace.intake.registry import find_extract
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.warehouse.current import current_pupils
from censustrace.warehouse.db import warehouse_engine
from tests.plugins.helpers.warehouse import generated, land

INGEST_KEYS = {"file", "sha256", "extract_id", "status", "supersedes", "rows", "errors"}


def _strict(settings: Settings, tmp_path: Path) -> Settings:
    """The same instance with a suite that tolerates no critical failure (a threshold set too tight)."""
    folder = tmp_path / "strict-expectations"
    shutil.copytree(settings.expectations_dir, folder)
    suite = folder / "suites" / "pupil.json"
    document = json.loads(suite.read_text())
    document["meta"]["censustrace"]["max_critical_share"] = 0.0
    suite.write_text(json.dumps(document))
    return settings.model_copy(update={"expectations_dir": folder})


def _faulty(tmp_path_factory: pytest.TempPathFactory, fmt: str = "xml") -> list[Path]:
    folder, manifest = generated(
        tmp_path_factory, schools=1, pupils_per_school=60, fmt=fmt, seed=8, faults=0.04
    )
    return [folder / str(f["file"]) for f in manifest["files"]]


def _ingest(settings: Settings, paths: list[Path]) -> IngestOutcome:
    return [ingest_file(land(settings, p), settings) for p in paths][-1]


def _current(settings: Settings) -> set[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return {row["extract_id"] for row in current_pupils(conn)}


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_retry_after_a_threshold_fix_loads_and_links_to_the_original(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, fmt: str
) -> None:
    files = _faulty(tmp_path_factory, fmt)
    first = _ingest(_strict(wh, tmp_path), files)
    assert first.status == "quarantined"
    assert "CT-DQ-THRESHOLD" in {e["code"] for e in first.errors}
    original = first.extract_id or ""
    assert [e.head.extract_id for e in list_quarantined(wh)] == [original]

    done = retry(wh, original)  # today's suites: the default 5 % threshold
    assert len(done.outcomes) == len(files)  # one object per file, as ingest --json
    head = done.outcomes[0]
    assert set(head.as_dict()) == INGEST_KEYS
    assert head.status == "loaded", head.errors
    assert head.extract_id == done.extract_id != original
    assert head.rows.loaded + head.rows.rejected == head.rows.read == 60
    assert head.rows.rejected > 0
    assert {o.file for o in done.outcomes} == {p.name for p in files}
    new = find_extract(wh, done.extract_id)
    old = find_extract(wh, original)
    assert (new.retry_of, new.received_at, new.sha256) == (original, old.received_at, old.sha256)
    assert old.status == "quarantined"  # the record of what happened stays
    assert _current(wh) == {done.extract_id}

    entry = show_quarantined(wh, original)
    assert (entry.state, entry.retried_by) == (RETRIED, done.extract_id)
    assert [(a.action, a.result_extract_id) for a in entry.actions] == [("retry", done.extract_id)]
    assert list_quarantined(wh) == []
    assert [e.head.extract_id for e in list_quarantined(wh, include_all=True)] == [original]
    with pytest.raises(QuarantineError) as caught:
        retry(wh, original)
    assert caught.value.code == "CT-QUARANTINE-STATE"


def test_retry_lineage_reads_the_original_receipt(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    first = _ingest(_strict(wh, tmp_path), _faulty(tmp_path_factory))
    done = retry(wh, first.extract_id or "")
    (name, step), *rest = done.steps
    assert name == "retry"
    assert [n for n, _ in rest] == ["stage", "validate", "publish"]
    versions = {
        (re.split(r"[./]", d.name)[-1], d.facets["version"].datasetVersion)  # type: ignore[index,attr-defined]
        for d in step.inputs
    }
    assert (first.sha256, first.sha256) in versions  # the archived bytes at their sha256
    assert ("extracts", first.extract_id) in versions  # the original registry row
    archived = next(d for d in step.inputs if d.name.endswith(first.sha256))
    received = archived.facets["censusExtract"].receivedAt  # type: ignore[index,attr-defined]
    assert received == find_extract(wh, first.extract_id or "").received_at.isoformat()
    ((out_version),) = [d.facets["version"].datasetVersion for d in step.outputs]  # type: ignore[index,attr-defined]
    assert out_version == done.extract_id
    for _, lineage in done.steps:
        assert validate_event(_event(lineage), extra_schemas=schema_documents()) == []


def _event(step: StepLineage) -> dict[str, object]:
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-12-03T10:00:00+00:00",
        run=Run(runId="0192b6c2-5a5e-7d4e-9f1a-6b8c2d3e4f50"),
        job=Job(namespace="censustrace", name="censustrace.quarantine.retry"),
        inputs=step.inputs,
        outputs=step.outputs,
        producer="https://github.com/censustrace/censustrace",
    )
    return dict(json.loads(Serde.to_json(event)))


def test_a_retried_old_file_never_replaces_a_newer_census(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    (source,) = _faulty(tmp_path_factory)
    older = _ingest(_strict(wh, tmp_path), [source])
    assert older.status == "quarantined"
    data = source.read_bytes()
    start, end = data.rindex(b"<PupilOnRoll>"), data.rindex(b"</PupilOnRoll>") + len(b"</PupilOnRoll>")
    newer_file = tmp_path / "newer" / source.name
    newer_file.parent.mkdir()
    newer_file.write_bytes(data[:start] + data[end:])  # the school's corrected resubmission
    newer = _ingest(wh, [newer_file])
    assert newer.status == "loaded"
    done = retry(wh, older.extract_id or "")
    assert done.status == "loaded"
    assert done.outcomes[0].supersedes is None
    assert find_extract(wh, done.extract_id).superseded_by == newer.extract_id
    assert find_extract(wh, newer.extract_id or "").supersedes == done.extract_id
    assert _current(wh) == {newer.extract_id}


def test_discard_is_recorded_with_its_reason_and_closes_the_entry(
    wh: Settings, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (source,) = _faulty(tmp_path_factory)
    cut = tmp_path / source.name
    cut.write_bytes(source.read_bytes()[:-500])
    bad = _ingest(wh, [cut])
    assert bad.status == "quarantined"
    extract_id = bad.extract_id or ""
    with pytest.raises(QuarantineError) as caught:
        discard(wh, extract_id, "  ")
    assert caught.value.code == "CT-QUARANTINE-REASON"
    assert show_quarantined(wh, extract_id).state == OPEN
    entry = discard(wh, extract_id, "school resent the whole file")
    assert entry.state == DISCARDED
    ((action),) = entry.actions
    assert (action.action, action.reason) == ("discard", "school resent the whole file")
    assert list_quarantined(wh) == []
    with pytest.raises(QuarantineError) as caught:
        retry(wh, extract_id)
    assert caught.value.code == "CT-QUARANTINE-STATE"
    assert (wh.quarantine_dir / bad.sha256 / cut.name).read_bytes() == cut.read_bytes()  # bytes kept


def test_a_retry_that_fails_again_is_quarantined_again_and_can_be_retried(
    wh: Settings, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (source,) = _faulty(tmp_path_factory)
    cut = tmp_path / source.name
    cut.write_bytes(source.read_bytes()[:-500])
    bad = _ingest(wh, [cut])
    again = retry(wh, bad.extract_id or "")
    assert again.status == "quarantined"
    assert [e["code"] for e in again.outcomes[0].errors] == ["CT-PARSE-TRUNCATED"]
    assert [e.head.extract_id for e in list_quarantined(wh)] == [again.extract_id]
    assert show_quarantined(wh, again.extract_id).head.retry_of == bad.extract_id


def test_unknown_loaded_and_part_ids_get_stable_codes(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=10, fmt="csv", seed=2)
    outcomes = [ingest_file(land(wh, folder / f["file"]), wh) for f in manifest["files"]]
    loaded = outcomes[-1].extract_id or ""
    for extract_id, code in (("ext_nosuchthing", "CT-QUARANTINE-NOT-FOUND"), (loaded, "CT-QUARANTINE-STATE")):
        with pytest.raises(QuarantineError) as caught:
            retry(wh, extract_id)
        assert caught.value.code == code
    part = next(
        r.extract_id
        for r in (find_extract(wh, f"ext_{o.sha256[:20]}") for o in outcomes)
        if r.part_of is not None
    )
    with pytest.raises(QuarantineError) as caught:
        show_quarantined(wh, part)
    assert caught.value.code == "CT-QUARANTINE-PART"
    assert loaded in caught.value.message


def test_a_retry_cut_short_is_resumed_not_repeated(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from censustrace.intake import quarantine_ops

    first = _ingest(_strict(wh, tmp_path), _faulty(tmp_path_factory))
    original = first.extract_id or ""

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("worker killed")

    monkeypatch.setattr(quarantine_ops, "stage", crash)
    with pytest.raises(RuntimeError):
        retry(wh, original)
    monkeypatch.undo()
    (entry,) = list_quarantined(wh)
    assert entry.state == RETRYING
    attempt = entry.retried_by
    done = retry(wh, original)
    assert done.extract_id == attempt
    assert done.status == "loaded"
    assert [a.action for a in show_quarantined(wh, original).actions] == ["retry"]
    assert show_quarantined(wh, original).state == RETRIED
