"""Typed factories for OpenLineage events as plain JSON dicts (what arrives over HTTP)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

Json = dict[str, Any]

PRODUCER = "https://github.com/censustrace/censustrace/tree/main/tests"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
FACETS = "https://openlineage.io/spec/facets"
VERSION_FACET = f"{FACETS}/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
COLUMN_LINEAGE_FACET = f"{FACETS}/1-2-0/ColumnLineageDatasetFacet.json#/$defs/ColumnLineageDatasetFacet"
PARENT_FACET = f"{FACETS}/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
NOMINAL_TIME_FACET = f"{FACETS}/1-0-1/NominalTimeRunFacet.json#/$defs/NominalTimeRunFacet"
_BASE_TIME = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


def unique(prefix: str) -> str:
    """A name no other test uses (tests share one database per backend)."""
    return f"{prefix}-{secrets.token_hex(4)}"


def new_run_id() -> str:
    return str(uuid.uuid4())


def at(seconds: float = 0, *, nanos: int = 0) -> str:
    """A timestamp ``seconds`` after a fixed base, with an optional nanosecond part."""
    moment = _BASE_TIME + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def facet(schema_url: str | None = None, **fields: Any) -> Json:
    """A facet; ``schema_url=None`` leaves out ``_schemaURL`` (and ``_producer``) as lax producers do."""
    base: Json = {"_producer": PRODUCER, "_schemaURL": schema_url} if schema_url else {}
    return {**base, **fields}


def version_facet(version: str) -> Json:
    return facet(VERSION_FACET, datasetVersion=version)


@dataclass(frozen=True)
class InputField:
    namespace: str
    name: str
    field: str
    type: str = "DIRECT"
    subtype: str = "IDENTITY"
    masking: bool = False


def column_lineage_facet(fields: Mapping[str, Sequence[InputField]]) -> Json:
    return facet(
        COLUMN_LINEAGE_FACET,
        fields={
            output: {
                "inputFields": [
                    {
                        "namespace": source.namespace,
                        "name": source.name,
                        "field": source.field,
                        "transformations": [
                            {"type": source.type, "subtype": source.subtype, "masking": source.masking}
                        ],
                    }
                    for source in sources
                ]
            }
            for output, sources in fields.items()
        },
    )


def dataset(
    namespace: str, name: str, *, version: str | None = None, facets: Mapping[str, Json] | None = None
) -> Json:
    all_facets = dict(facets or {})
    if version is not None:
        all_facets["version"] = version_facet(version)
    return {"namespace": namespace, "name": name, "facets": all_facets}


def parent_facet(run_id: str, namespace: str, name: str) -> Json:
    return facet(PARENT_FACET, run={"runId": run_id}, job={"namespace": namespace, "name": name})


def run_event(
    event_type: str = "COMPLETE",
    *,
    run_id: str | None = None,
    job: tuple[str, str] = ("censustrace", "job"),
    inputs: Sequence[Json] = (),
    outputs: Sequence[Json] = (),
    event_time: str | None = None,
    run_facets: Mapping[str, Json] | None = None,
    job_facets: Mapping[str, Json] | None = None,
) -> Json:
    return {
        "eventType": event_type,
        "eventTime": event_time or at(),
        "producer": PRODUCER,
        "schemaURL": f"{CORE}#/$defs/RunEvent",
        "run": {"runId": run_id or new_run_id(), "facets": dict(run_facets or {})},
        "job": {"namespace": job[0], "name": job[1], "facets": dict(job_facets or {})},
        "inputs": list(inputs),
        "outputs": list(outputs),
    }


def dataset_event(ds: Json, *, event_time: str | None = None) -> Json:
    return {
        "eventTime": event_time or at(),
        "producer": PRODUCER,
        "schemaURL": f"{CORE}#/$defs/DatasetEvent",
        "dataset": ds,
    }


def job_event(
    job: tuple[str, str],
    *,
    inputs: Sequence[Json] = (),
    outputs: Sequence[Json] = (),
    event_time: str | None = None,
) -> Json:
    return {
        "eventTime": event_time or at(),
        "producer": PRODUCER,
        "schemaURL": f"{CORE}#/$defs/JobEvent",
        "job": {"namespace": job[0], "name": job[1], "facets": {}},
        "inputs": list(inputs),
        "outputs": list(outputs),
    }
