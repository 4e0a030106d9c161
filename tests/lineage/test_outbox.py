from __future__ import annotations

from pathlib import Path

import pytest

from censustrace.lineage.outbox import DeliveryRejected, Outbox


class Backend:
    """A destination that can be down, up, or refusing particular events."""

    def __init__(self) -> None:
        self.up = False
        self.received: list[str] = []
        self.refuse: set[str] = set()

    def deliver(self, payload: str) -> None:
        if not self.up:
            raise ConnectionError("connection refused")
        if payload in self.refuse:
            raise DeliveryRejected("HTTP 422: bad event")
        self.received.append(payload)


def test_pending_events_survive_and_are_delivered_in_order(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    backend = Backend()
    for i in range(3):
        outbox.enqueue("http", f'{{"n": {i}}}', "connection refused")
    # Still down: nothing lost, attempts counted on the first entry only (order is kept).
    assert outbox.drain("http", backend.deliver) == {"delivered": 0, "rejected": 0, "pending": 3}
    entries = outbox.entries("http")
    assert [e.attempts for e in entries] == [2, 1, 1]
    assert "connection refused" in entries[0].last_error
    backend.up = True
    assert outbox.drain("http", backend.deliver) == {"delivered": 3, "rejected": 0, "pending": 0}
    assert backend.received == ['{"n": 0}', '{"n": 1}', '{"n": 2}']
    assert outbox.entries() == []


def test_rejected_events_are_kept_as_failed_not_retried(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    backend = Backend()
    backend.up = True
    backend.refuse.add('{"bad": 1}')
    outbox.enqueue("http", '{"bad": 1}', "timeout")
    outbox.enqueue("http", '{"good": 1}', "timeout")
    assert outbox.drain("http", backend.deliver) == {"delivered": 1, "rejected": 1, "pending": 0}
    (failed,) = outbox.entries("http")
    assert failed.failed
    assert failed.as_dict()["state"] == "failed"
    assert "422" in failed.last_error
    assert failed.path.read_text() == '{"bad": 1}'


def test_same_event_enqueued_twice_is_kept_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    first = outbox.enqueue("store", '{"a": 1}', "locked")
    second = outbox.enqueue("store", '{"a": 1}', "locked")
    assert first == second
    (entry,) = outbox.entries()
    assert entry.attempts == 2


@pytest.mark.parametrize("destination", ["store", "http"])
def test_entries_are_listed_per_destination(tmp_path: Path, destination: str) -> None:
    outbox = Outbox(tmp_path)
    outbox.enqueue(destination, "{}", "down")
    assert [e.destination for e in outbox.entries()] == [destination]
    assert outbox.entries("other") == []


def test_two_concurrent_drainers_and_an_emitter_lose_nothing(tmp_path: Path) -> None:
    """Two drainers race over one outbox while new events keep arriving and the destination fails now
    and then: every event ends up delivered (at most once per drainer pass, the store dedupes), none is
    both gone and undelivered, and the outbox ends empty."""
    import random
    import threading

    outbox = Outbox(tmp_path)
    delivered: list[str] = []
    lock = threading.Lock()
    rng = random.Random(7)

    def flaky(payload: str) -> None:
        with lock:
            fail = rng.random() < 0.2
        if fail:
            raise ConnectionError("connection reset")
        with lock:
            delivered.append(payload)

    payloads = [f'{{"n": {i}}}' for i in range(300)]
    for payload in payloads[:150]:
        outbox.enqueue("store", payload, "down")
    errors: list[BaseException] = []
    emitted = threading.Event()

    def emitter() -> None:
        for payload in payloads[150:]:
            outbox.enqueue("store", payload, "down")
        emitted.set()

    def drainer() -> None:
        try:
            while not (emitted.is_set() and not outbox.entries("store")):
                outbox.drain("store", flaky, limit=20)
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (emitter, drainer, drainer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert set(delivered) == set(payloads)
    # The per-file lock: a drainer never delivers an entry another one is delivering.
    assert len(delivered) == len(payloads)
    assert outbox.entries() == []


def test_two_drainer_processes_fill_the_store_with_every_event(tmp_path: Path) -> None:
    """Real processes, a real SQLite lineage store: both drain at once, every event is stored once."""
    import os
    import subprocess
    import sys

    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.serde import Serde
    from openlineage.client.uuid import generate_new_uuid

    from censustrace.lineage.store.db import make_engine, upgrade
    from censustrace.lineage.store.ingest import export_raw_events

    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    upgrade(url)
    outbox = Outbox(tmp_path / "outbox")
    for i in range(60):
        event = RunEvent(
            eventType=RunState.COMPLETE,
            eventTime=f"2026-11-28T10:00:{i:02d}.000000Z",
            run=Run(runId=str(generate_new_uuid())),
            job=Job(namespace="censustrace", name=f"job{i}"),
            producer="https://example.invalid/censustrace-tests",
        )
        outbox.enqueue("store", Serde.to_json(event), "store was down")
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from censustrace.lineage.outbox import Outbox\n"
        "from censustrace.lineage.transport import StoreDestination\n"
        "outbox, dest = Outbox(Path(sys.argv[1])), StoreDestination(sys.argv[2])\n"
        "while outbox.entries('store'):\n"
        "    outbox.drain('store', dest.deliver, limit=5)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "outbox"), url], env=dict(os.environ))
        for _ in range(2)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    stored = list(export_raw_events(make_engine(url)))
    assert len(stored) == 60
    assert outbox.entries() == []


def test_a_transport_with_a_drain_interval_empties_the_outbox_by_itself(tmp_path: Path) -> None:
    """A worker's transport drains what earlier processes left, at start and periodically, with no new
    event and no `lineage flush`."""
    import time

    from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
    from openlineage.client.serde import Serde
    from openlineage.client.uuid import generate_new_uuid

    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events
    from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

    outbox = Outbox(tmp_path / "outbox")
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-28T10:00:00.000000Z",
        run=Run(runId=str(generate_new_uuid())),
        job=Job(namespace="censustrace", name="left.behind"),
        producer="https://example.invalid/censustrace-tests",
    )
    outbox.enqueue("store", Serde.to_json(event), "store was down")
    url = f"sqlite:///{tmp_path / 'lineage.db'}"
    config = CensustraceTransportConfig.from_dict(
        {"store_url": url, "outbox_dir": str(tmp_path / "outbox"), "drain_interval": 0.2}
    )
    CensustraceTransport(config)
    deadline = time.monotonic() + 60
    while outbox.entries() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.entries() == []
    assert len(list(export_raw_events(make_engine(url)))) == 1
    # Later arrivals (another process's queued event) are picked up by the next round.
    later = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime="2026-11-28T10:01:00.000000Z",
        run=Run(runId=str(generate_new_uuid())),
        job=Job(namespace="censustrace", name="later"),
        producer="https://example.invalid/censustrace-tests",
    )
    outbox.enqueue("store", Serde.to_json(later), "store was down")
    deadline = time.monotonic() + 60
    while outbox.entries() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.entries() == []
    assert len(list(export_raw_events(make_engine(url)))) == 2
