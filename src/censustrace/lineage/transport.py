"""The OpenLineage transport censustrace configures everywhere (Airflow provider, CLI, tests).

One transport, several destinations, configured in one place (``Settings.openlineage_transport``):
- the lineage **store** (always): the embedded default, no server needed;
- an OpenLineage **HTTP** endpoint (optional): our own API elsewhere, or Marquez.
An event a destination cannot take now goes to the outbox and is retried before the next event to that
destination, by ``censustrace lineage flush``, and (``drain_interval`` > 0, as Airflow workers and the
viewer are configured) by a background drainer each process starts with its first transport: once at
start, then every ``drain_interval`` seconds. The run goes on and the failure is logged clearly.

Composed from the OpenLineage client's pieces: the fan-out is its ``CompositeTransport`` (every
destination gets every event), HTTP is its ``HttpTransport`` (or ``AsyncHttpTransport`` on Airflow
workers), and each destination sits behind our durable outbox (:class:`OutboxTransport`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

import attr
from openlineage.client.serde import Serde
from openlineage.client.transport.composite import CompositeTransport
from openlineage.client.transport.http import HttpConfig, HttpTransport
from openlineage.client.transport.transport import Config, Transport

from censustrace.lineage.outbox import DeliveryRejected, Outbox

if TYPE_CHECKING:
    from openlineage.client.client import Event
    from requests import Response
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

#: ``store_url`` value meaning "the lineage store of censustrace's settings" (``CENSUSTRACE_LINEAGE_URL``).
SETTINGS_STORE = "settings"

# How many older outbox events to retry before each new one (keeps emission cheap when a backend is down).
_DRAIN_BATCH = 50


class Destination(Protocol):
    name: str

    def deliver(self, payload: str) -> None: ...


class StoreDestination:
    """Writes the event into the lineage store (SQLAlchemy URL)."""

    name = "store"

    def __init__(self, url: str) -> None:
        from censustrace.lineage.spec import require_schemas

        # A broken install (no OpenLineage schemas) stops here rather than storing events unchecked
        # or filing every event as refused.
        require_schemas()
        self.url = url
        self._engine: Engine | None = None

    def deliver(self, payload: str) -> None:
        from censustrace.errors import CensustraceError
        from censustrace.lineage.spec import OpenLineageSpecNotFound
        from censustrace.lineage.store.db import make_engine, upgrade
        from censustrace.lineage.store.ingest import store_event

        if self._engine is None:
            # Idempotent and cheap once at head; a fresh home then needs no separate init step.
            upgrade(self.url)
            self._engine = make_engine(self.url)
        try:
            store_event(self._engine, payload)
        except OpenLineageSpecNotFound:
            raise  # the install is broken, not the event: keep it pending
        except CensustraceError as exc:
            raise DeliveryRejected(str(exc)) from exc


class _PayloadHttpTransport(HttpTransport):
    """The client's ``HttpTransport`` (session, auth header, TLS settings) posting an event's exact JSON
    text, as it arrived or was queued, rather than re-serialising an event object."""

    def post(self, payload: str) -> Response:
        body, headers = self._prepare_request(payload)
        response = self.session.post(
            url=urljoin(self.url, self.endpoint),
            data=body,
            headers=headers,
            timeout=self.timeout,
            verify=self.verify,
        )
        response.close()
        return response


class HttpDestination:
    """POSTs the event to an OpenLineage HTTP endpoint (``.../api/v1/lineage``) with the client's
    ``HttpTransport``. No retries of its own: the outbox retries, and keeps the order."""

    name = "http"

    def __init__(self, url: str, api_key: str | None, timeout: float) -> None:
        params: dict[str, Any] = {
            "url": url,
            "endpoint": "",
            "timeout": timeout,
            "retry": {"total": 0, "status_forcelist": []},
        }
        if api_key:
            params["auth"] = {"type": "api_key", "apiKey": api_key}
        self.url = url
        self.sender = _PayloadHttpTransport(HttpConfig.from_dict(params))

    def deliver(self, payload: str) -> None:
        response = self.sender.post(payload)
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise ConnectionError(f"HTTP {response.status_code} from {self.url}")
        if response.status_code >= 400:
            raise DeliveryRejected(f"HTTP {response.status_code} from {self.url}: {response.text[:300]}")


class AsyncHttpDestination:
    """Hands the event to the client's ``AsyncHttpTransport`` and returns (Airflow workers: a task never
    waits for the endpoint); undelivered events go to the outbox (``lineage.async_delivery``)."""

    name = "http"

    def __init__(self, url: str, api_key: str | None, timeout: float, outbox: Outbox) -> None:
        from censustrace.lineage.async_delivery import OutboxAsyncHttpTransport

        self.sender = OutboxAsyncHttpTransport(url, api_key, timeout, outbox, self.name)

    def deliver(self, payload: str) -> None:
        self.sender.send(payload)


@attr.define
class CensustraceTransportConfig(Config):
    outbox_dir: str
    store_url: str | None = None
    http_url: str | None = None
    timeout: float = 5.0
    #: Seconds between background drains of the outbox (0: only on the next event and on flush).
    drain_interval: float = 0.0
    #: Send to ``http_url`` without waiting (AsyncHttpTransport; Airflow workers), else synchronously.
    http_async: bool = False
    #: For the fan-out (``CompositeTransport``): every destination gets every event, and our outbox
    #: transports never raise for an event they could not deliver, only when the outbox itself fails.
    continue_on_failure: bool = False
    continue_on_success: bool = True

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> CensustraceTransportConfig:
        if not params.get("outbox_dir"):
            raise ValueError("censustrace transport: 'outbox_dir' is required")
        store_url = params.get("store_url") or None
        if store_url == SETTINGS_STORE:
            # Deployments name no URL (it holds a password) in Airflow's config: read CENSUSTRACE_LINEAGE_URL.
            from censustrace.config import get_settings

            store_url = get_settings().lineage_db_url
        return cls(
            outbox_dir=str(params["outbox_dir"]),
            store_url=store_url,
            http_url=params.get("http_url") or None,
            timeout=float(params.get("timeout", 5.0)),
            drain_interval=float(params.get("drain_interval") or 0.0),
            http_async=str(params.get("http_async", False)).lower() in ("true", "1"),
        )


@dataclass
class EmitReport:
    delivered: list[str]
    queued: list[str]


class OutboxTransport(Transport):
    """One destination behind the durable outbox: older events still waiting for it go first (up to
    ``_DRAIN_BATCH``), then this one; what it cannot take now is queued, never raised."""

    kind = "censustrace-outbox"

    def __init__(self, destination: Destination, outbox: Outbox) -> None:
        self.destination = destination
        self.name = destination.name
        self.outbox = outbox

    def emit(self, event: Event) -> bool:
        return self.send(Serde.to_json(event))

    def send(self, payload: str) -> bool:
        """Deliver ``payload``: True if delivered now, False if it waits in the outbox."""
        dest = self.destination
        backlog = [e for e in self.outbox.entries(dest.name) if not e.failed]
        if backlog:
            try:
                self.outbox.drain(dest.name, dest.deliver, limit=_DRAIN_BATCH)
            except Exception:  # the new event must still be delivered or queued below
                log.exception("lineage outbox %s: draining the backlog failed", dest.name)
            if any(not e.failed for e in self.outbox.entries(dest.name)):
                # Still backed up: queue behind the older events to keep their order.
                self.outbox.enqueue(dest.name, payload, "queued behind undelivered events")
                return False
        try:
            dest.deliver(payload)
        except DeliveryRejected as exc:
            path = self.outbox.enqueue(dest.name, payload, str(exc), failed=True)
            log.error("lineage event rejected by %s (%s); kept in %s", dest.name, exc, path.parent)
            return False
        except Exception as exc:
            path = self.outbox.enqueue(dest.name, payload, f"{type(exc).__name__}: {exc}")
            log.error(
                "lineage destination %s unreachable (%s: %s); event kept in %s for retry",
                dest.name,
                type(exc).__name__,
                exc,
                path.parent,
            )
            return False
        return True

    def flush(self) -> dict[str, int]:
        """Retry everything pending for this destination."""
        return self.outbox.drain(self.destination.name, self.destination.deliver)


class CensustraceTransport(CompositeTransport):
    """The client's ``CompositeTransport`` over one :class:`OutboxTransport` per destination."""

    kind = "censustrace"
    config_class = CensustraceTransportConfig  # type: ignore[assignment]
    config: CensustraceTransportConfig  # type: ignore[assignment]

    def __init__(self, config: CensustraceTransportConfig) -> None:
        self.config = config
        self.outbox = Outbox(Path(config.outbox_dir))
        self.destinations: list[Destination] = []
        if config.store_url:
            self.destinations.append(StoreDestination(config.store_url))
        if config.http_url:
            from censustrace.config import get_settings

            key = get_settings().lineage_http_api_key
            secret = key.get_secret_value() if key else None
            if config.http_async:
                self.destinations.append(
                    AsyncHttpDestination(config.http_url, secret, config.timeout, self.outbox)
                )
            else:
                self.destinations.append(HttpDestination(config.http_url, secret, config.timeout))
        self.outboxed = [OutboxTransport(dest, self.outbox) for dest in self.destinations]
        if config.drain_interval > 0:
            start_background_drain(self)

    @cached_property
    def transports(self) -> list[Transport]:
        return list(self.outboxed)

    def emit(self, event: Event) -> None:
        if self.outboxed:  # no destination configured: nothing to do (CompositeTransport would raise)
            super().emit(event)

    def emit_json(self, payload: str) -> EmitReport:
        """Send an event's JSON text to every destination (what ``emit`` does for an event object)."""
        report = EmitReport(delivered=[], queued=[])
        for transport in self.outboxed:
            delivered = transport.send(payload)
            (report.delivered if delivered else report.queued).append(transport.destination.name)
        return report

    def flush(self) -> dict[str, dict[str, int]]:
        """Retry everything pending, destination by destination."""
        return {transport.destination.name: transport.flush() for transport in self.outboxed}


# Background drainer: one per process and outbox configuration ------------------------------------------
_drainers: dict[tuple[str, str | None, str | None], threading.Thread] = {}
_drainers_lock = threading.Lock()


def start_background_drain(transport: CensustraceTransport) -> threading.Thread:
    """Drain ``transport``'s outbox now and then every ``drain_interval`` seconds, in a daemon thread
    (started once per process for the same outbox and destinations). Per-file locks in the outbox keep
    this safe beside other processes' drainers and the next event's own drain."""
    config = transport.config
    key = (config.outbox_dir, config.store_url, config.http_url)
    with _drainers_lock:
        running = _drainers.get(key)
        if running is not None and running.is_alive():
            return running

        def loop() -> None:
            stop = threading.Event()
            while not stop.is_set():
                try:
                    if transport.outbox.entries():
                        transport.flush()
                except Exception:  # keep retrying: a destination may come back
                    log.exception("lineage outbox: background drain failed")
                stop.wait(config.drain_interval)

        thread = threading.Thread(target=loop, name="censustrace-outbox-drain", daemon=True)
        _drainers[key] = thread
        thread.start()
        return thread
