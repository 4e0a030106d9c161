"""Lineage of a batch of files, written in bulk: each file keeps its own runs (one per step, as the
per-file tasks had), each naming the batch task's run as its parent, and all of a batch's events go
into the lineage store in ONE transaction.

A share still traces to exactly the files behind it: the runs and dataset versions are per file, only
the writing is shared. If the store cannot take the batch now, every event goes to the outbox (retried
before the next event, and by ``censustrace lineage flush``), as with one event at a time; an event the
store refuses as invalid is retried alone, so it cannot keep its batch-mates out. An HTTP destination
(``CENSUSTRACE_LINEAGE_HTTP_URL``) still gets one POST per event.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.generated.parent_run import Job as ParentJob
from openlineage.client.generated.parent_run import ParentRunFacet, Root, RootJob, RootRun
from openlineage.client.generated.parent_run import Run as ParentRun
from openlineage.client.serde import Serde

from censustrace.lineage.emit import PRODUCER

if TYPE_CHECKING:
    from censustrace.config import Settings
    from censustrace.lineage.model import StepLineage

log = logging.getLogger(__name__)
STORE: Final = "store"


@dataclass(frozen=True, slots=True)
class ParentRef:
    """The run that did the work for a batch of files (the Airflow task instance's OpenLineage run)."""

    namespace: str
    job_name: str
    run_id: str
    root_job_name: str | None = None
    root_run_id: str | None = None

    def facet(self) -> ParentRunFacet:
        return ParentRunFacet(
            run=ParentRun(runId=self.run_id),
            job=ParentJob(namespace=self.namespace, name=self.job_name),
            root=Root(
                run=RootRun(runId=self.root_run_id or self.run_id),
                job=RootJob(namespace=self.namespace, name=self.root_job_name or self.job_name),
            ),
        )


def step_event(
    settings: Settings,
    job_name: str,
    step: StepLineage,
    *,
    parent: ParentRef | None = None,
    at: dt.datetime | None = None,
) -> str:
    """One COMPLETE run event (JSON) of one file's step, child of ``parent``."""
    run_facets = dict(step.run_facets)
    if parent is not None:
        run_facets["parent"] = parent.facet()
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=(at or dt.datetime.now(dt.UTC)).isoformat(),
        run=Run(runId=str(uuid.uuid4()), facets=run_facets),
        job=Job(namespace=settings.lineage_namespace, name=job_name, facets=dict(step.job_facets)),
        inputs=list(step.inputs),
        outputs=list(step.outputs),
        producer=PRODUCER,
    )
    return str(Serde.to_json(event))


def parent_events(settings: Settings, parent: ParentRef, *, failed: bool = False) -> list[str]:
    """START and COMPLETE (or FAIL) of a batch run that no orchestrator reports (the CLI's)."""
    now = dt.datetime.now(dt.UTC).isoformat()
    out = []
    for state in (RunState.START, RunState.FAIL if failed else RunState.COMPLETE):
        event = RunEvent(
            eventType=state,
            eventTime=now,
            run=Run(runId=parent.run_id),
            job=Job(namespace=parent.namespace, name=parent.job_name),
            producer=PRODUCER,
        )
        out.append(str(Serde.to_json(event)))
    return out


def emit_bulk(settings: Settings, payloads: Sequence[str]) -> dict[str, int]:
    """Deliver a batch's events: the store in one transaction (outbox if it cannot take them now),
    any HTTP destination one by one through the transport. Counts per outcome."""
    from censustrace.lineage.emit import transport
    from censustrace.lineage.outbox import Outbox
    from censustrace.lineage.store.db import shared_engine
    from censustrace.lineage.store.ingest import store_event, store_events
    from censustrace.lineage.store.parse import LineageEventInvalid

    counts = {"stored": 0, "queued": 0}
    if not payloads:
        return counts
    outbox = Outbox(settings.outbox_dir)
    try:
        engine = shared_engine(settings.lineage_db_url)
        backlog = [e for e in outbox.entries(STORE) if not e.failed]
        if backlog:  # older events first, so the store sees them in order

            def deliver(payload: str) -> None:
                store_event(engine, payload)

            outbox.drain(STORE, deliver, limit=50)
            if any(not e.failed for e in outbox.entries(STORE)):
                raise ConnectionError("older lineage events are still waiting in the outbox")
        try:
            store_events(engine, payloads, validator=_OWN_EVENTS)
            counts["stored"] = len(payloads)
        except LineageEventInvalid:
            for payload in payloads:  # find the refused one; the others go in
                try:
                    store_event(engine, payload)
                    counts["stored"] += 1
                except LineageEventInvalid as exc:
                    outbox.enqueue(STORE, payload, str(exc), failed=True)
                    log.error("lineage event rejected by the store (%s); kept in the outbox", exc)
                    counts["queued"] += 1
    except Exception as exc:
        for payload in payloads[counts["stored"] :]:
            outbox.enqueue(STORE, payload, f"{type(exc).__name__}: {exc}")
        counts["queued"] += len(payloads) - counts["stored"]
        log.error(
            "lineage store unreachable (%s: %s); %d events kept in %s for retry",
            type(exc).__name__,
            exc,
            len(payloads) - counts["stored"],
            settings.outbox_dir,
        )
    if settings.lineage_http_url:
        http = transport(settings, store=False)
        for payload in payloads:
            http.emit_json(payload)
    return counts


class _FirstOfEachJob:
    """Schema-checks the first event of each job per process, and trusts the rest.

    These events are built in this process by the OpenLineage client's typed classes from the same
    code for every file: one of each job shows a shape the schemas refuse (the store then refuses the
    batch and the events are retried one by one, the bad one kept in the outbox). Checking every one
    cost more than storing it (about 10 ms an event, jsonschema). Events arriving through the API are
    still checked one by one; the tests check every stored event against the schemas."""

    def __init__(self) -> None:
        self.checked: set[str] = set()
        self.lock = threading.Lock()

    def validate(self, event: object) -> list[str]:
        from censustrace.lineage.store.parse import _lenient_validator

        job = event.get("job") if isinstance(event, dict) else None
        name = str(job.get("name")) if isinstance(job, dict) else ""
        with self.lock:
            if name in self.checked:
                return []
        validator = _lenient_validator()
        problems = validator.validate(event) if validator is not None else []
        if not problems:
            with self.lock:
                self.checked.add(name)
        return problems


_OWN_EVENTS: Any = _FirstOfEachJob()


def airflow_parent(context: Any, namespace: str) -> ParentRef | None:
    """The OpenLineage run of the running Airflow task instance (what the provider emits for it)."""
    try:
        from airflow.providers.openlineage.plugins.macros import (
            lineage_job_name,
            lineage_root_job_name,
            lineage_root_run_id,
            lineage_run_id,
        )

        ti = context["ti"]
        return ParentRef(
            namespace=namespace,
            job_name=str(lineage_job_name(ti)),
            run_id=str(lineage_run_id(ti)),
            root_job_name=str(lineage_root_job_name(ti)),
            root_run_id=str(lineage_root_run_id(ti)),
        )
    except Exception:  # lineage must not stop the ingest: the files' runs then have no parent
        log.exception("could not work out the task's OpenLineage run; per-file runs get no parent")
        return None


__all__ = ["ParentRef", "airflow_parent", "emit_bulk", "parent_events", "step_event"]
