"""Emitting a step's lineage outside Airflow (the CLI, the share release): one COMPLETE run event,
through the one configured transport (``Settings.openlineage_transport``).

Inside Airflow the OpenLineage provider emits for our operators; these helpers give the same events
when the same use cases run from the command line, so a file ingested by hand is just as traceable.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING, Any, Final

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde

if TYPE_CHECKING:
    from censustrace.config import Settings
    from censustrace.lineage.model import StepLineage

PRODUCER: Final = "https://github.com/censustrace/censustrace"


def run_event(
    settings: Settings,
    job_name: str,
    step: StepLineage,
    *,
    run_id: str | None = None,
    at: dt.datetime | None = None,
) -> str:
    """A COMPLETE run event of ``step`` as JSON."""
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=(at or dt.datetime.now(dt.UTC)).isoformat(),
        run=Run(runId=run_id or str(uuid.uuid4()), facets=dict(step.run_facets)),
        job=Job(namespace=settings.lineage_namespace, name=job_name, facets=dict(step.job_facets)),
        inputs=list(step.inputs),
        outputs=list(step.outputs),
        producer=PRODUCER,
    )
    return str(Serde.to_json(event))


def transport(settings: Settings, *, store: bool = True) -> Any:
    """The configured transport (without the lineage store when ``store`` is False)."""
    from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

    config = dict(settings.openlineage_transport())
    # A command runs for seconds: it drains on its next event and by `lineage flush`, with no
    # background thread to cut off at exit.
    config["drain_interval"] = 0
    if not store:
        config["store_url"] = None
    return CensustraceTransport(CensustraceTransportConfig.from_dict(config))


def emit_step(settings: Settings, job_name: str, step: StepLineage) -> str:
    """Send one step's lineage through the configured transport, as Airflow's provider would (a
    destination that is down gets it later from the outbox). Returns the event's run id."""
    run_id = str(uuid.uuid4())
    transport(settings).emit_json(run_event(settings, job_name, step, run_id=run_id))
    return run_id


__all__ = ["PRODUCER", "emit_step", "run_event", "transport"]
