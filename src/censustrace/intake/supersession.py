"""Supersession: which loaded extract is a school's current census.

A school's census for one term and year is the chain of its loaded **census returns** (School Census
XML and LA CSV files are both returns of that census; ``CENSUS_FORMATS``), ordered by when their bytes
were first received: each return supersedes the one received just before it, and the current view
shows the end of the chain. Two rules keep that honest:

* A CTF is an extract of its source school on the day in its header, not a census return: it joins no
  chain, supersedes nothing and is never current (the current views show census formats only).
* Order is by original receipt time (``received_at``, then registry id), not by when an extract was
  published: an older file published late (a slow task, or a quarantined file retried after a fix) never
  replaces a newer census. A retry keeps its original's ``received_at``.
"""

from __future__ import annotations

from sqlalchemy import Connection, select, update

from censustrace.intake.registry import ExtractRow
from censustrace.warehouse.tables import CENSUS_FORMATS, LOADED, extracts


def supersede(conn: Connection, row: ExtractRow) -> tuple[str | None, str | None]:
    """Put a census return being published into its school's chain (inside the publish transaction):
    ``(the extract it supersedes, the extract that supersedes it)``; ``(None, None)`` for a CTF."""
    if row.format not in CENSUS_FORMATS:
        return None, None
    loaded = conn.execute(
        select(extracts.c.id, extracts.c.extract_id, extracts.c.received_at)
        .where(
            extracts.c.laestab == row.laestab,
            extracts.c.term == row.term,
            extracts.c.year == row.year,
            extracts.c.format.in_(CENSUS_FORMATS),
            extracts.c.status == LOADED,
            extracts.c.part_of.is_(None),
            extracts.c.extract_id != row.extract_id,
        )
        .order_by(extracts.c.received_at, extracts.c.id)
        .with_for_update()
    ).all()
    mine = (row.received_at, row.id)
    previous = next((r.extract_id for r in reversed(loaded) if (r.received_at, r.id) < mine), None)
    following = next((r.extract_id for r in loaded if (r.received_at, r.id) > mine), None)
    if previous is not None:
        conn.execute(
            update(extracts).where(extracts.c.extract_id == previous).values(superseded_by=row.extract_id)
        )
    if following is not None:
        conn.execute(
            update(extracts).where(extracts.c.extract_id == following).values(supersedes=row.extract_id)
        )
    return previous, following
