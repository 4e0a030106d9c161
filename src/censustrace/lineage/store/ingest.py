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

import dataclasses
import functools
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any, Final, Literal, TypeVar

from sqlalchemy import (
    Engine,
    Table,
    and_,
    bindparam,
    delete,
    exists,
    insert,
    literal_column,
    null,
    select,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from censustrace.errors import CensustraceError
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.ownership import Ownership, Producer
from censustrace.lineage.spec import (
    EventValidator,
    event_kind,
    finite_json_loads,
    is_uuid,
    json_path,
    normalise_timestamp,
    spec_dir,
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
#: Names looked up or rows inserted by one statement at most: an event may name thousands of datasets,
#: and SQLite takes at most 32,766 parameters per statement.
_KEYS_PER_STATEMENT: Final = 500


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


#: Facet bodies the store's validator remembers as valid (see EventValidator): a few hundred distinct
#: schema and job-type facets repeat with every event of their tasks; the rest (run ids, times, versions)
#: never repeat.
_VALID_FACET_CACHE: Final = 4096


@lru_cache(maxsize=1)
def _lenient_validator() -> EventValidator:
    """The lenient spec validator, which also knows censustrace's own facet schemas. Without the
    schemas it raises :class:`OpenLineageSpecNotFound`: no event is stored unchecked."""
    return EventValidator(
        spec_dir(), extra_schemas=schema_documents(), lenient=True, facet_cache_size=_VALID_FACET_CACHE
    )


def parse_event(raw: Raw, validator: EventValidator | None = None) -> ParsedEvent:
    """Check one event and read what the store indexes. Raises :class:`LineageEventInvalid`.

    ``validator`` defaults to the lenient spec validator (see :mod:`censustrace.lineage.spec`), which also
    checks censustrace's own facets (:mod:`censustrace.lineage.facets`) against their schemas."""
    text, event = _decode(raw)
    if not isinstance(event, dict):
        raise LineageEventInvalid([f"$: expected an OpenLineage event object, got {_json_type(event)}"])
    validator = validator or _lenient_validator()
    if problems := validator.validate(event):
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
#
# On PostgreSQL every statement is a round trip and on SQLite building one costs about as much as running
# it, so the writer issues as few as the work needs, each built once per dialect:
# * every namespace, dataset and job the event names is looked up in one query (unless this transaction
#   has seen it already); the missing ones are created with one INSERT per table, in key order so that
#   concurrent writers lock them in one order;
# * the run row is locked and read together with every version the run links (and whether anything
#   else points at its derived versions): a new run needs no version bookkeeping at all, an existing one
#   no query per dataset, and replacing a derived version moves only what exists;
# * links, facets and column lineage are inserted at the end, one executemany per table;
# * created_at and produced_at only ever move earlier, so a value read in this transaction is never
#   earlier than the stored one: when it is already no later than the event's, there is nothing to update.
def _now() -> str:
    return f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"


def derived_version(run_id: str, direction: str, namespace: str, name: str) -> str:
    """The version recorded for a run's input/output that came without a DatasetVersionDatasetFacet."""
    return str(uuid.uuid5(_DERIVED_VERSION_NS, "\x1f".join((run_id, direction, namespace, name))))


def _insert_ignore(dialect: str, table: Table, conflict: Sequence[str]) -> PgInsert | SqliteInsert:
    """INSERT ... ON CONFLICT DO NOTHING: safe when a concurrent transaction inserts the same key."""
    if dialect == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=list(conflict))
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=list(conflict))


class _Sql:
    """The writer's statements for one dialect, built once (parameters are bound at execution)."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect
        ns, ds, dv, rdv, cl = namespaces, datasets, dataset_versions, run_dataset_versions, column_lineage
        self.raw_event = _insert_ignore(dialect, raw_events, ["event_hash"]).returning(raw_events.c.id)
        # (kind, namespace id, namespace, its created_at, row id, name, created_at, parent job id): every
        # namespace asked for, with the datasets of those names in it, then the jobs asked for.
        self.entities = union_all(
            select(
                literal_column("'dataset'").label("kind"),
                ns.c.id.label("namespace_id"),
                ns.c.name.label("namespace"),
                ns.c.created_at.label("namespace_created_at"),
                ds.c.id,
                ds.c.name,
                ds.c.created_at,
                null().label("parent_job_id"),
            )
            .select_from(
                ns.outerjoin(
                    ds,
                    and_(
                        ds.c.namespace_id == ns.c.id,
                        ds.c.name.in_(bindparam("b_datasets", expanding=True)),
                    ),
                )
            )
            .where(ns.c.name.in_(bindparam("b_namespaces", expanding=True))),
            select(
                literal_column("'job'"),
                ns.c.id,
                ns.c.name,
                ns.c.created_at,
                jobs.c.id,
                jobs.c.name,
                jobs.c.created_at,
                jobs.c.parent_job_id,
            )
            .select_from(
                ns.join(
                    jobs,
                    and_(
                        jobs.c.namespace_id == ns.c.id, jobs.c.name.in_(bindparam("b_jobs", expanding=True))
                    ),
                )
            )
            .where(ns.c.name.in_(bindparam("b_job_namespaces", expanding=True))),
        )
        self.lower_created_at = {
            table.name: update(table)
            .where(table.c.id == bindparam("b_id"), table.c.created_at > bindparam("b_at"))
            .values(created_at=bindparam("b_at"))
            for table in (namespaces, datasets, jobs, dataset_versions)
        }
        self.set_parent_job = (
            update(jobs)
            .where(jobs.c.id == bindparam("b_id"), jobs.c.parent_job_id.is_(None))
            .values(parent_job_id=bindparam("b_parent"))
        )
        derived = dv.c.version_source == "derived"
        # The run, locked until commit (PostgreSQL), once per version it links, in version id order.
        self.run = (
            select(
                runs,
                rdv.c.direction,
                dv.c.id.label("v_id"),
                dv.c.dataset_id.label("v_dataset_id"),
                dv.c.version.label("v_version"),
                dv.c.version_source.label("v_source"),
                dv.c.created_at.label("v_created_at"),
                dv.c.produced_at.label("v_produced_at"),
                dv.c.created_by_run_id.label("v_created_by_run_id"),
                and_(derived, exists().where(facets.c.dataset_version_id == dv.c.id)).label("v_facets"),
                and_(derived, exists().where(cl.c.output_dataset_version_id == dv.c.id)).label(
                    "v_lineage_output"
                ),
                and_(derived, exists().where(cl.c.input_dataset_version_id == dv.c.id)).label(
                    "v_lineage_input"
                ),
                exists()
                .where(cl.c.run_id == runs.c.id, cl.c.input_dataset_version_id.is_(None))
                .label("open_lineage"),
            )
            .select_from(
                runs.outerjoin(rdv, rdv.c.run_id == runs.c.id).outerjoin(
                    dv, dv.c.id == rdv.c.dataset_version_id
                )
            )
            .where(runs.c.run_uuid == bindparam("b_run_uuid"))
            .order_by(dv.c.id)
            .with_for_update(of=runs)
        )
        self.new_run = _insert_ignore(dialect, runs, ["run_uuid"]).returning(runs.c.id)
        self.merge_run = update(runs).where(runs.c.id == bindparam("b_id"))  # SET: the columns passed
        self.find_version = select(
            dv.c.id, dv.c.version_source, dv.c.created_at, dv.c.produced_at, dv.c.created_by_run_id
        ).where(dv.c.dataset_id == bindparam("b_dataset"), dv.c.version == bindparam("b_version"))
        self.new_version = _insert_ignore(dialect, dv, ["dataset_id", "version"]).returning(dv.c.id)
        self.lower_produced_at = (
            update(dv)
            .where(
                dv.c.id == bindparam("b_id"),
                (dv.c.produced_at.is_(None)) | (dv.c.produced_at > bindparam("b_at")),
            )
            .values(produced_at=bindparam("b_at"), created_by_run_id=bindparam("b_run"))
        )
        self.link_job = _insert_ignore(dialect, job_datasets, ["job_id", "direction", "dataset_id"])
        self.link_run = _insert_ignore(dialect, rdv, ["run_id", "direction", "dataset_version_id"])
        self.facets = insert(facets)
        self.lineage = _insert_ignore(dialect, cl, ["output_dataset_version_id", "row_hash"])
        self.fill_lineage_input = (
            update(cl)
            .where(
                cl.c.run_id == bindparam("b_run"),
                cl.c.input_namespace == bindparam("b_namespace"),
                cl.c.input_name == bindparam("b_name"),
                cl.c.input_dataset_version_id.is_(None),
            )
            .values(input_dataset_version_id=bindparam("b_version"))
        )
        self.run_inputs = (
            select(ns.c.name, ds.c.name, dv.c.id)
            .select_from(rdv)
            .join(dv, dv.c.id == rdv.c.dataset_version_id)
            .join(ds, ds.c.id == dv.c.dataset_id)
            .join(ns, ns.c.id == ds.c.namespace_id)
            .where(rdv.c.run_id == bindparam("b_run"), rdv.c.direction == "input")
            .order_by(dv.c.id)
        )
        # Replacing a derived version (b_old) by the named one (b_new).
        self.move_facets = (
            update(facets)
            .where(facets.c.dataset_version_id == bindparam("b_old"))
            .values(dataset_version_id=bindparam("b_new"))
        )
        self.drop_lineage_twins = delete(cl).where(
            cl.c.output_dataset_version_id == bindparam("b_old"),
            cl.c.row_hash.in_(
                select(cl.c.row_hash).where(cl.c.output_dataset_version_id == bindparam("b_new"))
            ),
        )
        self.move_lineage_output = (
            update(cl)
            .where(cl.c.output_dataset_version_id == bindparam("b_old"))
            .values(output_dataset_version_id=bindparam("b_new"))
        )
        self.move_lineage_input = (
            update(cl)
            .where(cl.c.input_dataset_version_id == bindparam("b_old"))
            .values(input_dataset_version_id=bindparam("b_new"))
        )
        self.unlink_version = delete(rdv).where(rdv.c.dataset_version_id == bindparam("b_old"))
        self.drop_version = delete(dv).where(dv.c.id == bindparam("b_old"))

    def insert_ignore(self, table: Table, conflict: Sequence[str]) -> PgInsert | SqliteInsert:
        return _insert_ignore(self.dialect, table, conflict)


@cache
def _sql(dialect: str) -> _Sql:
    return _Sql(dialect)


@dataclass
class _Row:
    """A namespace, dataset or job as this transaction knows it (``created_at``: see above)."""

    id: int
    created_at: str
    parent_job_id: int | None = None


@dataclass
class _Version:
    """A dataset version as this transaction knows it (``created_at``, ``produced_at``: see above)."""

    id: int
    dataset_id: int
    version: str
    source: str
    created_at: str
    produced_at: str | None
    created_by_run_id: int | None
    #: Set when this (derived) version was replaced and deleted. Its id may then be reused (SQLite).
    replaced_by: _Version | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Referrers:
    """Which stored rows point at a derived version, so that replacing it moves only those (what the
    current event has not written yet is moved in memory). Unknown: all True."""

    facets: bool = True
    lineage_output: bool = True
    lineage_input: bool = True
    links: bool = True


_UNKNOWN_REFERRERS: Final = _Referrers()
_NO_REFERRERS: Final = _Referrers(facets=False, lineage_output=False, lineage_input=False, links=False)
Produced = tuple[str, int | None]  # (produced_at, created_by_run_id)


@dataclass
class _Seen:
    """Rows one transaction has read or written, shared by the events of one :func:`store_events` batch.
    Dropped with the transaction: after a rollback they may not exist."""

    namespaces: dict[str, _Row] = field(default_factory=dict)
    datasets: dict[tuple[str, str], _Row] = field(default_factory=dict)
    jobs: dict[tuple[str, str], _Row] = field(default_factory=dict)
    versions: dict[tuple[int, str], _Version] = field(default_factory=dict)
    #: Datasets this transaction created: only the versions in ``versions`` can exist for them.
    new_datasets: set[int] = field(default_factory=set)


class _Writer:
    """Indexes one parsed event inside the caller's transaction."""

    def __init__(
        self, conn: Connection, event: ParsedEvent, event_id: int, seen: _Seen, producer: str | None = None
    ) -> None:
        self.conn = conn
        # Recorded on each edge this event adds: None for the pipeline's transport (see ownership.py).
        self.producer = producer
        self.sql = _sql(conn.dialect.name)
        self.event = event
        self.event_id = event_id
        self.at = event.event_time
        self.seen = seen
        # Rows inserted at the end, one executemany per table, in the order they were added.
        self.job_links: list[dict[str, Any]] = []
        self.run_links: list[dict[str, Any]] = []
        self.facet_rows: list[dict[str, Any]] = []
        self.lineage_rows: dict[tuple[int, str], dict[str, Any]] = {}
        # The run's links, stored and added by this event: versions per (direction, dataset id) in id
        # order; (direction, dataset id) pairs whose job link exists; (direction, version id) pairs.
        self.links: dict[tuple[str, int], list[_Version]] = {}
        self.job_linked: set[tuple[str, int]] = set()
        self.linked: set[tuple[str, int]] = set()
        self.referrers: dict[int, _Referrers] = {}
        # Whether the run has column lineage still waiting for its input's version.
        self.open_lineage = False

    def write(self) -> None:
        self.entities()
        if self.event.kind == "run":
            self.write_run()
        elif self.event.kind == "job":
            self.write_job()
        elif self.event.dataset is not None:
            self.static_dataset(self.event.dataset, job_id=None, direction=None)
        self.flush()

    def flush(self) -> None:
        if self.job_links:
            self.conn.execute(self.sql.link_job, self.job_links)
            self.job_links = []
        self.flush_run_links()
        if self.facet_rows:
            self.conn.execute(self.sql.facets, self.facet_rows)
            self.facet_rows = []
        if self.lineage_rows:
            self.conn.execute(self.sql.lineage, list(self.lineage_rows.values()))
            self.lineage_rows = {}

    def flush_run_links(self) -> None:
        if self.run_links:
            self.conn.execute(self.sql.link_run, self.run_links)
            self.run_links = []

    # Namespaces, datasets, jobs --------------------------------------------------------------------------
    def entities(self) -> None:
        event, seen = self.event, self.seen
        refs = [*event.inputs, *event.outputs, *([event.dataset] if event.dataset else [])]
        dataset_keys = sorted({(ref.namespace, ref.name) for ref in refs})
        job_keys = sorted({key for key in (event.job, event.parent_job) if key is not None})
        names = sorted({namespace for namespace, _ in (*dataset_keys, *job_keys)})
        missing_datasets = [key for key in dataset_keys if key not in seen.datasets]
        missing_jobs = [key for key in job_keys if key not in seen.jobs]
        if missing_datasets or missing_jobs or any(name not in seen.namespaces for name in names):
            self.look_up(names, missing_datasets, missing_jobs)
            self.create(names, missing_datasets, missing_jobs)
        # Out-of-order arrival: the earliest event that mentioned a thing is when it was first seen.
        for table, known in (
            (namespaces, [seen.namespaces[name] for name in names]),
            (datasets, [seen.datasets[key] for key in dataset_keys]),
            (jobs, [seen.jobs[key] for key in job_keys]),
        ):
            late = [row for row in known if row.created_at > self.at]
            if late:
                self.conn.execute(
                    self.sql.lower_created_at[table.name], [{"b_id": row.id, "b_at": self.at} for row in late]
                )
                for row in late:
                    row.created_at = self.at

    def look_up(
        self, names: list[str], missing_datasets: list[tuple[str, str]], missing_jobs: list[tuple[str, str]]
    ) -> None:
        seen = self.seen
        missing_names = [name for name in names if name not in seen.namespaces]
        wanted_datasets, wanted_jobs = set(missing_datasets), set(missing_jobs)
        longest = max(len(missing_names), len(missing_datasets), len(missing_jobs))
        for start in range(0, longest, _KEYS_PER_STATEMENT):
            some_datasets = missing_datasets[start : start + _KEYS_PER_STATEMENT]
            some_jobs = missing_jobs[start : start + _KEYS_PER_STATEMENT]
            parameters = {
                "b_namespaces": sorted(
                    {*missing_names[start : start + _KEYS_PER_STATEMENT], *(ns for ns, _ in some_datasets)}
                ),
                "b_datasets": sorted({name for _, name in some_datasets}),
                "b_job_namespaces": sorted({namespace for namespace, _ in some_jobs}),
                "b_jobs": sorted({name for _, name in some_jobs}),
            }
            for (
                kind,
                namespace_id,
                namespace,
                namespace_created_at,
                row_id,
                name,
                created_at,
                parent,
            ) in self.conn.execute(self.sql.entities, parameters):
                if namespace not in seen.namespaces:
                    seen.namespaces[namespace] = _Row(int(namespace_id), namespace_created_at)
                key = (namespace, name)
                if row_id is None:
                    continue
                if kind == "dataset" and key in wanted_datasets:
                    seen.datasets[key] = _Row(int(row_id), created_at)
                elif kind == "job" and key in wanted_jobs:
                    seen.jobs[key] = _Row(int(row_id), created_at, None if parent is None else int(parent))

    def create(
        self, names: list[str], missing_datasets: list[tuple[str, str]], missing_jobs: list[tuple[str, str]]
    ) -> None:
        seen, at = self.seen, self.at
        new_names = [name for name in names if name not in seen.namespaces]
        if new_names:
            made, _ = self.insert_rows(
                namespaces, [{"name": name, "created_at": at} for name in new_names], ("name",)
            )
            for (name,), row in made.items():
                seen.namespaces[name] = row
        for table, missing, target in (
            (datasets, missing_datasets, seen.datasets),
            (jobs, missing_jobs, seen.jobs),
        ):
            keys = [key for key in missing if key not in target]
            if not keys:
                continue
            rows = [
                {"namespace_id": seen.namespaces[namespace].id, "name": name, "created_at": at}
                for namespace, name in keys
            ]
            made, created = self.insert_rows(table, rows, ("namespace_id", "name"))
            for (namespace, name), values in zip(keys, rows, strict=True):
                found = made[(values["namespace_id"], name)]
                target[(namespace, name)] = found
                if table is datasets and (values["namespace_id"], name) in created:
                    seen.new_datasets.add(found.id)

    def insert_rows(
        self, table: Table, rows: list[dict[str, Any]], key: tuple[str, ...]
    ) -> tuple[dict[tuple[Any, ...], _Row], set[tuple[Any, ...]]]:
        """Insert ``rows`` (in key order, so concurrent writers lock in one order); a row that another
        writer inserted first is read instead. Returns every row by key, and the keys inserted here."""
        made: dict[tuple[Any, ...], _Row] = {}
        for start in range(0, len(rows), _KEYS_PER_STATEMENT):
            statement = (
                self.sql.insert_ignore(table, key)
                .values(rows[start : start + _KEYS_PER_STATEMENT])
                .returning(table.c.id, *(table.c[column] for column in key))
            )
            made.update(
                (tuple(found[1:]), _Row(int(found[0]), self.at)) for found in self.conn.execute(statement)
            )
        created = set(made)
        for row in rows:
            row_key = tuple(row[column] for column in key)
            if row_key not in made:
                found = self.conn.execute(
                    select(table).where(*(table.c[column] == row[column] for column in key))
                ).one()
                parent = found._mapping.get("parent_job_id")
                made[row_key] = _Row(int(found.id), found.created_at, None if parent is None else int(parent))
        return made, created

    def add_facets(self, owner: str, bodies: Mapping[str, Json], **ids: int | None) -> None:
        self.facet_rows.extend(
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
        )

    def link_job(self, job_id: int, dataset_id: int, direction: str) -> None:
        if (direction, dataset_id) not in self.job_linked:
            self.job_linked.add((direction, dataset_id))
            self.job_links.append({"job_id": job_id, "dataset_id": dataset_id, "direction": direction})

    # Events ------------------------------------------------------------------------------------------
    def write_job(self) -> None:
        assert self.event.job is not None
        job_id = self.seen.jobs[self.event.job].id
        self.add_facets("job", self.event.job_facets, job_id=job_id)
        for direction, refs in (("input", self.event.inputs), ("output", self.event.outputs)):
            for ref in refs:
                self.static_dataset(ref, job_id=job_id, direction=direction)

    def static_dataset(self, ref: DatasetRef, *, job_id: int | None, direction: str | None) -> None:
        """A dataset mentioned outside a run (DatasetEvent, JobEvent): facets on its version if it names
        one, else on the dataset."""
        dataset_id = self.seen.datasets[(ref.namespace, ref.name)].id
        if job_id is not None and direction is not None:
            self.link_job(job_id, dataset_id, direction)
        if ref.version is None:
            self.add_facets("dataset", ref.facets, dataset_id=dataset_id)
            return
        version = self.version(dataset_id, ref.version, "facet", self.at, None, look_up_first=True)
        self.add_facets("dataset_version", ref.facets, dataset_version_id=version.id)
        self.column_lineage(version.id, ref.column_lineage, run_id=None, inputs={})

    def write_run(self) -> None:
        event = self.event
        assert event.run_id is not None
        assert event.job is not None
        job = self.seen.jobs[event.job]
        if event.parent_job is not None:
            parent = self.seen.jobs[event.parent_job]
            if parent.id != job.id and job.parent_job_id is None:
                self.conn.execute(self.sql.set_parent_job, {"b_id": job.id, "b_parent": parent.id})
                job.parent_job_id = parent.id
        run_id = self.run(job.id)
        self.add_facets("job", event.job_facets, job_id=job.id, run_id=run_id)
        self.add_facets("run", event.run_facets, run_id=run_id)
        for ref in event.inputs:
            version = self.run_dataset(run_id, job.id, ref, "input")
            if self.open_lineage:
                # Column lineage that arrived before this input can now name the exact input version.
                self.conn.execute(
                    self.sql.fill_lineage_input,
                    {
                        "b_run": run_id,
                        "b_namespace": ref.namespace,
                        "b_name": ref.name,
                        "b_version": version.id,
                    },
                )
                known = self.referrers.get(version.id, _UNKNOWN_REFERRERS)
                self.referrers[version.id] = dataclasses.replace(known, lineage_input=True)
        outputs = [(ref, self.run_dataset(run_id, job.id, ref, "output")) for ref in event.outputs]
        if any(ref.column_lineage for ref, _ in outputs):
            inputs = self.run_inputs(run_id)
            for ref, version in outputs:
                # The same dataset listed again later in the event may have replaced its derived version.
                while version.replaced_by is not None:
                    version = version.replaced_by
                self.column_lineage(version.id, ref.column_lineage, run_id=run_id, inputs=inputs)

    def run(self, job_id: int) -> int:
        """Create or merge the run row; returns its id. Locks it (PostgreSQL) until commit, and learns the
        versions it links."""
        event, at = self.event, self.at
        assert event.run_id is not None
        rows = self.conn.execute(self.sql.run, {"b_run_uuid": event.run_id}).all()
        state = event.event_type or "OTHER"
        if not rows:
            values = {
                "run_uuid": event.run_id,
                "job_id": job_id,
                "state": state,
                "state_time": at,
                "started_at": at if state == "START" else None,
                "ended_at": at if state in _TERMINAL else None,
                "parent_run_uuid": event.parent_run_id,
                "nominal_start_time": event.nominal_start_time,
                "nominal_end_time": event.nominal_end_time,
                "created_at": at,
                "updated_at": at,
            }
            created = self.conn.execute(self.sql.new_run, values).scalar_one_or_none()
            if created is not None:
                return int(created)  # a new run links nothing yet
            rows = self.conn.execute(self.sql.run, {"b_run_uuid": event.run_id}).all()  # lost a race
        row = rows[0]
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
        changes = {column: value for column, value in changes.items() if row._mapping[column] != value}
        if changes:
            self.conn.execute(self.sql.merge_run, {"b_id": row.id, **changes})
        self.open_lineage = bool(row.open_lineage)
        for link in rows:
            if link.v_id is None:
                continue
            version = _Version(
                int(link.v_id),
                int(link.v_dataset_id),
                link.v_version,
                link.v_source,
                link.v_created_at,
                link.v_produced_at,
                link.v_created_by_run_id,
            )
            self.seen.versions[(version.dataset_id, version.version)] = version
            self.links.setdefault((link.direction, version.dataset_id), []).append(version)
            self.job_linked.add((link.direction, version.dataset_id))
            self.linked.add((link.direction, version.id))
            self.referrers[version.id] = _Referrers(
                facets=bool(link.v_facets),
                lineage_output=bool(link.v_lineage_output),
                lineage_input=bool(link.v_lineage_input),
            )
        return int(row.id)

    def run_dataset(self, run_id: int, job_id: int, ref: DatasetRef, direction: str) -> _Version:
        dataset_id = self.seen.datasets[(ref.namespace, ref.name)].id
        self.link_job(job_id, dataset_id, direction)
        # The earliest run to write a version is the one that created it.
        produced = (self.at, run_id) if direction == "output" else None
        version = self.resolve_version(dataset_id, ref, direction, produced)
        if (direction, version.id) not in self.linked:
            self.linked.add((direction, version.id))
            self.run_links.append(
                {
                    "run_id": run_id,
                    "dataset_version_id": version.id,
                    "direction": direction,
                    "created_at": self.at,
                    "producer": self.producer,
                }
            )
            linked = self.links.setdefault((direction, dataset_id), [])
            linked.append(version)
            linked.sort(key=lambda known: known.id)
        self.add_facets("dataset_version", ref.facets, dataset_version_id=version.id, run_id=run_id)
        self.add_facets(direction, ref.io_facets, dataset_version_id=version.id, run_id=run_id)
        return version

    def resolve_version(
        self, dataset_id: int, ref: DatasetRef, direction: str, produced: Produced | None
    ) -> _Version:
        """The dataset version this run read or wrote (see module docstring)."""
        linked = self.links.get((direction, dataset_id), [])
        if ref.version is not None:
            olds = [known for known in linked if known.source == "derived" and known.version != ref.version]
            # What the replaced versions knew moves to the named one: the earliest created_at, and the
            # earliest production (on a tie, the first one: as if applied one after the other).
            created_at = min([self.at, *(old.created_at for old in olds)])
            earliest: Produced | None = None
            for candidate in [*((old.produced_at, old.created_by_run_id) for old in olds), produced]:
                if candidate is None or candidate[0] is None:
                    continue
                if earliest is None or candidate[0] < earliest[0]:
                    earliest = (candidate[0], candidate[1])
            version = self.version(
                dataset_id, ref.version, "facet", created_at, earliest, look_up_first=direction == "input"
            )
            for old in olds:
                self.replace_derived(old, version)
            return version
        named = [known for known in linked if known.source == "facet"]
        if named:
            version = named[-1]  # an earlier event of this run already named the version
            self.lower(version, None, produced)
            return version
        assert self.event.run_id is not None
        name = derived_version(self.event.run_id, direction, ref.namespace, ref.name)
        return self.version(dataset_id, name, "derived", self.at, produced, look_up_first=False)

    def version(
        self,
        dataset_id: int,
        name: str,
        source: str,
        created_at: str,
        produced: Produced | None,
        *,
        look_up_first: bool,
    ) -> _Version:
        """Get or create a version, then move its created_at / produced_at earlier if these are. Inputs
        are usually there already (look up first), outputs and derived versions usually new."""
        key = (dataset_id, name)
        found = self.seen.versions.get(key)
        if found is None and look_up_first and dataset_id not in self.seen.new_datasets:
            found = self.find_version(dataset_id, name)
        if found is None:
            values = {
                "dataset_id": dataset_id,
                "version": name,
                "version_source": source,
                "created_at": created_at,
                "produced_at": produced[0] if produced else None,
                "created_by_run_id": produced[1] if produced else None,
            }
            created = self.conn.execute(self.sql.new_version, values).scalar_one_or_none()
            if created is not None:
                version = _Version(
                    int(created), dataset_id, name, source, created_at, *(produced or (None, None))
                )
                self.seen.versions[key] = version
                self.referrers[version.id] = _NO_REFERRERS
                return version
            found = self.find_version(dataset_id, name)
            assert found is not None, "inserted by a concurrent writer, so it exists"
        self.lower(found, created_at, produced)
        return found

    def find_version(self, dataset_id: int, name: str) -> _Version | None:
        row = self.conn.execute(
            self.sql.find_version, {"b_dataset": dataset_id, "b_version": name}
        ).one_or_none()
        if row is None:
            return None
        version = _Version(
            int(row.id),
            dataset_id,
            name,
            row.version_source,
            row.created_at,
            row.produced_at,
            row.created_by_run_id,
        )
        self.seen.versions[(dataset_id, name)] = version
        return version

    def lower(self, version: _Version, created_at: str | None, produced: Produced | None) -> None:
        if created_at is not None and version.created_at > created_at:
            self.conn.execute(
                self.sql.lower_created_at["dataset_versions"], {"b_id": version.id, "b_at": created_at}
            )
            version.created_at = created_at
        if produced is not None and (version.produced_at is None or version.produced_at > produced[0]):
            self.conn.execute(
                self.sql.lower_produced_at, {"b_id": version.id, "b_at": produced[0], "b_run": produced[1]}
            )
            version.produced_at, version.created_by_run_id = produced

    def replace_derived(self, old: _Version, new: _Version) -> None:
        """A run's derived version turned out to be ``new``: move everything to it and drop it (its times
        were merged into ``new`` by :meth:`resolve_version`)."""
        referrers = self.referrers.get(old.id, _UNKNOWN_REFERRERS)
        ids = {"b_old": old.id, "b_new": new.id}
        for row in self.facet_rows:
            if row["dataset_version_id"] == old.id:
                row["dataset_version_id"] = new.id
        if referrers.facets:
            self.conn.execute(self.sql.move_facets, ids)
        if referrers.lineage_output:
            self.conn.execute(self.sql.drop_lineage_twins, ids)
            self.conn.execute(self.sql.move_lineage_output, ids)
        if referrers.lineage_input:
            self.conn.execute(self.sql.move_lineage_input, ids)
        self.run_links = [row for row in self.run_links if row["dataset_version_id"] != old.id]
        if referrers.links:
            self.conn.execute(self.sql.unlink_version, ids)
        self.conn.execute(self.sql.drop_version, ids)
        self.seen.versions.pop((old.dataset_id, old.version), None)
        self.referrers.pop(old.id, None)
        old.replaced_by = new
        for linked in self.links.values():
            linked[:] = [known for known in linked if known.id != old.id]
        self.linked = {
            (direction, version_id) for direction, version_id in self.linked if version_id != old.id
        }

    def run_inputs(self, run_id: int) -> dict[tuple[str, str], int]:
        self.flush_run_links()
        rows = self.conn.execute(self.sql.run_inputs, {"b_run": run_id}).all()
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
            row_hash = dependency.row_hash()
            self.lineage_rows.setdefault(
                (version_id, row_hash),
                {
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
                    "row_hash": row_hash,
                },
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


def _store(conn: Connection, event: ParsedEvent, seen: _Seen, producer: str | None = None) -> StoreResult:
    inserted = conn.execute(
        _sql(conn.dialect.name).raw_event,
        {
            "event_hash": event.event_hash,
            "kind": event.kind,
            "event_type": event.event_type,
            "event_time": event.event_time,
            "run_uuid": event.run_id,
            "received_at": _now(),
            "body": event.text,
        },
    ).scalar_one_or_none()
    if inserted is None:
        return StoreResult(stored=False, duplicate=True, kind=event.kind, run_id=event.run_id)
    _Writer(conn, event, int(inserted), seen, producer).write()
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


def store_event(
    engine: Engine,
    raw: Raw,
    *,
    validator: EventValidator | None = None,
    producer: Producer | None = None,
    ownership: Ownership | None = None,
) -> StoreResult:
    """Check and store one event in its own transaction. Raises :class:`LineageEventInvalid` (nothing
    stored) or :class:`LineageConflict`. ``producer``: who POSTed it (None: the pipeline's transport);
    with ``ownership``, an external producer naming our datasets or jobs is refused
    (:class:`~censustrace.lineage.ownership.LineageForbidden`)."""
    event = parse_event(raw, validator)
    if ownership is not None:
        ownership.check(event, producer)
    label = producer.label if producer is not None else None
    return _with_retries(engine, lambda conn: _store(conn, event, _Seen(), label))


def store_events(
    engine: Engine,
    events: Iterable[Raw],
    *,
    validator: EventValidator | None = None,
    producer: Producer | None = None,
    ownership: Ownership | None = None,
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
    if ownership is not None:
        for event in parsed:
            ownership.check(event, producer)
    label = producer.label if producer is not None else None

    def store_all(conn: Connection) -> list[StoreResult]:
        seen = _Seen()  # one per attempt: a retried transaction starts from nothing
        return [_store(conn, event, seen, label) for event in parsed]

    return _with_retries(engine, store_all)


def store_parsed_events(
    engine: Engine, events: Sequence[ParsedEvent], producers: Sequence[str | None] | None = None
) -> list[StoreResult | CensustraceError]:
    """Store checked events, one outcome each, in as few transactions as possible (group commit): all
    in one; if that one fails (a conflict, a database error), each again in its own, so one bad event
    costs only itself. A database error of an event's own transaction is its outcome, not raised."""
    if not events:
        return []
    labels = list(producers) if producers is not None else [None] * len(events)

    def store_all(conn: Connection) -> list[StoreResult | CensustraceError]:
        seen = _Seen()
        return [_store(conn, event, seen, label) for event, label in zip(events, labels, strict=True)]

    try:
        return _with_retries(engine, store_all)
    except (CensustraceError, DBAPIError) as exc:
        if len(events) == 1:
            return [_as_error(exc)]
    outcomes: list[StoreResult | CensustraceError] = []
    for event, label in zip(events, labels, strict=True):
        try:
            outcomes.append(_with_retries(engine, functools.partial(_store_alone, event, label)))
        except (CensustraceError, DBAPIError) as exc:
            outcomes.append(_as_error(exc))
    return outcomes


class LineageStoreUnavailable(CensustraceError):
    """The store could not be written (connection lost, server down): retry later (HTTP 503)."""

    code = "CT-LINEAGE-STORE"


def _store_alone(event: ParsedEvent, producer: str | None, conn: Connection) -> StoreResult:
    return _store(conn, event, _Seen(), producer)


def _as_error(exc: Exception) -> CensustraceError:
    if isinstance(exc, CensustraceError):
        return exc
    log.error("lineage store write failed: %s", exc)
    return LineageStoreUnavailable(f"the lineage store could not be written ({type(exc).__name__})")


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
