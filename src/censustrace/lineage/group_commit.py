"""Group commit for the lineage API: many concurrent requests, few transactions.

Each request checks its event in its own thread (validation is the CPU-heavy part and needs no
database), then hands the checked event to this process's one writer thread and waits. The writer takes
everything that queued up while it was busy (up to ``max_batch``) and stores it in one transaction
(``store_parsed_events``), so sixteen concurrent clients cost a handful of commits, not sixteen, and the
writers never deadlock each other. A request is answered only after its transaction committed: a 201
still means the event (its raw text included) is durable.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Final

from sqlalchemy import Engine

from censustrace.errors import CensustraceError
from censustrace.lineage.store.ingest import LineageStoreUnavailable, store_parsed_events
from censustrace.lineage.store.parse import ParsedEvent
from censustrace.lineage.store.writer import StoreResult

log = logging.getLogger(__name__)

Outcome = StoreResult | CensustraceError
DEFAULT_MAX_BATCH: Final = 256


class GroupCommitter:
    """``submit(events)`` -> one outcome per event, stored together with whatever else is queued."""

    def __init__(self, engine: Engine, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[ParsedEvent, str | None, Future[Outcome]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def submit(self, events: Sequence[ParsedEvent], producer: str | None = None) -> list[Outcome]:
        """Blocks until every event's transaction ended (call it from a worker thread). ``producer``:
        the label recorded on the edges the events add (None: the pipeline's transport)."""
        self._ensure_thread()
        futures: list[Future[Outcome]] = []
        for event in events:
            future: Future[Outcome] = Future()
            self._queue.put((event, producer, future))
            futures.append(future)
        return [future.result() for future in futures]

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="lineage-group-commit")
                self._thread.start()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                outcomes = store_parsed_events(
                    self.engine, [event for event, _, _ in batch], [label for _, label, _ in batch]
                )
            except Exception as exc:  # never leave a request waiting for ever
                log.exception("lineage group commit failed")
                error = LineageStoreUnavailable(
                    f"the lineage store could not be written ({type(exc).__name__})"
                )
                outcomes = [error for _ in batch]
            for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                future.set_result(outcome)


_committers: dict[int, GroupCommitter] = {}
_committers_lock = threading.Lock()


def committer_for(engine: Engine) -> GroupCommitter:
    """This process's committer for ``engine`` (one writer thread per store)."""
    with _committers_lock:
        found = _committers.get(id(engine))
        if found is None or found.engine is not engine:
            found = _committers[id(engine)] = GroupCommitter(engine)
        return found
