"""census_ingest: receive school census files from the landing folder into the warehouse.

Wiring only; the work lives in ``censustrace.intake`` (see docs/architecture.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task, task_group

from censustrace.airflow.operators import (
    PublishExtractOperator,
    ReceiveExtractOperator,
    StageExtractOperator,
    ValidateExtractOperator,
)

# Downstream DAGs (shares) are scheduled on this asset: it changes whenever an extract is published.
WAREHOUSE_PUPILS = Asset("censustrace://warehouse/pupil")

DOC = """
### Census ingest
Every 15 minutes, picks up the census files waiting in the landing folder (`$CENSUSTRACE_HOME/landing`;
School Census XML, CTF XML, LA CSV tables). One mapped **ingest** group per file:

1. **receive**: keep the exact bytes in the content-addressed archive (sha256, read-only) and register
   the extract (same bytes twice: `duplicate`, nothing loaded again);
2. **stage**: parse the archived bytes into staging tables in one transaction;
3. **validate**: run the Great Expectations suites in `expectations/` on every staged row: critical
   row failures reject those records (reason codes kept), too many of them or a failed table check
   quarantine the extract and fail the task (red, reasons in the log); warnings load and are logged.
   Each instance links to its GX **Data Docs** page;
4. **publish**: move the staged rows into `pupil`, `pupil_address`, `fsm_period` in one transaction; a
   resubmission supersedes the school's earlier extract for that term (both are kept).

A file that cannot be read is **quarantined** byte for byte with a reason file and stable error codes:
its later instances show as *skipped* with the codes in the log, the other files go on. Each
mapped instance is labelled with its file name. **summarise** lists every file's outcome from the extract
registry. Every task emits OpenLineage events (landed file → archive → warehouse tables, exact versions).
"""


@dag(
    dag_id="census_ingest",
    schedule=timedelta(minutes=15),
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

    receive_results: list[Any] = []

    @task_group(group_id="ingest")
    def ingest(path: str) -> Any:
        received = ReceiveExtractOperator(task_id="receive", path=path)
        receive_results.append(received.output)
        staged = StageExtractOperator(task_id="stage", previous=received.output)
        validated = ValidateExtractOperator(task_id="validate", previous=staged.output)
        return PublishExtractOperator(
            task_id="publish", previous=validated.output, outlets=[WAREHOUSE_PUPILS]
        )

    @task(trigger_rule="all_done")
    def summarise(received: list[dict[str, Any]] | None) -> dict[str, Any]:
        """Every file's outcome in this run (loaded, quarantined, duplicate, waiting), from the registry."""
        from censustrace.airflow.tasks import summarise_extracts

        # Nothing landed: no mapped instances, so nothing to collect.
        return summarise_extracts(list(received or []))

    files = ingest.expand(path=discover())
    # Outside the group, the receive results arrive as one list: one entry per file.
    files >> summarise(receive_results[0])


census_ingest()
