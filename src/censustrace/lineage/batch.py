"""``POST /api/v1/lineage/batch`` (OpenLineage HTTP API ``postEventBatch``): an array of run, job or
dataset events, answered 200 with one outcome per event, so one bad event does not reject the rest.

Each element is checked and stored from its exact text (sliced out of the array, not re-serialised),
so the store keeps every event's raw text as it arrived, as for ``POST /api/v1/lineage``."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine

from censustrace.errors import CensustraceError
from censustrace.lineage.group_commit import Outcome, committer_for
from censustrace.lineage.ownership import LineageForbidden, Ownership, Producer
from censustrace.lineage.spec import EventValidator
from censustrace.lineage.store.parse import (
    LineageEventInvalid,
    LineageEventMalformed,
    ParsedEvent,
    parse_event,
)
from censustrace.lineage.store.writer import LineageConflict, StoreResult

_WHITESPACE = " \t\n\r"


class BatchNotArray(CensustraceError):
    """The body is not a JSON array (HTTP 400)."""

    code = "CT-LINEAGE-BATCH"


def split_array(body: bytes) -> list[str]:
    """The exact text of each element of a JSON array. Raises :class:`BatchNotArray`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BatchNotArray(f"$: body is not UTF-8 (invalid byte at offset {exc.start})") from None
    decoder = json.JSONDecoder()
    pos = _skip(text, 0)
    if not text.startswith("[", pos):
        found = "nothing" if pos == len(text) else repr(text[pos : pos + 20])
        raise BatchNotArray(f"$: expected a JSON array of OpenLineage events, found {found}")
    items: list[str] = []
    pos = _skip(text, pos + 1)
    if text.startswith("]", pos):
        return _end(text, pos + 1, items)
    while True:
        try:
            _, end = decoder.raw_decode(text, pos)
        except (json.JSONDecodeError, RecursionError) as exc:
            where = f" ({exc.msg} at character {exc.pos})" if isinstance(exc, json.JSONDecodeError) else ""
            raise BatchNotArray(f"$[{len(items)}]: malformed JSON{where}") from None
        items.append(text[pos:end])
        pos = _skip(text, end)
        if text.startswith(",", pos):
            pos = _skip(text, pos + 1)
        elif text.startswith("]", pos):
            return _end(text, pos + 1, items)
        else:
            raise BatchNotArray(f"$: expected ',' or ']' after element {len(items) - 1} (character {pos})")


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _WHITESPACE:
        pos += 1
    return pos


def _end(text: str, pos: int, items: list[str]) -> list[str]:
    if _skip(text, pos) != len(text):
        raise BatchNotArray(f"$: unexpected text after the array (character {pos})")
    return items


def _outcome(index: int, outcome: Outcome | LineageEventInvalid | LineageForbidden) -> dict[str, Any]:
    if isinstance(outcome, CensustraceError):
        if isinstance(outcome, LineageForbidden):
            return {"index": index, "status": 403, "code": outcome.code, "message": outcome.message}
        if isinstance(outcome, LineageEventInvalid):
            status = 400 if isinstance(outcome, LineageEventMalformed) else 422
            extra: dict[str, Any] = {"problems": outcome.problems}
        else:
            status = 409 if isinstance(outcome, LineageConflict) else 503
            extra = {}
        return {"index": index, "status": status, "code": outcome.code, "message": outcome.message, **extra}
    if outcome.duplicate:
        return {"index": index, "status": 200, "code": "duplicate", "message": "already stored"}
    return {"index": index, "status": 201, "code": "stored", "message": None}


def _checked(
    text: str | bytes,
    validator: EventValidator | None,
    producer: Producer | None,
    ownership: Ownership | None,
) -> ParsedEvent:
    """Parsed and validated; with ``ownership``, an external producer naming what the pipeline owns is
    refused (LineageForbidden, see censustrace.lineage.ownership)."""
    event = parse_event(text, validator)
    if ownership is not None:
        ownership.check(event, producer)
    return event


def store_batch(
    engine: Engine,
    body: bytes,
    validator: EventValidator | None = None,
    *,
    producer: Producer | None = None,
    ownership: Ownership | None = None,
) -> dict[str, Any]:
    """Check every element, store the valid ones (group commit), and report each: ``{"received",
    "stored", "duplicates", "rejected", "results": [{index, status, code, message}]}``."""
    texts = split_array(body)
    checked: list[ParsedEvent | LineageEventInvalid | LineageForbidden] = []
    for text in texts:
        try:
            checked.append(_checked(text, validator, producer, ownership))
        except (LineageEventInvalid, LineageForbidden) as exc:
            checked.append(exc)
    valid = [(i, event) for i, event in enumerate(checked) if isinstance(event, ParsedEvent)]
    label = producer.label if producer is not None else None
    stored = committer_for(engine).submit([event for _, event in valid], label)
    in_order = iter(stored)  # outcomes of the valid events, in their order
    results = [
        _outcome(index, next(in_order) if isinstance(event, ParsedEvent) else event)
        for index, event in enumerate(checked)
    ]
    return {
        "received": len(texts),
        "stored": sum(r["status"] == 201 for r in results),
        "duplicates": sum(r["status"] == 200 for r in results),
        "rejected": sum(r["status"] >= 400 for r in results),
        "results": results,
    }


def store_one(
    engine: Engine,
    body: bytes,
    validator: EventValidator | None = None,
    *,
    producer: Producer | None = None,
    ownership: Ownership | None = None,
) -> StoreResult:
    """``POST /api/v1/lineage``: check one event here, store it with the others in flight (group
    commit). Returns its StoreResult; raises what ``store_event`` raises."""
    event = _checked(body, validator, producer, ownership)
    (outcome,) = committer_for(engine).submit([event], producer.label if producer is not None else None)
    if isinstance(outcome, CensustraceError):
        raise outcome
    return outcome
