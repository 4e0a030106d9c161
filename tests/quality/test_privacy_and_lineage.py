"""No pupil data anywhere validation writes or returns (stored results, registry reasons, quarantine
reasons, Data Docs HTML, the outcome, lineage events), and its lineage facets are valid OpenLineage."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

from censustrace.config import Settings
from censustrace.intake.registry import find_extract
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.quality.run import ValidationOutcome, validate_extract
from censustrace.quality.suites import load_suites
from tests.plugins.helpers.privacy import identifiers_in, leaks
from tests.plugins.helpers.warehouse import generated
from tests.quality.helpers import stage_files, stored_results


def _event(step: StepLineage) -> dict[str, Any]:
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="censustrace", name="census_ingest.ingest.validate"),
        inputs=step.inputs,
        outputs=step.outputs,
        producer="https://github.com/censustrace/censustrace",
    )
    body: dict[str, Any] = json.loads(Serde.to_json(event))
    return body


@pytest.fixture
def validated(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Path, dict[str, Any], list[ValidationOutcome]]:
    folder, manifest = generated(
        tmp_path_factory, schools=8, pupils_per_school=60, fmt="csv", seed=9, faults=0.06
    )
    staged = stage_files(wh, folder, manifest)
    outcomes = [validate_extract(extract, wh) for extract in staged.values()]
    return wh, folder, manifest, outcomes


def test_no_pupil_data_in_results_reasons_docs_outcomes_or_lineage(
    validated: tuple[Settings, Path, dict[str, Any], list[ValidationOutcome]],
) -> None:
    settings, folder, manifest, outcomes = validated
    assert {o.status for o in outcomes} >= {"rows_rejected", "quarantined"}
    identifiers = identifiers_in(folder / f["file"] for f in manifest["files"])
    assert identifiers
    stored = [{k: str(v) for k, v in row.items()} for row in stored_results(settings)]
    assert any(row["unexpected_records"] != "None" for row in stored)
    registry = [find_extract(settings, o.extract_id).reasons for o in outcomes]
    quarantine = [p.read_text(encoding="utf-8") for p in settings.quarantine_dir.rglob("reason.json")]
    pages = [p.read_text(encoding="utf-8") for p in settings.data_docs_dir.rglob("*.html")]
    assert len(pages) >= 3 * len(outcomes)
    events = [_event(o.lineage) for o in outcomes]
    documents = [o.as_dict() for o in outcomes] + [list(o.summary) for o in outcomes]
    assert leaks(stored + registry + quarantine + pages + events + documents, identifiers) == []


def test_data_docs_work_offline_and_reference_no_other_site(
    validated: tuple[Settings, Path, dict[str, Any], list[ValidationOutcome]],
) -> None:
    """No CDN: a page may link only within the Data Docs folder (a browser there fetches nothing else)."""
    import re

    settings = validated[0]
    root = settings.data_docs_dir
    pages = list(root.rglob("*.html"))
    assert pages
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert re.findall(r"""(?:src|href)=["']https?://""", text) == [], page
        assert "url(http" not in text.replace("url('http", "url(http").replace('url("http', "url(http")
        (css,) = re.findall(r'<link rel="stylesheet" href="([^"]+)">', text)
        assert (page.parent / css).resolve() == (root / "static" / "censustrace-docs.css").resolve()
        assert (page.parent / css).is_file()


def test_lineage_carries_valid_data_quality_facets_on_the_staging_inputs(
    validated: tuple[Settings, Path, dict[str, Any], list[ValidationOutcome]],
) -> None:
    settings, _, _, outcomes = validated
    suites = load_suites(settings.expectations_dir)
    url = settings.warehouse_db_url
    namespace = "sqlite" if url.startswith("sqlite") else "postgres://127.0.0.1:5432"
    for outcome in outcomes:
        event = _event(outcome.lineage)
        assert validate_event(event, extra_schemas=schema_documents()) == []
        inputs = {i["name"].rsplit(".", 1)[-1]: i for i in event["inputs"]}
        assert set(inputs) == {"staged_pupil", "staged_pupil_address", "staged_fsm_period"}
        assert [o["name"].rsplit(".", 1)[-1] for o in event["outputs"]] == ["validation_result"]
        by_suite = {s.name: s for s in outcome.suites}
        for suite in suites:
            dataset = inputs[suite.table]
            assert dataset["namespace"] == namespace
            assert dataset["facets"]["version"]["datasetVersion"] == outcome.extract_id
            assertions = dataset["inputFacets"]["dataQualityAssertions"]["assertions"]
            assert [a["name"] for a in assertions] == [e.code for e in suite.expectations]
            for assertion, spec in zip(assertions, suite.expectations, strict=True):
                assert assertion["assertion"] == spec.type
                assert assertion["severity"] == {"critical": "error", "warning": "warn"}[spec.severity]
                assert assertion.get("column") == spec.column
            summary = by_suite[suite.name]
            assert [a["success"] for a in assertions] == [e["success"] for e in summary.expectations]
            metrics = dataset["inputFacets"]["dataQualityMetrics"]
            assert metrics["rowCount"] == summary.rows
            assert "parse_rejected" not in metrics["columnMetrics"]
            for column, values in metrics["columnMetrics"].items():
                assert set(values) <= {"nullCount", "distinctCount", "quantiles"}, column
                assert values.get("quantiles", {}) == {}
        pupil_metrics = inputs["staged_pupil"]["inputFacets"]["dataQualityMetrics"]["columnMetrics"]
        assert pupil_metrics["record_number"]["distinctCount"] == by_suite["pupil"].rows
