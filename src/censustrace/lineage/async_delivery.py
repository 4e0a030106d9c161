"""Non-blocking delivery to an OpenLineage HTTP endpoint for Airflow workers, with the outbox behind it.

Workers send through the OpenLineage client's own ``AsyncHttpTransport`` (a background event loop,
bounded queue, retries, and terminal events held until their START went out), so a task never waits
for Marquez or a remote lineage API. What it cannot deliver (retries exhausted, or still unsent when
the process exits after ``close_timeout`` seconds) is written to the durable outbox, from where the
next event or ``censustrace lineage flush`` retries it. Not covered: a process killed with SIGKILL
loses what was still in memory for this destination (the lineage store, written synchronously, still
has every event; ``censustrace lineage export`` can replay it).
"""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import threading
from typing import Any

from openlineage.client.transport.async_http import AsyncHttpConfig, AsyncHttpTransport, Request

from censustrace.lineage.outbox import Outbox

log = logging.getLogger(__name__)


class OutboxAsyncHttpTransport(AsyncHttpTransport):
    """``send(payload)`` returns at once; undelivered events end up in ``outbox/<destination>/``."""

    def __init__(
        self,
        url: str,
        api_key: str | None,
        timeout: float,
        outbox: Outbox,
        destination: str,
        *,
        close_timeout: float = 10.0,
    ) -> None:
        params: dict[str, Any] = {"url": url, "endpoint": "", "timeout": timeout, "retry": {"total": 3}}
        if api_key:
            params["auth"] = {"type": "api_key", "apiKey": api_key}
        self._outbox = outbox
        self._destination = destination
        self._close_timeout = close_timeout
        self._bodies: dict[int, str] = {}
        self._bodies_lock = threading.Lock()
        super().__init__(AsyncHttpConfig.from_dict(params))
        atexit.register(self.close_to_outbox)

    def send(self, payload: str) -> None:
        try:
            event = json.loads(payload)
        except ValueError:
            event = {}
        run = event.get("run") if isinstance(event, dict) else None
        run_id = run.get("runId") if isinstance(run, dict) else None
        event_type = event.get("eventType") if isinstance(event, dict) else None
        if isinstance(run_id, str) and isinstance(event_type, str):
            event_id = f"{run_id}-{event_type}"
        else:
            run_id, event_type = None, None
            event_id = hashlib.md5(payload.encode("utf-8"), usedforsecurity=False).hexdigest()
        body, headers = self._prepare_request(payload)
        request = Request(event_id=event_id, body=body, headers=headers, run_id=run_id, event_type=event_type)
        with self._bodies_lock:
            self._bodies[id(request)] = payload
        # As AsyncHttpTransport.emit does: a terminal event waits for its START to be delivered.
        if run_id and event_type != "START" and self._add_pending_completion_event(request):
            return
        self._add_event(request)
        self.event_queue.put(request)

    def _mark_success(self, request: Request) -> list[Request]:
        with self._bodies_lock:
            self._bodies.pop(id(request), None)
        return super()._mark_success(request)

    def _mark_failed(self, request: Request) -> list[Request]:
        with self._bodies_lock:
            payload = self._bodies.pop(id(request), None)
        if payload is not None:
            path = self._outbox.enqueue(self._destination, payload, f"not delivered to {self.url}")
            log.error("lineage event not delivered to %s; kept in %s for retry", self.url, path.parent)
        return super()._mark_failed(request)

    def close_to_outbox(self) -> None:
        """Wait up to ``close_timeout`` for what is in flight, then keep the rest in the outbox."""
        if self.should_exit.is_set():
            return
        self.close(self._close_timeout)
        with self._bodies_lock:
            left, self._bodies = list(self._bodies.values()), {}
        for payload in left:
            self._outbox.enqueue(self._destination, payload, "not sent before the process ended")
        if left:
            log.error("%d lineage event(s) for %s kept in the outbox at exit", len(left), self.url)
