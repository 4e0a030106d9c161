"""Our OpenLineage transport, driven by the real openlineage-python client: store + HTTP + outbox."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from openlineage.client.uuid import generate_new_uuid

from censustrace.config import Settings
from censustrace.lineage.outbox import Outbox
from censustrace.lineage.store.db import make_engine
from censustrace.lineage.store.ingest import export_raw_events
from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_api(store_url: str, port: int) -> Iterator[str]:
    import uvicorn

    from censustrace.viewer.lineage_api import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(Settings(lineage_url=store_url)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "API did not start"
        assert time.monotonic() < deadline, "API did not start in time"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/api/v1/lineage"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _event(job: str = "census_ingest.receive") -> RunEvent:
    return RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-28T10:00:00.000000Z",
        run=Run(runId=str(generate_new_uuid())),
        job=Job(namespace="censustrace", name=job),
        producer="https://example.invalid/censustrace-tests",
    )


def _stored(url: str) -> list[dict]:
    return [json.loads(body) for body in export_raw_events(make_engine(url))]


def _transport(tmp_path: Path, http_url: str | None) -> CensustraceTransport:
    config = CensustraceTransportConfig.from_dict(
        {
            "store_url": f"sqlite:///{tmp_path / 'local.db'}",
            "http_url": http_url,
            "outbox_dir": str(tmp_path / "outbox"),
            "timeout": 2,
        }
    )
    return CensustraceTransport(config)


def test_store_only_needs_no_server(tmp_path: Path) -> None:
    transport = _transport(tmp_path, None)
    client = OpenLineageClient(transport=transport)
    event = _event()
    client.emit(event)
    (stored,) = _stored(f"sqlite:///{tmp_path / 'local.db'}")
    assert stored["run"]["runId"] == event.run.runId
    assert Outbox(tmp_path / "outbox").entries() == []


def test_http_backend_down_keeps_events_then_delivers_them_in_order(tmp_path: Path) -> None:
    port = _free_port()
    transport = _transport(tmp_path, f"http://127.0.0.1:{port}/api/v1/lineage")
    client = OpenLineageClient(transport=transport)
    events = [_event(f"job{i}") for i in range(3)]
    for event in events:
        client.emit(event)
    # The local store has them all; the HTTP copies wait in the outbox, nothing dropped.
    assert len(_stored(f"sqlite:///{tmp_path / 'local.db'}")) == 3
    pending = Outbox(tmp_path / "outbox").entries("http")
    assert len(pending) == 3
    assert all(not e.failed for e in pending)
    assert "ConnectError" in pending[0].last_error or "refused" in pending[0].last_error.lower()

    remote = f"sqlite:///{tmp_path / 'remote.db'}"
    with serve_api(remote, port):
        assert transport.flush()["http"] == {"delivered": 3, "rejected": 0, "pending": 0}
        received = _stored(remote)
    assert [e["job"]["name"] for e in received] == ["job0", "job1", "job2"]
    assert Outbox(tmp_path / "outbox").entries() == []


def test_event_refused_by_backend_is_kept_as_failed(tmp_path: Path) -> None:
    port = _free_port()
    remote = f"sqlite:///{tmp_path / 'remote.db'}"
    transport = _transport(tmp_path, f"http://127.0.0.1:{port}/api/v1/lineage")
    # Valid JSON with an unknown eventType: the API refuses it with 422; retrying would not help.
    bad = json.dumps({**json.loads(Serde.to_json(_event())), "eventType": "NOT_A_STATE"})
    with serve_api(remote, port):
        report = transport.emit_json(bad)
    assert "http" in report.queued
    (entry,) = Outbox(tmp_path / "outbox").entries("http")
    assert entry.failed
    assert "422" in entry.last_error
    assert _stored(remote) == []


@pytest.mark.parametrize("missing", ["outbox_dir"])
def test_transport_config_requires_an_outbox(missing: str) -> None:
    with pytest.raises(ValueError, match=missing):
        CensustraceTransportConfig.from_dict({"store_url": "sqlite://"})


def test_unreachable_store_keeps_events_and_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # A PostgreSQL store on a port where nothing listens: the connection is refused.
    down = f"postgresql+psycopg2://postgres@127.0.0.1:{_free_port()}/lineage?connect_timeout=2"
    config = CensustraceTransportConfig.from_dict({"store_url": down, "outbox_dir": str(tmp_path / "ob")})
    with caplog.at_level("ERROR", logger="censustrace.lineage.transport"):
        OpenLineageClient(transport=CensustraceTransport(config)).emit(_event())
    assert "lineage destination store unreachable" in caplog.text
    (entry,) = Outbox(tmp_path / "ob").entries("store")
    assert not entry.failed
    # The store is reachable again (here: at its restored address): a fresh transport, as in the next
    # task, delivers what was kept.
    back = f"sqlite:///{tmp_path / 'lineage.db'}"
    restored = CensustraceTransportConfig.from_dict({"store_url": back, "outbox_dir": str(tmp_path / "ob")})
    assert CensustraceTransport(restored).flush() == {"store": {"delivered": 1, "rejected": 0, "pending": 0}}
    assert len(_stored(back)) == 1


def test_store_url_settings_reads_the_lineage_url_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment's Airflow config names no database URL (it carries a password): ``settings``."""
    from censustrace.config import get_settings

    url = f"sqlite:///{tmp_path / 'from-settings.db'}"
    monkeypatch.setenv("CENSUSTRACE_LINEAGE_URL", url)
    get_settings.cache_clear()
    try:
        config = CensustraceTransportConfig.from_dict(
            {"store_url": "settings", "outbox_dir": str(tmp_path / "ob")}
        )
    finally:
        get_settings.cache_clear()
    assert config.store_url == url
