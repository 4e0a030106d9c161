"""Validation against the official OpenLineage schemas (strict for what we emit, lenient for intake)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    column_lineage_dataset,
    dataset_version_dataset,
    nominal_time_run,
    parent_run,
)
from openlineage.client.serde import Serde

from censustrace.lineage import spec
from censustrace.lineage.spec import (
    EventValidator,
    OpenLineageSpecNotFound,
    normalise_timestamp,
    validate_event,
)
from tests.plugins.helpers.lineage_events import (
    InputField,
    at,
    column_lineage_facet,
    dataset,
    dataset_event,
    facet,
    job_event,
    new_run_id,
    parent_facet,
    run_event,
)

CUSTOM_SCHEMA_ID = "https://censustrace.invalid/spec/facets/1-0-0/PupilCountDatasetFacet.json"
CUSTOM_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": CUSTOM_SCHEMA_ID,
    "$defs": {
        "PupilCountDatasetFacet": {
            "allOf": [
                {"$ref": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetFacet"},
                {"type": "object", "properties": {"pupils": {"type": "integer"}}, "required": ["pupils"]},
            ]
        }
    },
}


def full_event() -> dict[str, Any]:
    """A RunEvent using every standard facet the store reads."""
    return run_event(
        "COMPLETE",
        event_time=at(1, nanos=123456789),
        run_facets={
            "parent": parent_facet(new_run_id(), "censustrace", "census_ingest"),
            "nominalTime": facet(spec_url("NominalTimeRunFacet", "1-0-1"), nominalStartTime=at(0)),
        },
        inputs=[dataset("file", "/landing/a.xml", version="sha256:aa")],
        outputs=[
            dataset(
                "warehouse",
                "pupils",
                version="extract-1",
                facets={
                    "columnLineage": column_lineage_facet(
                        {"upn": [InputField("file", "/landing/a.xml", "UPN")]}
                    )
                },
            )
        ],
    )


def spec_url(name: str, version: str) -> str:
    return f"https://openlineage.io/spec/facets/{version}/{name}.json#/$defs/{name}"


def test_a_full_event_is_valid() -> None:
    assert validate_event(full_event()) == []


def test_dataset_and_job_events_are_valid() -> None:
    assert validate_event(dataset_event(dataset("file", "/a", version="1"))) == []
    assert validate_event(job_event(("ns", "job"), inputs=[dataset("file", "/a")])) == []


def test_events_built_by_the_openlineage_client_are_valid() -> None:
    run_id = new_run_id()
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=at(2),
        run=Run(
            runId=run_id,
            facets={
                "nominalTime": nominal_time_run.NominalTimeRunFacet(nominalStartTime=at(0)),
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=new_run_id()), job=parent_run.Job(namespace="ns", name="dag")
                ),
            },
        ),
        job=Job(namespace="ns", name="dag.task"),
        inputs=[
            InputDataset(
                "file", "/a", facets={"version": dataset_version_dataset.DatasetVersionDatasetFacet("1")}
            )
        ],
        outputs=[
            OutputDataset(
                "warehouse",
                "t",
                facets={
                    "columnLineage": column_lineage_dataset.ColumnLineageDatasetFacet(
                        fields={
                            "x": column_lineage_dataset.Fields(
                                inputFields=[column_lineage_dataset.InputField("file", "/a", "X")]
                            )
                        }
                    )
                },
            )
        ],
        producer="https://github.com/censustrace/censustrace",
    )
    assert validate_event(json.loads(Serde.to_json(event))) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e["run"].pop("runId"), "$.run.runId: required property is missing"),
        (lambda e: e["run"].update(runId="not-a-uuid"), "$.run.runId: not a valid uuid"),
        (lambda e: e.update(eventType="FINISHED"), "$.eventType: 'FINISHED' is not one of"),
        (lambda e: e.update(eventTime=20261128), "$.eventTime: expected string, got number"),
        (lambda e: e.update(eventTime="yesterday"), "$.eventTime: not a valid date-time"),
        (lambda e: e["job"].pop("name"), "$.job.name: required property is missing"),
        (lambda e: e["job"].pop("namespace"), "$.job.namespace: required property is missing"),
        (lambda e: e["run"]["facets"].update(custom="x"), "$.run.facets.custom: expected object, got string"),
        (lambda e: e.update(inputs={}), "$.inputs: expected array, got object"),
        (
            lambda e: e["outputs"][0]["facets"]["version"].pop("datasetVersion"),
            "$.outputs[0].facets.version.datasetVersion: required property is missing",
        ),
        (
            lambda e: e["run"]["facets"]["parent"]["run"].update(runId="42"),
            "$.run.facets.parent.run.runId: not a valid uuid",
        ),
    ],
)
def test_problems_name_their_json_path(mutate: Any, expected: str) -> None:
    event = full_event()
    mutate(event)
    problems = validate_event(event)
    assert any(problem.startswith(expected) for problem in problems), problems


def test_strict_mode_wants_schema_urls_lenient_mode_does_not() -> None:
    event = full_event()
    del event["schemaURL"]
    event["run"]["facets"]["custom"] = facet(None, anything=1)
    strict = validate_event(event)
    assert "$.schemaURL: required property is missing" in strict
    assert "$.run.facets.custom._producer: required property is missing" in strict
    assert spec.default_validator(lenient=True).validate(event) == []


def test_unknown_facets_are_checked_as_base_facets_only() -> None:
    event = full_event()
    event["run"]["facets"]["mine"] = facet("https://example.invalid/Mine.json#/$defs/Mine", anything=[1, 2])
    assert validate_event(event) == []


def test_our_own_facet_schemas_can_be_added() -> None:
    event = full_event()
    url = f"{CUSTOM_SCHEMA_ID}#/$defs/PupilCountDatasetFacet"
    event["outputs"][0]["facets"]["pupilCount"] = facet(url, pupils="many")
    problems = validate_event(event, extra_schemas={CUSTOM_SCHEMA_ID: CUSTOM_SCHEMA})
    assert problems == ["$.outputs[0].facets.pupilCount.pupils: expected integer, got string"]
    event["outputs"][0]["facets"]["pupilCount"]["pupils"] = 30
    assert validate_event(event, extra_schemas={CUSTOM_SCHEMA_ID: CUSTOM_SCHEMA}) == []


def test_facets_found_valid_are_remembered_but_a_changed_body_is_checked_again() -> None:
    url = f"{CUSTOM_SCHEMA_ID}#/$defs/PupilCountDatasetFacet"
    validator = EventValidator(extra_schemas={CUSTOM_SCHEMA_ID: CUSTOM_SCHEMA}, facet_cache_size=2)
    event = full_event()
    event["outputs"][0]["facets"]["pupilCount"] = facet(url, pupils=30)
    assert validator.validate(event) == []
    assert validator.validate(event) == []  # from memory
    wrong = "$.outputs[0].facets.pupilCount.pupils: expected integer, got"
    for bad in ("30", 30.5, True, None):
        event["outputs"][0]["facets"]["pupilCount"]["pupils"] = bad
        [problem] = validator.validate(event)
        assert problem.startswith(wrong)
    # A full cache forgets the oldest bodies and answers the same.
    for pupils in (*range(5), 0):
        event["outputs"][0]["facets"]["pupilCount"]["pupils"] = pupils
        assert validator.validate(event) == []
    event["outputs"][0]["facets"]["pupilCount"]["pupils"] = -1.5
    assert validator.validate(event)[0].startswith(wrong)


def test_a_dataset_event_must_not_carry_a_run_and_job() -> None:
    event = dataset_event(dataset("file", "/a"))
    event["run"] = {"runId": new_run_id()}
    event["job"] = {"namespace": "n", "name": "j"}
    assert validate_event(event) == ["$: must not have all of job, run"]


def test_huge_events_are_refused_before_schema_validation() -> None:
    event = full_event()
    event["run"]["facets"] = {f"f{i}": i for i in range(spec.MAX_PARTS + 1)}
    assert validate_event(event) == [f"$: more than {spec.MAX_PARTS} facets and datasets in one event"]


def test_problems_are_capped() -> None:
    event = full_event()
    event["run"]["facets"] = {f"f{i}": i for i in range(500)}
    problems = validate_event(event)
    assert len(problems) <= spec.MAX_PROBLEMS + 1


def test_a_non_object_is_not_an_event() -> None:
    assert validate_event([1, 2]) == ["$: expected an OpenLineage event object, got array"]  # type: ignore[arg-type]


def test_the_schemas_ship_inside_the_package_with_licence_and_origin() -> None:
    folder = spec.spec_dir()
    package = Path(spec.__file__).resolve().parent / "schemas" / "openlineage"
    assert Path(str(folder)).resolve() == package
    core = json.loads(folder.joinpath("OpenLineage.json").read_text(encoding="utf-8"))
    assert core["$id"] == f"https://openlineage.io/spec/{spec.SPEC_VERSION}/OpenLineage.json"
    notice = folder.joinpath("NOTICE.txt").read_text(encoding="utf-8")
    assert spec.SPEC_VERSION in notice
    assert "github.com/OpenLineage/OpenLineage" in notice
    assert "Apache License" in folder.joinpath("LICENSE.txt").read_text(encoding="utf-8")
    facet_ids = {
        json.loads(p.read_text(encoding="utf-8"))["$id"]
        for p in folder.joinpath("facets").iterdir()
        if p.name.endswith(".json")
    }
    assert "https://openlineage.io/spec/facets/1-2-0/ColumnLineageDatasetFacet.json" in facet_ids
    assert EventValidator(folder).validate(full_event()) == []


def _copied_spec(tmp_path: Path) -> Path:
    import shutil

    target = tmp_path / "openlineage"
    shutil.copytree(str(spec.spec_dir()), target)
    return target


def test_missing_or_unreadable_schemas_raise_not_validate_nothing(tmp_path: Path) -> None:
    folder = _copied_spec(tmp_path)
    (folder / "facets" / "SchemaDatasetFacet.json").write_text("{ not json", encoding="utf-8")
    with pytest.raises(OpenLineageSpecNotFound, match=r"SchemaDatasetFacet\.json: unreadable schema"):
        EventValidator(folder)
    for path in (folder / "facets").iterdir():
        path.unlink()
    with pytest.raises(OpenLineageSpecNotFound, match="no facet schemas"):
        EventValidator(folder)
    (folder / "OpenLineage.json").unlink()
    with pytest.raises(OpenLineageSpecNotFound):
        EventValidator(folder)


def test_an_install_without_schemas_stops_at_start_up(tmp_path: Path) -> None:
    """A copy of the package whose schemas were lost: every face stops with one line, CT-LINEAGE-SPEC."""
    import os
    import shutil
    import subprocess
    import sys

    src = Path(spec.__file__).resolve().parents[2]
    copy = tmp_path / "src"
    shutil.copytree(src, copy, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(copy / "censustrace" / "lineage" / "schemas" / "openlineage")
    env = {**os.environ, "PYTHONPATH": str(copy), "CENSUSTRACE_HOME": str(tmp_path / "home")}
    cli = subprocess.run(
        [sys.executable, "-m", "censustrace.cli", "status"], env=env, capture_output=True, text=True
    )
    assert cli.returncode == 2
    assert cli.stderr.startswith("error CT-LINEAGE-SPEC: ")
    assert "Traceback" not in cli.stderr
    assert len(cli.stderr.strip().splitlines()) == 1
    code = (
        "from censustrace.lineage.store.parse import parse_event\n"
        "from censustrace.lineage.spec import OpenLineageSpecNotFound\n"
        "from censustrace.viewer.lineage_api import create_app\n"
        "for attempt in (lambda: parse_event('{}'), create_app):\n"
        "    try:\n"
        "        attempt()\n"
        "    except OpenLineageSpecNotFound as exc:\n"
        "        print(exc.code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.stdout.split() == ["CT-LINEAGE-SPEC", "CT-LINEAGE-SPEC"], proc.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T10:00:00.123456789Z", "2026-11-28T10:00:00.123456789Z"),
        ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00.000000000Z"),
        ("2026-11-28T11:30:00.5+01:30", "2026-11-28T10:00:00.500000000Z"),
        ("2026-11-28T10:00:00.1234567891234-00:00", "2026-11-28T10:00:00.123456789Z"),
    ],
)
def test_timestamps_normalise_to_utc_nanoseconds(text: str, expected: str) -> None:
    assert normalise_timestamp(text) == expected


def test_timestamps_without_offset_are_utc_only_when_lenient() -> None:
    with pytest.raises(ValueError, match="no UTC offset"):
        normalise_timestamp("2026-11-28T10:00:00")
    assert (
        normalise_timestamp("2026-11-28T10:00:00", require_offset=False) == "2026-11-28T10:00:00.000000000Z"
    )
    with pytest.raises(ValueError, match="not a valid date-time"):
        normalise_timestamp("2026-02-30T10:00:00Z")
