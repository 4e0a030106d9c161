"""The share steps the share DAGs and the CLI call, each idempotent and taking and returning small
JSON-safe dicts (fit for XCom):

* ``check_share(agreement_id, settings, run_key=None)`` -> the share's summary (``share_id``), judged for
  today in Europe/London (there is no other day);
  a deny records a blocked share and raises ``ShareBlocked`` (its ``share`` is the summary);
* ``build_share(share_id, settings)`` -> summary;
* ``release_share(share_id, settings)`` -> summary, i.e. ``censustrace share ID --json``; it judges the
  share again for the day it leaves (refused: blocked; objections or agreement changed: rebuilt);
* ``run_share(agreement_id, settings)`` -> the three in a row (the CLI).

Pass ``lineage=StepLineage()`` to any step to get what it read and wrote (for the Airflow operator's
``get_openlineage_facets_on_complete``). The release commits its own event to the lineage store before
the file becomes visible; the others leave emitting to their caller.
"""

from __future__ import annotations

from typing import Any

from censustrace.config import Settings
from censustrace.lineage.model import StepLineage
from censustrace.shares.build import build_share
from censustrace.shares.check import check_share
from censustrace.shares.errors import ShareBlocked, ShareError, ShareLineageError, ShareOutboxError
from censustrace.shares.release import release_share


def run_share(
    agreement_id: str,
    settings: Settings,
    *,
    run_key: str | None = None,
    lineage: StepLineage | None = None,
) -> dict[str, Any]:
    """Check, build and release one share of ``agreement_id`` (resuming an unfinished one)."""
    checked = check_share(agreement_id, settings, run_key=run_key)
    share_id = str(checked["share_id"])
    build_share(share_id, settings)
    return release_share(share_id, settings, lineage=lineage)


__all__ = [
    "ShareBlocked",
    "ShareError",
    "ShareLineageError",
    "ShareOutboxError",
    "build_share",
    "check_share",
    "release_share",
    "run_share",
]
