"""Storing OpenLineage events: check them, keep the exact text, index them in the normalised tables.

One transaction per event (or per batch in :func:`store_events`): an event is stored whole or not at all.

* Dedupe: the sha256 of the canonical JSON (sorted keys, no whitespace) is unique, so an event sent
  twice (a client retry) is stored once; the text kept is the first one received.
* Out of order: a run's state only moves forward (START < RUNNING < COMPLETE/FAIL/ABORT; between two
  terminal states the later event time wins); times merge as min/max; facets are kept per event and
  merged in event-time order when read.
* Versions: an input or output's version is ``facets.version.datasetVersion`` when given. Otherwise one is
  derived per (run, direction, dataset), recorded with ``version_source = "derived"``, and replaced by
  the real one if another event of the same run names it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, Literal, TypeVar

from sqlalchemy import Engine, Table, and_, delete, insert, select, update
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from censustrace.errors import CensustraceError
from censustrace.lineage.spec import (
    EventValidator,
    OpenLineageSpecNotFound,
    default_validator,
    event_kind,
    finite_json_loads,
    is_uuid,
    json_path,
    normalise_timestamp,
)
from censustrace.lineage.store.db import write_transaction
from censustrace.lineage.store.tables import (
    MAX_NAME_BYTES,
    column_lineage,
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    jobs,
    namespaces,
    raw_events,
    run_dataset_versions,
    runs,
)

log = logging.getLogger(__name__)

Json = dict[str, Any]
JsonPath = tuple[str | int, ...]
EventKind = Literal["run", "dataset", "job"]
Raw = bytes | str | Mapping[str, Any]
T = TypeVar("T")

RUN_STATES: Final = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_STATE_RANK: Final = {"OTHER": 0, "START": 1, "RUNNING": 2, "COMPLETE": 3, "ABORT": 3, "FAIL": 3}
_TERMINAL: Final = frozenset({"COMPLETE", "ABORT", "FAIL"})
_KINDS: Final[dict[str, EventKind]] = {"RunEvent": "run", "DatasetEvent": "dataset", "JobEvent": "job"}
# Derived versions are uuid5 names under this namespace: the same (run, direction, dataset) always
# derives the same version, so START and COMPLETE of one run agree.
_DERIVED_VERSION_NS: Final = uuid.UUID("5d0f6c1e-8f4b-5b7e-9a51-63656e737573")
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})  # serialization failure, deadlock


class LineageEventInvalid(CensustraceError):
    """An event that is not a valid OpenLineage event; ``problems`` name each JSON path at fault."""

    code = "CT-LINEAGE-INVALID"

    def __init__(self, problems: Sequence[str], *, code: str | None = None) -> None:
        self.problems = list(problems)
        shown = "; ".join(self.problems[:10])
        more = f" (and {len(self.problems) - 10} more)" if len(self.problems) > 10 else ""
        super().__init__(f"invalid OpenLineage event: {shown}{more}", code=code)


class LineageEventMalformed(LineageEventInvalid):
    """The body is not JSON (or not UTF-8) at all."""

    code = "CT-LINEAGE-MALFORMED"


class LineageConflict(CensustraceError):
    """A valid event that contradicts what the store already holds (a run id reused for another job)."""

    code = "CT-LINEAGE-CONFLICT"


@dataclass(frozen=True)
class StoreResult:
    """``stored``: this call added the event; ``duplicate``: the same event was already stored."""

    stored: bool
    duplicate: bool
    kind: EventKind
    run_id: str | None = None


# Parsed events ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnDependency:
    """One output field (None: the whole dataset) depending on one input field."""

    output_field: str | None
    namespace: str
    name: str
    field: str
    transformation_type: str | None = None
    transformation_subtype: str | None = None
    transformation_description: str | None = None
    masking: bool | None = None

    def row_hash(self) -> str:
        content = [
            self.output_field,
            self.namespace,
            self.name,
            self.field,
            self.transformation_type,
            self.transformation_subtype,
            self.transformation_description,
            self.masking,
        ]
        return hashlib.sha256(json.dumps(content, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True)
class DatasetRef:
    namespace: str
    name: str
    facets: Mapping[str, Json]
    io_facets: Mapping[str, Json] = field(default_factory=dict)
    version: str | None = None
    column_lineage: Sequence[ColumnDependency] = ()


@dataclass(frozen=True)
class ParsedEvent:
    """The parts of an event the normalised tables index; the whole event stays in ``text``."""

    text: str
    event_hash: str
    kind: EventKind
    event_type: str | None
    event_time: str
    run_id: str | None = None
    run_facets: Mapping[str, Json] = field(default_factory=dict)
    job: tuple[str, str] | None = None
    job_facets: Mapping[str, Json] = field(default_factory=dict)
    parent_run_id: str | None = None
    parent_job: tuple[str, str] | None = None
    nominal_start_time: str | None = None
    nominal_end_time: str | None = None
    inputs: Sequence[DatasetRef] = ()
    outputs: Sequence[DatasetRef] = ()
    dataset: DatasetRef | None = None


def _json_type(value: object) -> str:
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    return "number"


class _Reader:
    """Reads the indexed parts of an event, collecting every problem with its JSON path.

    The spec validator has usually checked the shapes already; this also covers what JSON Schema
    cannot (names the database can index, real UUIDs, timestamps) and runs when the spec is absent."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: JsonPath, message: str) -> None:
        self.problems.append(f"{json_path(path)}: {message}")

    def obj(self, value: object, path: JsonPath, *, required: bool = True) -> Json | None:
        if value is None and not required:
            return None
        if isinstance(value, dict):
            return value
        self.problem(
            path,
            "required property is missing" if value is None else f"expected object, got {_json_type(value)}",
        )
        return None

    def text(self, value: object, path: JsonPath, *, required: bool = True) -> str | None:
        if value is None and not required:
            return None
        if not isinstance(value, str):
            self.problem(
                path,
                "required property is missing"
                if value is None
                else f"expected string, got {_json_type(value)}",
            )
            return None
        return value

    def name(self, value: object, path: JsonPath) -> str | None:
        """A namespace, name, version or field name: indexed, so bounded and free of NUL."""
        text = self.text(value, path)
        if text is None:
            return None
        if not text:
            self.problem(path, "must not be empty")
        elif "\x00" in text:
            self.problem(path, "must not contain NUL characters")
        elif len(text.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
            self.problem(path, f"longer than {MAX_NAME_BYTES} bytes")
        else:
            return text
        return None

    def uuid(self, value: object, path: JsonPath) -> str | None:
        text = self.text(value, path)
        if text is None:
            return None
        if not is_uuid(text):
            self.problem(path, "not a valid uuid")
            return None
        return str(uuid.UUID(text))

    def timestamp(self, value: object, path: JsonPath, *, required: bool = True) -> str | None:
        text = self.text(value, path, required=required)
        if text is None:
            return None
        try:
            return normalise_timestamp(text, require_offset=False)
        except ValueError as exc:
            self.problem(path, f"not a valid date-time ({exc})")
            return None

    def facets(self, value: object, path: JsonPath) -> dict[str, Json]:
        container = self.obj(value, path, required=False)
        out: dict[str, Json] = {}
        for key, facet in (container or {}).items():
            if "\x00" in key or len(key.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
                self.problem((*path, key), "facet name must be under 1 KiB and free of NUL")
            elif (body := self.obj(facet, (*path, key))) is not None:
                out[key] = body
        return out

    def job(self, value: object, path: JsonPath) -> tuple[tuple[str, str] | None, dict[str, Json]]:
        body = self.obj(value, path)
        if body is None:
            return None, {}
        namespace = self.name(body.get("namespace"), (*path, "namespace"))
        name = self.name(body.get("name"), (*path, "name"))
        job_facets = self.facets(body.get("facets"), (*path, "facets"))
        return (namespace, name) if namespace and name else None, job_facets

    def dataset(self, value: object, path: JsonPath, io_key: str | None) -> DatasetRef | None:
        body = self.obj(value, path)
        if body is None:
            return None
        namespace = self.name(body.get("namespace"), (*path, "namespace"))
        name = self.name(body.get("name"), (*path, "name"))
        dataset_facets = self.facets(body.get("facets"), (*path, "facets"))
        io_facets = self.facets(body.get(io_key), (*path, io_key)) if io_key else {}
        version = None
        if "version" in dataset_facets:
            version = self.name(
                dataset_facets["version"].get("datasetVersion"),
                (*path, "facets", "version", "datasetVersion"),
            )
        dependencies: list[ColumnDependency] = []
        if "columnLineage" in dataset_facets:
            dependencies = self.column_lineage(
                dataset_facets["columnLineage"], (*path, "facets", "columnLineage")
            )
        if namespace is None or name is None:
            return None
        return DatasetRef(namespace, name, dataset_facets, io_facets, version, dependencies)

    def column_lineage(self, facet: Json, path: JsonPath) -> list[ColumnDependency]:
        found: list[ColumnDependency] = []
        fields = self.obj(facet.get("fields"), (*path, "fields"))
        for output_field, spec in (fields or {}).items():
            spec_path = (*path, "fields", output_field)
            body = self.obj(spec, spec_path)
            if body is None:
                continue
            legacy = (body.get("transformationType"), body.get("transformationDescription"))
            found.extend(
                self.input_fields(body.get("inputFields"), (*spec_path, "inputFields"), output_field, legacy)
            )
        if "dataset" in facet:
            found.extend(self.input_fields(facet["dataset"], (*path, "dataset"), None, (None, None)))
        return found

    def input_fields(
        self, value: object, path: JsonPath, output_field: str | None, legacy: tuple[object, object]
    ) -> list[ColumnDependency]:
        if not isinstance(value, list):
            self.problem(path, f"expected array, got {_json_type(value)}")
            return []
        found: list[ColumnDependency] = []
        for index, item in enumerate(value):
            body = self.obj(item, (*path, index))
            if body is None:
                continue
            namespace = self.name(body.get("namespace"), (*path, index, "namespace"))
            name = self.name(body.get("name"), (*path, index, "name"))
            input_field = self.text(body.get("field"), (*path, index, "field"))
            if namespace is None or name is None or input_field is None:
                continue
            base = ColumnDependency(output_field, namespace, name, input_field)
            transformations = body.get("transformations")
            if transformations is None:
                kind, description = legacy
                found.append(
                    ColumnDependency(
                        output_field,
                        namespace,
                        name,
                        input_field,
                        transformation_type=kind if isinstance(kind, str) else None,
                        transformation_description=description if isinstance(description, str) else None,
                    )
                )
                continue
            if not isinstance(transformations, list):
                self.problem(
                    (*path, index, "transformations"), f"expected array, got {_json_type(transformations)}"
                )
                continue
            for t_index, transformation in enumerate(transformations):
                t_body = self.obj(transformation, (*path, index, "transformations", t_index))
                if t_body is None:
                    continue
                masking = t_body.get("masking")
                found.append(
                    ColumnDependency(
                        base.output_field,
                        base.namespace,
                        base.name,
                        base.field,
                        transformation_type=_opt_str(t_body.get("type")),
                        transformation_subtype=_opt_str(t_body.get("subtype")),
                        transformation_description=_opt_str(t_body.get("description")),
                        masking=masking if isinstance(masking, bool) else None,
                    )
                )
        return found

    def datasets(self, value: object, path: JsonPath, io_key: str) -> list[DatasetRef]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected array, got {_json_type(value)}")
            return []
        found = [self.dataset(item, (*path, index), io_key) for index, item in enumerate(value)]
        return [ref for ref in found if ref is not None]


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _decode(raw: Raw) -> tuple[str, Any]:
    """The exact text and its parsed JSON."""
    if isinstance(raw, Mapping):
        try:
            text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:
            raise LineageEventMalformed([f"$: not representable as JSON ({exc})"]) from None
    elif isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LineageEventMalformed(
                [f"$: body is not UTF-8 (invalid byte at offset {exc.start})"]
            ) from None
    else:
        text = raw
    try:
        return text, finite_json_loads(text)
    except json.JSONDecodeError as exc:
        raise LineageEventMalformed(
            [f"$: malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"]
        ) from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise LineageEventMalformed([f"$: malformed JSON: {reason}"]) from None


@lru_cache(maxsize=1)
def _lenient_validator() -> EventValidator | None:
    try:
        return default_validator(lenient=True)
    except OpenLineageSpecNotFound as exc:
        log.warning("lineage events are checked without the OpenLineage schemas: %s", exc)
        return None


def parse_event(raw: Raw, validator: EventValidator | None = None) -> ParsedEvent:
    """Check one event and read what the store indexes. Raises :class:`LineageEventInvalid`.

    ``validator`` defaults to the lenient spec validator (see :mod:`censustrace.lineage.spec`)."""
    text, event = _decode(raw)
    if not isinstance(event, dict):
        raise LineageEventInvalid([f"$: expected an OpenLineage event object, got {_json_type(event)}"])
    validator = validator or _lenient_validator()
    if validator is not None and (problems := validator.validate(event)):
        raise LineageEventInvalid(problems)
    try:
        canonical = json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise LineageEventInvalid(["$: contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)"]) from None
    except RecursionError:
        raise LineageEventMalformed(["$: malformed JSON: nested too deeply"]) from None

    reader = _Reader()
    kind = _KINDS[event_kind(event)]
    event_time = reader.timestamp(event.get("eventTime"), ("eventTime",))
    reader.text(event.get("producer"), ("producer",))
    event_type = None
    parsed: dict[str, Any] = {}
    if kind == "run":
        event_type = reader.text(event.get("eventType"), ("eventType",), required=False)
        if event_type is not None and event_type not in RUN_STATES:
            reader.problem(
                ("eventType",),
                f"unknown event type {event_type[:40]!r}, expected one of {', '.join(RUN_STATES)}",
            )
        run = reader.obj(event.get("run"), ("run",))
        if run is not None:
            parsed["run_id"] = reader.uuid(run.get("runId"), ("run", "runId"))
            run_facets = reader.facets(run.get("facets"), ("run", "facets"))
            parsed["run_facets"] = run_facets
            parsed.update(_run_facet_fields(reader, run_facets))
    if kind in ("run", "job"):
        parsed["job"], parsed["job_facets"] = reader.job(event.get("job"), ("job",))
        parsed["inputs"] = reader.datasets(event.get("inputs"), ("inputs",), "inputFacets")
        parsed["outputs"] = reader.datasets(event.get("outputs"), ("outputs",), "outputFacets")
    else:
        parsed["dataset"] = reader.dataset(event.get("dataset"), ("dataset",), None)
    if reader.problems or event_time is None:
        raise LineageEventInvalid(reader.problems)
    return ParsedEvent(
        text=text,
        event_hash=hashlib.sha256(canonical).hexdigest(),
        kind=kind,
        event_type=event_type,
        event_time=event_time,
        **parsed,
    )


def _run_facet_fields(reader: _Reader, run_facets: Mapping[str, Json]) -> dict[str, Any]:
    """Parent run/job (ParentRunFacet) and nominal times (NominalTimeRunFacet)."""
    out: dict[str, Any] = {}
    parent = run_facets.get("parent")
    if parent is not None:
        path: JsonPath = ("run", "facets", "parent")
        parent_run = reader.obj(parent.get("run"), (*path, "run"))
        if parent_run is not None:
            out["parent_run_id"] = reader.uuid(parent_run.get("runId"), (*path, "run", "runId"))
        parent_job, _ = reader.job(parent.get("job"), (*path, "job"))
        out["parent_job"] = parent_job
    nominal = run_facets.get("nominalTime")
    if nominal is not None:
        path = ("run", "facets", "nominalTime")
        out["nominal_start_time"] = reader.timestamp(
            nominal.get("nominalStartTime"), (*path, "nominalStartTime")
        )
        out["nominal_end_time"] = reader.timestamp(
            nominal.get("nominalEndTime"), (*path, "nominalEndTime"), required=False
        )
    return out


# Writing ---------------------------------------------------------------------------------------------
def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"


def _insert_ignore(
    conn: Connection, table: Table, values: Mapping[str, Any], conflict: Sequence[str]
) -> PgInsert | SqliteInsert:
    """INSERT ... ON CONFLICT DO NOTHING: safe when a concurrent transaction inserts the same key."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite_insert(table).values(**values).on_conflict_do_nothing(index_elements=list(conflict))


def _get_or_create(conn: Connection, table: Table, key: Mapping[str, Any], extra: Mapping[str, Any]) -> int:
    where = and_(*(table.c[column] == value for column, value in key.items()))
    found = conn.execute(select(table.c.id).where(where)).scalar_one_or_none()
    if found is None:
        conn.execute(_insert_ignore(conn, table, {**key, **extra}, list(key)))
        found = conn.execute(select(table.c.id).where(where)).scalar_one()
    return int(found)


def _lower_created_at(conn: Connection, table: Table, row_id: int, moment: str) -> None:
    # Out-of-order arrival: the earliest event that mentioned a thing is when it was first seen.
    conn.execute(
        update(table).where(table.c.id == row_id, table.c.created_at > moment).values(created_at=moment)
    )


def derived_version(run_id: str, direction: str, namespace: str, name: str) -> str:
    """The version recorded for a run's input/output that came without a DatasetVersionDatasetFacet."""
    return str(uuid.uuid5(_DERIVED_VERSION_NS, "\x1f".join((run_id, direction, namespace, name))))


class _Writer:
    """Indexes one parsed event inside the caller's transaction."""

    def __init__(self, conn: Connection, event: ParsedEvent, event_id: int) -> None:
        self.conn = conn
        self.event = event
        self.event_id = event_id
        self.at = event.event_time
        self._namespace_ids: dict[str, int] = {}
        self._dataset_ids: dict[tuple[str, str], int] = {}

    # Entities ----------------------------------------------------------------------------------------
    def namespace(self, name: str) -> int:
        if name not in self._namespace_ids:
            row_id = _get_or_create(self.conn, namespaces, {"name": name}, {"created_at": self.at})
            _lower_created_at(self.conn, namespaces, row_id, self.at)
            self._namespace_ids[name] = row_id
        return self._namespace_ids[name]

    def job(self, namespace: str, name: str) -> int:
        row_id = _get_or_create(
            self.conn,
            jobs,
            {"namespace_id": self.namespace(namespace), "name": name},
            {"created_at": self.at},
        )
        _lower_created_at(self.conn, jobs, row_id, self.at)
        return row_id

    def dataset(self, namespace: str, name: str) -> int:
        key = (namespace, name)
        if key not in self._dataset_ids:
            row_id = _get_or_create(
                self.conn,
                datasets,
                {"namespace_id": self.namespace(namespace), "name": name},
                {"created_at": self.at},
            )
            _lower_created_at(self.conn, datasets, row_id, self.at)
            self._dataset_ids[key] = row_id
        return self._dataset_ids[key]

    def version(self, dataset_id: int, version: str, source: str) -> int:
        row_id = _get_or_create(
            self.conn,
            dataset_versions,
            {"dataset_id": dataset_id, "version": version},
            {"version_source": source, "created_at": self.at},
        )
        _lower_created_at(self.conn, dataset_versions, row_id, self.at)
        return row_id

    def facet_rows(self, owner: str, bodies: Mapping[str, Json], **ids: int | None) -> None:
        rows = [
            {
                "event_id": self.event_id,
                "event_time": self.at,
                "owner": owner,
                "run_id": ids.get("run_id"),
                "job_id": ids.get("job_id"),
                "dataset_id": ids.get("dataset_id"),
                "dataset_version_id": ids.get("dataset_version_id"),
                "name": name,
                "schema_url": _opt_str(body.get("_schemaURL")),
                "body": body,
            }
            for name, body in bodies.items()
        ]
        if rows:
            self.conn.execute(insert(facets), rows)

    # Events ------------------------------------------------------------------------------------------
    def write(self) -> None:
        event = self.event
        # Create namespaces and datasets in one order in every transaction: no deadlocks between
        # concurrent events that share them.
        refs = [*event.inputs, *event.outputs, *([event.dataset] if event.dataset else [])]
        for namespace, name in sorted({(ref.namespace, ref.name) for ref in refs}):
            self.dataset(namespace, name)
        if event.kind == "run":
            self.write_run()
        elif event.kind == "job":
            self.write_job()
        elif event.dataset is not None:
            self.static_dataset(event.dataset, job_id=None, direction=None)

    def write_job(self) -> None:
        assert self.event.job is not None
        job_id = self.job(*self.event.job)
        self.facet_rows("job", self.event.job_facets, job_id=job_id)
        for direction, refs in (("input", self.event.inputs), ("output", self.event.outputs)):
            for ref in refs:
                self.static_dataset(ref, job_id=job_id, direction=direction)

    def static_dataset(self, ref: DatasetRef, *, job_id: int | None, direction: str | None) -> None:
        """A dataset mentioned outside a run (DatasetEvent, JobEvent): facets on its version if it names
        one, else on the dataset."""
        dataset_id = self.dataset(ref.namespace, ref.name)
        if job_id is not None and direction is not None:
            self.link_job(job_id, dataset_id, direction)
        if ref.version is None:
            self.facet_rows("dataset", ref.facets, dataset_id=dataset_id)
            return
        version_id = self.version(dataset_id, ref.version, "facet")
        self.facet_rows("dataset_version", ref.facets, dataset_version_id=version_id)
        self.column_lineage(version_id, ref.column_lineage, run_id=None, inputs={})

    def link_job(self, job_id: int, dataset_id: int, direction: str) -> None:
        self.conn.execute(
            _insert_ignore(
                self.conn,
                job_datasets,
                {"job_id": job_id, "dataset_id": dataset_id, "direction": direction},
                ["job_id", "direction", "dataset_id"],
            )
        )

    def write_run(self) -> None:
        event = self.event
        assert event.run_id is not None
        assert event.job is not None
        job_id = self.job(*event.job)
        if event.parent_job is not None:
            parent_job_id = self.job(*event.parent_job)
            if parent_job_id != job_id:
                self.conn.execute(
                    update(jobs)
                    .where(jobs.c.id == job_id, jobs.c.parent_job_id.is_(None))
                    .values(parent_job_id=parent_job_id)
                )
        run_id = self.run(job_id)
        self.facet_rows("job", event.job_facets, job_id=job_id, run_id=run_id)
        self.facet_rows("run", event.run_facets, run_id=run_id)
        for ref in event.inputs:
            version_id = self.run_dataset(run_id, job_id, ref, "input")
            # Column lineage that arrived before this input can now name the exact input version.
            self.conn.execute(
                update(column_lineage)
                .where(
                    column_lineage.c.run_id == run_id,
                    column_lineage.c.input_namespace == ref.namespace,
                    column_lineage.c.input_name == ref.name,
                    column_lineage.c.input_dataset_version_id.is_(None),
                )
                .values(input_dataset_version_id=version_id)
            )
        outputs = [(ref, self.run_dataset(run_id, job_id, ref, "output")) for ref in event.outputs]
        if any(ref.column_lineage for ref, _ in outputs):
            inputs = self.run_inputs(run_id)
            for ref, version_id in outputs:
                self.column_lineage(version_id, ref.column_lineage, run_id=run_id, inputs=inputs)

    def run(self, job_id: int) -> int:
        """Create or merge the run row; returns its id. Locks it (PostgreSQL) until commit."""
        event, at = self.event, self.at
        assert event.run_id is not None
        self.conn.execute(
            _insert_ignore(
                self.conn,
                runs,
                {"run_uuid": event.run_id, "job_id": job_id, "created_at": at, "updated_at": at},
                ["run_uuid"],
            )
        )
        row = self.conn.execute(select(runs).where(runs.c.run_uuid == event.run_id).with_for_update()).one()
        if row.job_id != job_id:
            assert event.job is not None
            raise LineageConflict(
                f"$.run.runId: run {event.run_id} already belongs to another job, not "
                f"{event.job[0]}:{event.job[1]}"
            )
        changes: dict[str, Any] = {
            "created_at": min(row.created_at, at),
            "updated_at": max(row.updated_at, at),
        }
        state = event.event_type or "OTHER"
        if _state_wins(state, at, row.state, row.state_time):
            changes.update(state=state, state_time=at)
            if state in _TERMINAL:
                changes["ended_at"] = at
        if state == "START" and (row.started_at is None or at < row.started_at):
            changes["started_at"] = at
        if row.parent_run_uuid is None and event.parent_run_id is not None:
            changes["parent_run_uuid"] = event.parent_run_id
        if event.nominal_start_time is not None:
            changes["nominal_start_time"] = event.nominal_start_time
        if event.nominal_end_time is not None:
            changes["nominal_end_time"] = event.nominal_end_time
        self.conn.execute(update(runs).where(runs.c.id == row.id).values(**changes))
        return int(row.id)

    def run_dataset(self, run_id: int, job_id: int, ref: DatasetRef, direction: str) -> int:
        dataset_id = self.dataset(ref.namespace, ref.name)
        self.link_job(job_id, dataset_id, direction)
        version_id = self.resolve_version(run_id, dataset_id, ref, direction)
        self.conn.execute(
            _insert_ignore(
                self.conn,
                run_dataset_versions,
                {
                    "run_id": run_id,
                    "dataset_version_id": version_id,
                    "direction": direction,
                    "created_at": self.at,
                },
                ["run_id", "direction", "dataset_version_id"],
            )
        )
        if direction == "output":
            # The earliest run to write a version is the one that created it.
            self.conn.execute(
                update(dataset_versions)
                .where(
                    dataset_versions.c.id == version_id,
                    (dataset_versions.c.produced_at.is_(None)) | (dataset_versions.c.produced_at > self.at),
                )
                .values(produced_at=self.at, created_by_run_id=run_id)
            )
        self.facet_rows("dataset_version", ref.facets, dataset_version_id=version_id, run_id=run_id)
        self.facet_rows(direction, ref.io_facets, dataset_version_id=version_id, run_id=run_id)
        return version_id

    def resolve_version(self, run_id: int, dataset_id: int, ref: DatasetRef, direction: str) -> int:
        """The dataset version this run read or wrote (see module docstring)."""
        linked = self.conn.execute(
            select(dataset_versions.c.id, dataset_versions.c.version_source)
            .join(run_dataset_versions, run_dataset_versions.c.dataset_version_id == dataset_versions.c.id)
            .where(
                run_dataset_versions.c.run_id == run_id,
                run_dataset_versions.c.direction == direction,
                dataset_versions.c.dataset_id == dataset_id,
            )
            .order_by(dataset_versions.c.id)
        ).all()
        if ref.version is not None:
            version_id = self.version(dataset_id, ref.version, "facet")
            for old_id, source in linked:
                if source == "derived" and old_id != version_id:
                    self.replace_derived(old_id, version_id)
            return version_id
        named = [int(row_id) for row_id, source in linked if source == "facet"]
        if named:
            return named[-1]  # an earlier event of this run already named the version
        assert self.event.run_id is not None
        version = derived_version(self.event.run_id, direction, ref.namespace, ref.name)
        return self.version(dataset_id, version, "derived")

    def replace_derived(self, old_id: int, new_id: int) -> None:
        """A run's derived version turned out to be ``new_id``: move everything to it and drop it."""
        conn = self.conn
        old = conn.execute(select(dataset_versions).where(dataset_versions.c.id == old_id)).one()
        conn.execute(
            update(facets).where(facets.c.dataset_version_id == old_id).values(dataset_version_id=new_id)
        )
        existing = select(column_lineage.c.row_hash).where(
            column_lineage.c.output_dataset_version_id == new_id
        )
        conn.execute(
            delete(column_lineage).where(
                column_lineage.c.output_dataset_version_id == old_id, column_lineage.c.row_hash.in_(existing)
            )
        )
        conn.execute(
            update(column_lineage)
            .where(column_lineage.c.output_dataset_version_id == old_id)
            .values(output_dataset_version_id=new_id)
        )
        conn.execute(
            update(column_lineage)
            .where(column_lineage.c.input_dataset_version_id == old_id)
            .values(input_dataset_version_id=new_id)
        )
        conn.execute(delete(run_dataset_versions).where(run_dataset_versions.c.dataset_version_id == old_id))
        conn.execute(delete(dataset_versions).where(dataset_versions.c.id == old_id))
        _lower_created_at(conn, dataset_versions, new_id, old.created_at)
        if old.produced_at is not None:
            conn.execute(
                update(dataset_versions)
                .where(
                    dataset_versions.c.id == new_id,
                    (dataset_versions.c.produced_at.is_(None))
                    | (dataset_versions.c.produced_at > old.produced_at),
                )
                .values(produced_at=old.produced_at, created_by_run_id=old.created_by_run_id)
            )

    def run_inputs(self, run_id: int) -> dict[tuple[str, str], int]:
        rows = self.conn.execute(
            select(namespaces.c.name, datasets.c.name, dataset_versions.c.id)
            .select_from(run_dataset_versions)
            .join(dataset_versions, dataset_versions.c.id == run_dataset_versions.c.dataset_version_id)
            .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
            .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
            .where(run_dataset_versions.c.run_id == run_id, run_dataset_versions.c.direction == "input")
            .order_by(dataset_versions.c.id)
        ).all()
        return {(namespace, name): int(version_id) for namespace, name, version_id in rows}

    def column_lineage(
        self,
        version_id: int,
        dependencies: Sequence[ColumnDependency],
        *,
        run_id: int | None,
        inputs: Mapping[tuple[str, str], int],
    ) -> None:
        for dependency in dependencies:
            values = {
                "output_dataset_version_id": version_id,
                "run_id": run_id,
                "event_id": self.event_id,
                "output_field": dependency.output_field,
                "input_namespace": dependency.namespace,
                "input_name": dependency.name,
                "input_field": dependency.field,
                "input_dataset_version_id": inputs.get((dependency.namespace, dependency.name)),
                "transformation_type": dependency.transformation_type,
                "transformation_subtype": dependency.transformation_subtype,
                "transformation_description": dependency.transformation_description,
                "masking": dependency.masking,
                "row_hash": dependency.row_hash(),
            }
            self.conn.execute(
                _insert_ignore(self.conn, column_lineage, values, ["output_dataset_version_id", "row_hash"])
            )


def _state_wins(new: str, new_time: str, current: str | None, current_time: str | None) -> bool:
    """Whether an event of type ``new`` at ``new_time`` sets the run's state: states only move forward
    (START < RUNNING < terminal); OTHER never changes a known state; of two events at the same stage the
    later one wins."""
    if current is None or current_time is None:
        return True
    new_rank, current_rank = _STATE_RANK[new], _STATE_RANK.get(current, 0)
    if new_rank != current_rank:
        return new_rank > current_rank
    return new_rank > 0 and new_time > current_time


def _store(conn: Connection, event: ParsedEvent) -> StoreResult:
    inserted = conn.execute(
        _insert_ignore(
            conn,
            raw_events,
            {
                "event_hash": event.event_hash,
                "kind": event.kind,
                "event_type": event.event_type,
                "event_time": event.event_time,
                "run_uuid": event.run_id,
                "received_at": _now(),
                "body": event.text,
            },
            ["event_hash"],
        ).returning(raw_events.c.id)
    ).scalar_one_or_none()
    if inserted is None:
        return StoreResult(stored=False, duplicate=True, kind=event.kind, run_id=event.run_id)
    _Writer(conn, event, int(inserted)).write()
    return StoreResult(stored=True, duplicate=False, kind=event.kind, run_id=event.run_id)


def _with_retries(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run ``work(conn)`` in a write transaction, again if PostgreSQL chose it as a deadlock victim."""
    for attempt in range(3):
        try:
            with write_transaction(engine) as conn:
                return work(conn)
        except DBAPIError as exc:
            if getattr(exc.orig, "pgcode", None) not in _RETRYABLE_PGCODES or attempt == 2:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def store_event(engine: Engine, raw: Raw, *, validator: EventValidator | None = None) -> StoreResult:
    """Check and store one event in its own transaction. Raises :class:`LineageEventInvalid` (nothing
    stored) or :class:`LineageConflict`."""
    event = parse_event(raw, validator)
    return _with_retries(engine, lambda conn: _store(conn, event))


def store_events(
    engine: Engine, events: Iterable[Raw], *, validator: EventValidator | None = None
) -> list[StoreResult]:
    """Check every event first, then store them all in one transaction (all or nothing). Problems are
    reported as ``$[<index>].<path>``."""
    parsed: list[ParsedEvent] = []
    for index, raw in enumerate(events):
        try:
            parsed.append(parse_event(raw, validator))
        except LineageEventInvalid as exc:
            problems = [f"$[{index}]{problem[1:]}" for problem in exc.problems]
            raise type(exc)(problems) from None
    return _with_retries(engine, lambda conn: [_store(conn, event) for event in parsed])


def export_raw_events(engine: Engine, *, batch_size: int = 500) -> Iterator[str]:
    """Every stored event, in arrival order, as the exact text that arrived: one JSON document per item,
    so writing each followed by a newline gives JSON lines (producers send compact JSON; a body that
    arrived pretty-printed keeps its line breaks)."""
    last_id = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(raw_events.c.id, raw_events.c.body)
                .where(raw_events.c.id > last_id)
                .order_by(raw_events.c.id)
                .limit(batch_size)
            ).all()
        if not rows:
            return
        for row_id, body in rows:
            yield body
            last_id = row_id
