"""Lineage of shares: events valid against the OpenLineage spec (and our facet schemas) with no pupil
data, column lineage with the transformations, and trace-back to the exact received files, also after
the school resubmitted its census."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.lineage.emit import run_event
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.lineage.store.ingest import export_raw_events
from censustrace.lineage.traceback import trace_target
from censustrace.shares.build import staging_dir
from censustrace.shares.register import find_share
from censustrace.shares.steps import build_share, check_share, release_share, run_share
from tests.plugins.helpers.privacy import identifiers_in, leaks
from tests.plugins.helpers.shares import Census, consent_files, ingest_census, lineage_engine


def stored_events(settings: Settings) -> list[dict[str, Any]]:
    engine = lineage_engine(settings)
    try:
        return [json.loads(text) for text in export_raw_events(engine)]
    finally:
        engine.dispose()


def trace(settings: Settings, result: dict[str, Any]) -> dict[str, Any]:
    engine = lineage_engine(settings)
    try:
        return trace_target(engine, f"dataset:file:{result['file']}@{result['sha256']}")
    finally:
        engine.dispose()


def test_share_events_are_valid_and_carry_no_pupil_data(sh: Settings, census: Callable[..., Census]) -> None:
    generated = census(consents=True)
    folder, manifest = generated
    ingest_census(sh, generated)
    for path in consent_files(generated):
        ingest_consent_file(path, sh)
    steps = [StepLineage() for _ in range(3)]
    checked = check_share("t-nursing", sh, lineage=steps[0])
    build_share(checked["share_id"], sh, lineage=steps[1])
    result = release_share(checked["share_id"], sh, lineage=steps[2])
    events = [
        json.loads(run_event(sh, f"census_share__t-nursing.{n}", s))
        for n, s in zip("cbr", steps, strict=True)
    ]
    release_events = [e for e in stored_events(sh) if e["job"]["name"] == "census_share__t-nursing.release"]
    assert len(release_events) == 1
    for event in [*events, *release_events]:
        assert validate_event(event, extra_schemas=schema_documents()) == []
    identifiers = identifiers_in([folder / f["file"] for f in manifest["files"]] + consent_files(generated))
    assert identifiers
    out = Path(result["file"])
    share_manifest = json.loads(out.with_name(out.stem + ".manifest.json").read_text())
    assert leaks([*events, *release_events, result, share_manifest], identifiers) == []
    # The file itself does carry them: the check above would have seen them.
    assert leaks([out.read_text(encoding="utf-8")], identifiers)


def test_column_lineage_and_share_facets(sh: Settings, census: Callable[..., Census]) -> None:
    generated = census(consents=True)
    ingest_census(sh, generated)
    for path in consent_files(generated):
        ingest_consent_file(path, sh)
    result = run_share("t-research", sh)
    (event,) = [e for e in stored_events(sh) if e["job"]["name"] == "census_share__t-research.release"]
    (output,) = event["outputs"]
    assert (output["namespace"], output["name"]) == ("file", result["file"])
    assert output["facets"]["version"]["datasetVersion"] == result["sha256"]
    columns = output["facets"]["columnLineage"]["fields"]
    assert set(columns) == set(result["fields"])
    upn = columns["upn"]["inputFields"][0]
    assert upn["name"].endswith(".pupil")
    assert upn["field"] == "upn"
    assert upn["transformations"][0]["masking"] is True
    assert upn["transformations"][0]["subtype"] == "TRANSFORMATION"
    postcode = columns["postcode"]["inputFields"][0]
    assert postcode["name"].endswith(".pupil_address")
    assert "outward code" in postcode["transformations"][0]["description"]
    assert "refused" in columns["ethnicity"]["inputFields"][0]["transformations"][0]["description"]
    assert columns["nc_year"]["inputFields"][0]["transformations"][0]["subtype"] == "IDENTITY"
    filters = {
        (f["name"].rsplit(".", 1)[-1], f["field"]) for f in output["facets"]["columnLineage"]["dataset"]
    }
    assert ("consent_decisions", "decision") in filters
    share = output["facets"]["censusShare"]
    assert (share["shareId"], share["agreementId"], share["pupilCount"]) == (
        result["share_id"],
        "t-research",
        result["pupils"],
    )
    assert share["approvalReference"] == "DS09999"
    assert share["lawfulBasis"] == "public_task"
    assert share["excluded"] == result["excluded"]
    assert share["flags"] == result["flags"]
    consent = output["facets"]["consentCheck"]
    assert consent["coveringPurposes"] == ["research.approved"]
    assert consent["excluded"] == result["excluded"]
    # Inputs: the exact warehouse versions, i.e. the extract ids and consent file ids used.
    versions = {
        (i["name"].rsplit(".", 1)[-1], i["facets"]["version"]["datasetVersion"]) for i in event["inputs"]
    }
    row = find_share(sh, result["share_id"])
    assert {v for t, v in versions if t == "pupil"} == set(row.source_extracts or ())
    assert {v for t, v in versions if t == "consent_decisions"} == set(row.consent_files or ())
    assert row.consent_files


def test_a_share_made_before_a_resubmission_traces_to_the_old_file(
    sh: Settings, census: Callable[..., Census]
) -> None:
    first = census(schools=1, seed=31)
    second = census(schools=1, seed=32)  # the same school sends its census again, new bytes
    assert first[1]["files"][0]["file"] == second[1]["files"][0]["file"]
    old_sha, new_sha = first[1]["files"][0]["sha256"], second[1]["files"][0]["sha256"]
    assert old_sha != new_sha
    ingest_census(sh, first)
    before = run_share("t-research", sh)
    ingest_census(sh, second)
    after = run_share("t-research", sh)

    old_trace, new_trace = trace(sh, before), trace(sh, after)
    assert [(s["sha256"], s["original_name"]) for s in old_trace["sources"]] == [
        (old_sha, first[1]["files"][0]["file"])
    ]
    assert [s["sha256"] for s in new_trace["sources"]] == [new_sha]
    assert old_trace["sources"][0]["path"] == new_trace["sources"][0]["path"]  # same landing name


def test_staged_and_released_names_follow_the_naming_conventions(
    sh: Settings, census: Callable[..., Census]
) -> None:
    ingest_census(sh, census(), emit=False)
    step = StepLineage()
    checked = check_share("t-research", sh)
    build_share(checked["share_id"], sh, lineage=step)
    staged = [o for o in step.outputs if o.namespace == "file"]
    assert [o.name for o in staged] == [
        str(
            staging_dir(sh, checked["share_id"]).resolve()
            / str(find_share(sh, checked["share_id"]).file_name)
        )
    ]
    assert {o.name.rsplit(".", 1)[-1] for o in step.outputs if o.namespace != "file"} == {"disclosures"}
