"""Reading OpenLineage events: check one against the spec and read the parts the store indexes.

Pure: JSON in, a :class:`ParsedEvent` (or :class:`LineageEventInvalid` naming each JSON path at fault)
out, no SQL. The writer (:mod:`censustrace.lineage.store.writer`) indexes what this returns.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Literal

from censustrace.errors import CensustraceError
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.spec import (
    EventValidator,
    event_kind,
    finite_json_loads,
    is_uuid,
    json_path,
    normalise_timestamp,
    spec_dir,
)
from censustrace.lineage.store.tables import MAX_NAME_BYTES

Json = dict[str, Any]
JsonPath = tuple[str | int, ...]
EventKind = Literal["run", "dataset", "job"]
Raw = bytes | str | Mapping[str, Any]

RUN_STATES: Final = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
_KINDS: Final[dict[str, EventKind]] = {"RunEvent": "run", "DatasetEvent": "dataset", "JobEvent": "job"}


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
                        transformation_type=opt_str(t_body.get("type")),
                        transformation_subtype=opt_str(t_body.get("subtype")),
                        transformation_description=opt_str(t_body.get("description")),
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


def opt_str(value: object) -> str | None:
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
