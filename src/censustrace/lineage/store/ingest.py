"""Storing OpenLineage events: check them, keep the exact text, index them in the normalised tables.

One transaction per event (or per batch in :func:`store_events`): an event is stored whole or not at all.
Checking and reading an event is :mod:`~censustrace.lineage.store.parse`; indexing it is
:mod:`~censustrace.lineage.store.writer`.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from censustrace.errors import CensustraceError
from censustrace.lineage.ownership import Ownership, Producer
from censustrace.lineage.spec import EventValidator
from censustrace.lineage.store.db import write_transaction
from censustrace.lineage.store.parse import LineageEventInvalid, ParsedEvent, Raw, parse_event
from censustrace.lineage.store.seen import _Seen
from censustrace.lineage.store.tables import raw_events
from censustrace.lineage.store.writer import StoreResult, _store

log = logging.getLogger(__name__)

T = TypeVar("T")
_RETRYABLE_PGCODES: Final = frozenset({"40001", "40P01"})  # serialization failure, deadlock


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
