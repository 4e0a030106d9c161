"""Workers' non-blocking HTTP delivery (the OpenLineage client's AsyncHttpTransport) with the durable
outbox behind it: against the real lineage API (uvicorn) and against a port where nothing listens."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import Engine

from censustrace.config import Settings
from censustrace.lineage.outbox import Outbox
from censustrace.lineage.store import export_raw_events
from censustrace.lineage.transport import (
    AsyncHttpDestination,
    CensustraceTransport,
    CensustraceTransportConfig,
)
from tests.plugins.helpers.lineage_events import new_run_id, run_event


def _transport(tmp_path: Path, http_url: str) -> CensustraceTransport:
    config = CensustraceTransportConfig.from_dict(
        {"http_url": http_url, "outbox_dir": str(tmp_path / "outbox"), "timeout": 2, "http_async": True}
    )
    return CensustraceTransport(config)


def _pair() -> list[str]:
    run_id = new_run_id()
    return [json.dumps(run_event(state, run_id=run_id)) for state in ("START", "COMPLETE")]


def test_async_http_delivers_to_the_api_without_waiting(tmp_path: Path, api_url: str, engine: Engine) -> None:
    transport = _transport(tmp_path, f"{api_url}/api/v1/lineage")
    (destination,) = transport.destinations
    assert isinstance(destination, AsyncHttpDestination)
    events = _pair()
    for payload in events:
        transport.emit_json(payload)
    destination.sender.close_to_outbox()
    assert sorted(export_raw_events(engine)) == sorted(events)
    assert Outbox(tmp_path / "outbox").entries() == []


def test_async_http_endpoint_down_keeps_events_in_the_outbox(tmp_path: Path) -> None:
    transport = _transport(tmp_path, "http://127.0.0.1:9/api/v1/lineage")  # nothing listens on port 9
    (destination,) = transport.destinations
    assert isinstance(destination, AsyncHttpDestination)
    events = _pair()
    began = time.perf_counter()
    for payload in events:
        transport.emit_json(payload)
    assert time.perf_counter() - began < 1.0  # the task does not wait for the endpoint
    destination.sender.close_to_outbox()
    outbox = Outbox(tmp_path / "outbox")
    kept = outbox.entries("http")
    assert len(kept) == 2
    assert sorted(entry.path.read_text(encoding="utf-8") for entry in kept) == sorted(events)


def test_airflow_workers_get_the_async_transport() -> None:
    config = json.loads(
        Settings(lineage_http_url="http://example.invalid/api/v1/lineage").airflow_env()[
            "AIRFLOW__OPENLINEAGE__TRANSPORT"
        ]
    )
    assert config["http_async"] is True
