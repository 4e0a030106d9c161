"""Fill a CENSUSTRACE_HOME the way the pipeline does: generated census files, ingested by the real use
case, lineage emitted through the real transport into the lineage store (as Airflow's provider does)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import parent_run

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.intake.archive import copy_into
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.lineage.model import StepLineage
from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

PRODUCER = "https://github.com/censustrace/censustrace/tree/main/tests/viewer"


@dataclass
class Filled:
    folder: Path
    manifest: dict[str, Any]
    outcomes: list[IngestOutcome] = field(default_factory=list)
    #: share id by agreement id (the delivered and the blocked one)
    shares: dict[str, str] = field(default_factory=dict)

    @property
    def loaded(self) -> list[IngestOutcome]:
        return [o for o in self.outcomes if o.status == "loaded"]


def transport(settings: Settings) -> CensustraceTransport:
    return CensustraceTransport(CensustraceTransportConfig.from_dict(settings.openlineage_transport()))


def emit_step(
    sink: CensustraceTransport, settings: Settings, job: str, step: StepLineage, parent: str, at: datetime
) -> str:
    run_id = str(uuid.uuid4())
    facets = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent),
            job=parent_run.Job(namespace=settings.lineage_namespace, name="census_ingest"),
        )
    }
    for state, when in ((RunState.START, at), (RunState.COMPLETE, at + timedelta(seconds=1))):
        sink.emit(
            RunEvent(
                eventType=state,
                eventTime=when.isoformat(),
                run=Run(runId=run_id, facets=facets),
                job=Job(namespace=settings.lineage_namespace, name=job),
                inputs=step.inputs,
                outputs=step.outputs,
                producer=PRODUCER,
            )
        )
    return run_id


def fill_home(
    settings: Settings, out: Path, *, schools: int = 3, pupils: int = 8, seed: int = 5, fmt: str = "xml"
) -> Filled:
    """Generate, deliver and ingest a small census; every step's lineage goes into the store."""
    settings.ensure_dirs()
    manifest = generate(
        GeneratorOptions(out=out, schools=schools, pupils_per_school=pupils, seed=seed, fmt=fmt)  # type: ignore[arg-type]
    )
    filled = Filled(out, json.loads(json.dumps(manifest)))
    sink = transport(settings)
    at = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
    dag_run = str(uuid.uuid4())
    for entry in manifest["files"]:
        outcome = ingest_file(copy_into(out / entry["file"], settings.landing_dir), settings)
        filled.outcomes.append(outcome)
        for step, lineage in outcome.steps:
            emit_step(sink, settings, f"census_ingest.ingest.{step}", lineage, dag_run, at)
            at += timedelta(seconds=2)
    return filled


#: A share the demo policy allows (names and addresses to LA admissions) and one it blocks (the Home Office).
ALLOWED = "la330-admissions-2026"
BLOCKED = "home-office-immigration-2026"


def make_shares(settings: Settings) -> dict[str, str]:
    """Run the real share steps against the repository's demo agreements: one delivered, one blocked."""
    from censustrace.shares.steps import ShareBlocked, check_share, run_share

    made = {ALLOWED: str(run_share(ALLOWED, settings)["share_id"])}
    try:
        check_share(BLOCKED, settings)
    except ShareBlocked as blocked:
        made[BLOCKED] = str(blocked.share["share_id"])
    return made
