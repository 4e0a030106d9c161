"""What one write transaction of the lineage store knows: the rows it has read or written.

``created_at`` and ``produced_at`` only ever move earlier, so a value read in a transaction is never earlier
than the stored one (see :mod:`censustrace.lineage.store.writer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final


@dataclass
class _Row:
    """A namespace, dataset or job as this transaction knows it (``created_at``: see above)."""

    id: int
    created_at: str
    parent_job_id: int | None = None


@dataclass
class _Version:
    """A dataset version as this transaction knows it (``created_at``, ``produced_at``: see above)."""

    id: int
    dataset_id: int
    version: str
    source: str
    created_at: str
    produced_at: str | None
    created_by_run_id: int | None
    #: Set when this (derived) version was replaced and deleted. Its id may then be reused (SQLite).
    replaced_by: _Version | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _Referrers:
    """Which stored rows point at a derived version, so that replacing it moves only those (what the
    current event has not written yet is moved in memory). Unknown: all True."""

    facets: bool = True
    lineage_output: bool = True
    lineage_input: bool = True
    links: bool = True


_UNKNOWN_REFERRERS: Final = _Referrers()
_NO_REFERRERS: Final = _Referrers(facets=False, lineage_output=False, lineage_input=False, links=False)
Produced = tuple[str, int | None]  # (produced_at, created_by_run_id)


@dataclass
class _Seen:
    """Rows one transaction has read or written, shared by the events of one :func:`store_events` batch.
    Dropped with the transaction: after a rollback they may not exist."""

    namespaces: dict[str, _Row] = field(default_factory=dict)
    datasets: dict[tuple[str, str], _Row] = field(default_factory=dict)
    jobs: dict[tuple[str, str], _Row] = field(default_factory=dict)
    versions: dict[tuple[int, str], _Version] = field(default_factory=dict)
    #: Datasets this transaction created: only the versions in ``versions`` can exist for them.
    new_datasets: set[int] = field(default_factory=set)
