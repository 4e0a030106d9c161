"""census_ingest: receive school census files from the landing folder into the archive.

Wiring only; the work lives in ``censustrace.intake`` (see docs/architecture.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import dag, task

from censustrace.airflow.operators import ReceiveExtractOperator

DOC = """
### Census ingest
Picks up every census file in the landing folder (`$CENSUSTRACE_HOME/landing`), keeps its exact bytes in
the content-addressed archive (named by sha256, read-only) and emits OpenLineage events linking the
landed file to its archived version. One mapped task instance per file.
"""


@dag(
    dag_id="census_ingest",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=DOC,
    tags=["census", "ingest"],
    default_args={"owner": "census-data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1)},
    max_active_runs=1,
)
def census_ingest() -> None:
    @task
    def discover() -> list[str]:
        """List the census files waiting in the landing folder."""
        from censustrace.airflow.tasks import discover_landed_files

        return discover_landed_files()

    received = ReceiveExtractOperator.partial(task_id="receive").expand(path=discover())

    @task
    def summarise(receipts: list[dict[str, Any]]) -> dict[str, int]:
        """Count files received, new and already archived."""
        from censustrace.airflow.tasks import summarise_receipts

        return summarise_receipts(list(receipts))

    summarise(received.output)


census_ingest()
