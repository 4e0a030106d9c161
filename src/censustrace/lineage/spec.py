"""Validation of OpenLineage events against the official JSON schemas.

The schemas ship with the package (``schemas/openlineage/``: ``OpenLineage.json`` plus ``facets/*.json``,
Apache-2.0, spec version and origin in its ``NOTICE.txt``) and are read through ``importlib.resources``
(:func:`spec_dir`). Every file is registered in a ``referencing.Registry`` under
its ``$id`` so the facet schemas' references to the core schema resolve offline.

Two modes:

* strict (:func:`validate_event`): the events we emit must match the spec exactly.
* lenient (what the lineage store accepts, like Marquez): ``schemaURL``, ``_producer`` and ``_schemaURL``
  may be missing and timestamps may lack an offset (read as UTC). Everything else is still checked.

A facet whose ``_schemaURL`` names a known schema (a standard facet, or one of ours passed in
``extra_schemas``) is validated against that schema; any other facet only against the core BaseFacet shape.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from importlib import resources
from importlib.resources.abc import Traversable
from itertools import islice
from typing import Any, Final
from urllib.parse import urldefrag

from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from censustrace.errors import CensustraceError
from censustrace.lineage.fast_validation import fast_validators

CORE_SCHEMA_FILE: Final = "OpenLineage.json"
_MAX_MESSAGE: Final = 300
#: Problems reported per event at most: enough to fix it, bounded for a hostile one.
MAX_PROBLEMS: Final = 100
#: Facets plus datasets in one event at most. Schema validation costs ~50 µs each, so this bounds what
#: one (8 MiB) request can cost; real events carry tens.
MAX_PARTS: Final = 10_000

Json = dict[str, Any]


class OpenLineageSpecNotFound(CensustraceError):
    """The OpenLineage schemas shipped with the package are missing, unreadable or incomplete: a broken
    install. Nothing is validated without them, so start-up stops (exit code 2)."""

    code = "CT-LINEAGE-SPEC"
    exit_code = 2


#: Where the vendored schemas live inside the package (see ``schemas/openlineage/NOTICE.txt``).
SCHEMA_PACKAGE: Final = "censustrace.lineage"
SCHEMA_FOLDER: Final = ("schemas", "openlineage")
#: The OpenLineage spec version the vendored core schema is (its ``$id``).
SPEC_VERSION: Final = "2-0-2"


def spec_dir() -> Traversable:
    """The official schemas shipped in the package, read through ``importlib.resources`` (so they are
    found in a checkout, a wheel or a zip alike). Raises :class:`OpenLineageSpecNotFound` when the
    core schema is not there."""
    folder = resources.files(SCHEMA_PACKAGE).joinpath(*SCHEMA_FOLDER)
    if not folder.joinpath(CORE_SCHEMA_FILE).is_file():
        raise OpenLineageSpecNotFound(
            f"the package's OpenLineage schemas are missing ({SCHEMA_PACKAGE.replace('.', '/')}/"
            f"{'/'.join(SCHEMA_FOLDER)}/{CORE_SCHEMA_FILE}): reinstall censustrace"
        )
    return folder


def require_schemas() -> None:
    """Stop start-up with :class:`OpenLineageSpecNotFound` unless every vendored schema loads: called by
    the CLI, the lineage API and the transport before they take or send any event."""
    default_validator()


# Timestamps ------------------------------------------------------------------------------------------
_TIMESTAMP = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}:\d{2})(?:[.,](?P<frac>\d{1,}))?"
    r"(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?$"
)


def normalise_timestamp(text: str, *, require_offset: bool = True) -> str:
    """``text`` (RFC 3339 / ISO 8601) as UTC with nine fractional digits, e.g.
    ``2026-11-28T10:00:00.123456789Z``: exact to the nanosecond and sortable as a string.

    Raises ValueError naming what is wrong. Without an offset the time is read as UTC unless
    ``require_offset``."""
    match = _TIMESTAMP.match(text)
    if match is None:
        raise ValueError(f"{_clip(text)!s} is not an RFC 3339 date-time")
    offset = match["offset"]
    if offset is None and require_offset:
        raise ValueError(f"{_clip(text)} has no UTC offset")
    try:
        moment = datetime.fromisoformat(f"{match['date']}T{match['time']}")
    except ValueError as exc:
        raise ValueError(f"{_clip(text)} is not a valid date-time ({exc})") from None
    if offset and offset not in ("Z", "z"):
        sign = 1 if offset[0] == "+" else -1
        digits = offset[1:].replace(":", "")
        hours, minutes = int(digits[:2]), int(digits[2:4] or 0)
        if hours > 23 or minutes > 59:
            raise ValueError(f"{_clip(text)} has an invalid UTC offset")
        try:
            moment = moment.replace(tzinfo=timezone(sign * timedelta(hours=hours, minutes=minutes)))
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ValueError(f"{_clip(text)} is out of range") from None
    frac = (match["frac"] or "")[:9].ljust(9, "0")
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{frac}Z"


def timestamp_to_datetime(normalised: str) -> datetime:
    """A normalised timestamp as an aware datetime (microsecond precision)."""
    return datetime.fromisoformat(normalised[:26]).replace(tzinfo=UTC)


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_uuid(text: str) -> bool:
    """RFC 4122 textual form (8-4-4-4-12 hex digits)."""
    if len(text) != 36 or any(text[i] != "-" for i in (8, 13, 18, 23)):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:\S*$")


def _uuid_format(value: object) -> bool:
    return not isinstance(value, str) or is_uuid(value)


def _uri_format(value: object) -> bool:
    return not isinstance(value, str) or bool(_URI.match(value))


def _format_checker(*, lenient: bool) -> FormatChecker:
    # jsonschema's own date-time/uri checks need optional packages; these need none and accept
    # nanosecond fractions, which RFC 3339 allows and our producers send.
    def date_time(value: object) -> bool:
        if isinstance(value, str):
            normalise_timestamp(value, require_offset=not lenient)
        return True

    checker = FormatChecker(formats=())
    checker.checks("date-time", raises=ValueError)(date_time)
    checker.checks("uuid")(_uuid_format)
    checker.checks("uri")(_uri_format)
    return checker


def _format_functions(*, lenient: bool) -> dict[str, Callable[[Any], bool]]:
    """The checks of :func:`_format_checker` as yes/no functions (for the compiled validators)."""

    def date_time(value: object) -> bool:
        if not isinstance(value, str):
            return True
        try:
            normalise_timestamp(value, require_offset=not lenient)
        except ValueError:
            return False
        return True

    return {"date-time": date_time, "uuid": _uuid_format, "uri": _uri_format}


# Schemas ---------------------------------------------------------------------------------------------
def _load_schemas(folder: Traversable) -> dict[str, Json]:
    """Every schema file in the spec folder, keyed by its ``$id``."""
    schemas: dict[str, Json] = {}
    facets_folder = folder.joinpath("facets")
    try:
        facet_files = sorted(
            (p for p in facets_folder.iterdir() if p.name.endswith(".json")), key=lambda p: p.name
        )
    except OSError as exc:
        raise OpenLineageSpecNotFound(f"{facets_folder}: the facet schemas are unreadable ({exc})") from exc
    if not facet_files:
        raise OpenLineageSpecNotFound(f"{facets_folder}: no facet schemas")
    for path in [folder.joinpath(CORE_SCHEMA_FILE), *facet_files]:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise OpenLineageSpecNotFound(f"{path}: unreadable schema ({exc})") from exc
        schema_id = document.get("$id") if isinstance(document, dict) else None
        if not isinstance(schema_id, str):
            raise OpenLineageSpecNotFound(f"{path}: schema without $id")
        schemas[schema_id] = document
    return schemas


def _relax_core(core: Json) -> Json:
    """The core schema without the requirements Marquez does not enforce either."""
    relaxed = copy.deepcopy(core)
    defs = relaxed["$defs"]
    defs["BaseEvent"]["required"] = [r for r in defs["BaseEvent"]["required"] if r != "schemaURL"]
    defs["BaseFacet"]["required"] = []
    return relaxed


def _facet_sites(event: Json) -> Iterator[tuple[tuple[str | int, ...], str, Json]]:
    """(path, name, facet) of every facet object in the event."""

    def facets_at(
        container: object, path: tuple[str | int, ...]
    ) -> Iterator[tuple[tuple[str | int, ...], str, Json]]:
        if isinstance(container, dict):
            for name, facet in container.items():
                if isinstance(facet, dict):
                    yield (*path, name), name, facet

    run, job, dataset = event.get("run"), event.get("job"), event.get("dataset")
    if isinstance(run, dict):
        yield from facets_at(run.get("facets"), ("run", "facets"))
    if isinstance(job, dict):
        yield from facets_at(job.get("facets"), ("job", "facets"))
    if isinstance(dataset, dict):
        yield from facets_at(dataset.get("facets"), ("dataset", "facets"))
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        items = event.get(side)
        if isinstance(items, list):
            for index, item in enumerate(items):
                if isinstance(item, dict):
                    yield from facets_at(item.get("facets"), (side, index, "facets"))
                    yield from facets_at(item.get(extra), (side, index, extra))


def _count_parts(event: Json) -> int:
    """How many facets (of any type) and datasets the event holds."""

    def size(container: object) -> int:
        return len(container) if isinstance(container, dict | list) else 0

    def facets_of(holder: object, *keys: str) -> int:
        return sum(size(holder.get(key)) for key in keys) if isinstance(holder, dict) else 0

    total = facets_of(event.get("run"), "facets") + facets_of(event.get("job"), "facets")
    total += facets_of(event.get("dataset"), "facets")
    for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
        items = event.get(side)
        if isinstance(items, list):
            total += len(items) + sum(facets_of(item, "facets", extra) for item in items)
    return total


def event_kind(event: Json) -> str:
    """``RunEvent``, ``DatasetEvent`` or ``JobEvent``: from ``schemaURL`` when it names one (as Marquez
    does), else from the event's shape."""
    schema_url = event.get("schemaURL")
    if isinstance(schema_url, str):
        for kind in ("RunEvent", "DatasetEvent", "JobEvent"):
            if schema_url.endswith("/" + kind):
                return kind
    if "run" in event or "eventType" in event:
        return "RunEvent"
    if "dataset" in event:
        return "DatasetEvent"
    if "job" in event:
        return "JobEvent"
    return "RunEvent"


def json_path(parts: Sequence[str | int]) -> str:
    """``$.run.facets["my facet"][0]``: a JSONPath naming where a problem is."""
    out = "$"
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


_JSON_TYPES: Final = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return _JSON_TYPES.get(type(value), type(value).__name__)


def _leaves(error: ValidationError) -> Iterator[ValidationError]:
    # anyOf/oneOf wrap the real problems in ``context``; report those, not "not valid under any".
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


def _describe(error: ValidationError, prefix: tuple[str | int, ...]) -> str:
    parts = (*prefix, *error.absolute_path)
    validator = error.validator
    if validator == "required" and isinstance(error.message, str):
        missing = re.match(r"^'(.*)' is a required property$", error.message)
        if missing:
            return f"{json_path((*parts, missing[1]))}: required property is missing"
    if validator == "type":
        expected = error.validator_value
        wanted = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return f"{json_path(parts)}: expected {wanted}, got {_json_type(error.instance)}"
    if validator == "not":
        schema = error.validator_value
        fields = schema.get("required") if isinstance(schema, dict) else None
        if fields:
            return f"{json_path(parts)}: must not have all of {', '.join(map(str, fields))}"
        return f"{json_path(parts)}: matches a shape it must not"
    if validator == "format":
        cause = f" ({error.cause})" if error.cause else ""
        return f"{json_path(parts)}: not a valid {error.validator_value}{cause}"
    message = error.message
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return f"{json_path(parts)}: {message}"


class EventValidator:
    """Validates OpenLineage events against the core schema and the facet schemas it knows.

    ``extra_schemas`` maps a facet ``_schemaURL`` (with or without a ``#/$defs/...`` fragment) to its
    schema document, for our own facets.

    ``facet_cache_size`` > 0 remembers that many facet bodies found valid against their schema (by the
    sha256 of their canonical JSON) and does not check them again: producers send the same facet, such as
    a table's 30-field schema, with every event, and checking it costs about a millisecond. Only for
    events that are parsed JSON (what ``json.loads`` returns): a Python tuple serialises like a list but
    is not a JSON array to the validator."""

    def __init__(
        self,
        folder: Traversable | None = None,
        *,
        extra_schemas: Mapping[str, Mapping[str, Any]] | None = None,
        lenient: bool = False,
        facet_cache_size: int = 0,
    ) -> None:
        schemas = _load_schemas(folder or spec_dir())
        core_ids = [sid for sid, doc in schemas.items() if "BaseEvent" in doc.get("$defs", {})]
        if len(core_ids) != 1:
            raise OpenLineageSpecNotFound("the spec folder must hold exactly one core OpenLineage.json")
        self.core_id = core_ids[0]
        self.lenient = lenient
        if lenient:
            schemas[self.core_id] = _relax_core(schemas[self.core_id])
        for url, document in (extra_schemas or {}).items():
            base = urldefrag(url).url
            schemas[base] = dict(document)
            own_id = document.get("$id")
            if isinstance(own_id, str) and own_id != base:
                schemas[own_id] = dict(document)
        self._known = frozenset(schemas)
        self._registry: Registry[Any] = Registry().with_resources(
            (sid, Resource.from_contents(doc, default_specification=DRAFT202012))
            for sid, doc in schemas.items()
        )
        self._format_checker = _format_checker(lenient=lenient)
        self._fast = fast_validators(schemas.items(), _format_functions(lenient=lenient))
        self._validators: dict[str, Draft202012Validator | None] = {}
        self._facet_cache_size = facet_cache_size
        self._valid_facets: OrderedDict[bytes, None] = OrderedDict()
        self._valid_facets_lock = threading.Lock()

    def _validator(self, url: str) -> Draft202012Validator | None:
        """A validator for the schema at ``url`` or None if no known schema lives there."""
        if url in self._validators:
            return self._validators[url]
        validator: Draft202012Validator | None = None
        if urldefrag(url).url in self._known:
            try:
                self._registry.resolver().lookup(url)
            except Unresolvable:
                validator = None
            else:
                validator = Draft202012Validator(
                    {"$ref": url}, registry=self._registry, format_checker=self._format_checker
                )
        self._validators[url] = validator
        return validator

    def validate(self, event: object) -> list[str]:
        """Every problem in ``event`` as ``<JSONPath>: <what is wrong>``; empty when valid."""
        if not isinstance(event, dict):
            return [f"$: expected an OpenLineage event object, got {_json_type(event)}"]
        if _count_parts(event) > MAX_PARTS:
            return [f"$: more than {MAX_PARTS} facets and datasets in one event"]
        kind = event_kind(event)
        if self._all_valid_fast(event, f"{self.core_id}#/$defs/{kind}"):
            return []
        core = self._validator(f"{self.core_id}#/$defs/{kind}")
        assert core is not None, "the core schema defines every event kind"
        # Lazily, so a hostile event with a million faults costs no more than one with a hundred.
        problems = list(
            islice(
                (_describe(leaf, ()) for error in core.iter_errors(event) for leaf in _leaves(error)),
                MAX_PROBLEMS + 1,
            )
        )
        for path, _name, facet in _facet_sites(event):
            schema_url = facet.get("_schemaURL")
            if not isinstance(schema_url, str) or schema_url.startswith(self.core_id):
                continue  # the core schema has checked the BaseFacet shape
            validator = self._validator(schema_url)
            if validator is not None:
                key = self._facet_key(schema_url, facet)
                if key is not None and self._seen_valid(key):
                    continue
                found = list(
                    islice(
                        (
                            _describe(leaf, path)
                            for error in validator.iter_errors(facet)
                            for leaf in _leaves(error)
                        ),
                        MAX_PROBLEMS + 1,
                    )
                )
                if not found and key is not None:
                    self._remember_valid(key)
                problems.extend(found)
            if len(problems) > MAX_PROBLEMS:
                break
        unique = list(dict.fromkeys(problems))
        if len(unique) > MAX_PROBLEMS:
            unique = [*unique[:MAX_PROBLEMS], f"$: and {len(unique) - MAX_PROBLEMS} more problems"]
        return unique

    def _all_valid_fast(self, event: Json, core_url: str) -> bool:
        """True when the compiled validators find the event and each of its facets valid (then the
        detailed check would find nothing); False sends the event down the detailed path."""
        fast = self._fast
        if fast is None or fast.is_valid(core_url, event) is not True:
            return False
        for _path, _name, facet in _facet_sites(event):
            schema_url = facet.get("_schemaURL")
            if not isinstance(schema_url, str) or schema_url.startswith(self.core_id):
                continue
            if urldefrag(schema_url).url in self._known and fast.is_valid(schema_url, facet) is not True:
                return False
        return True

    def _facet_key(self, schema_url: str, facet: Json) -> bytes | None:
        if self._facet_cache_size <= 0:
            return None
        try:
            text = json.dumps(
                facet, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
            )
        except (TypeError, ValueError, RecursionError):
            return None
        return hashlib.sha256(f"{schema_url}\n{text}".encode("utf-8", "surrogatepass")).digest()

    def _seen_valid(self, key: bytes) -> bool:
        with self._valid_facets_lock:
            if key not in self._valid_facets:
                return False
            self._valid_facets.move_to_end(key)
            return True

    def _remember_valid(self, key: bytes) -> None:
        with self._valid_facets_lock:
            self._valid_facets[key] = None
            while len(self._valid_facets) > self._facet_cache_size:
                self._valid_facets.popitem(last=False)


@lru_cache(maxsize=2)
def default_validator(*, lenient: bool = False) -> EventValidator:
    """A cached validator over the schemas in :func:`spec_dir`."""
    return EventValidator(spec_dir(), lenient=lenient)


def validate_event(event: Json, extra_schemas: Mapping[str, Mapping[str, Any]] | None = None) -> list[str]:
    """Strictly validate one event (as the spec says); problems as ``<JSONPath>: <message>``."""
    if extra_schemas:
        return EventValidator(extra_schemas=extra_schemas).validate(event)
    return default_validator().validate(event)


def finite_json_loads(text: str | bytes) -> Any:
    """``json.loads`` that rejects NaN/Infinity and numbers too large for a float: the stores cannot
    hold them and they are not JSON."""

    def reject_constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    def parse_float(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            raise ValueError(f"number {_clip(literal, 40)} is out of range")
        return value

    return json.loads(text, parse_constant=reject_constant, parse_float=parse_float)
