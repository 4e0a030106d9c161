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
