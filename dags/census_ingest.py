"""census_ingest: receive school census files from the landing folder into the warehouse.

Wiring only; the work lives in ``censustrace.intake`` (see docs/architecture.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, dag, task

from censustrace.airflow.operators import IngestBatchOperator

# Downstream DAGs (shares) are scheduled on this asset: it changes whenever an extract is published.
WAREHOUSE_PUPILS = Asset("censustrace://warehouse/pupil")

DOC = """
### Census ingest
Every 15 minutes, picks up the census files waiting in the landing folder (`$CENSUSTRACE_HOME/landing`;
School Census XML, CTF XML, LA CSV tables), and any extract an earlier run archived but did not finish.

**discover** cuts the work into batches (`CENSUSTRACE_INGEST_BATCH_FILES`, `_BATCH_BYTES`); one mapped
**ingest_batch** task per batch, labelled with its files. In each batch, every file is:

1. **received**: its exact bytes kept in the content-addressed archive (sha256, read-only) and the
   extract registered (same bytes twice: `duplicate`, nothing loaded again);
2. **staged**: parsed from the archived bytes into staging tables in one transaction;
3. **validated**: the Great Expectations suites in `expectations/` run once per batch over every staged
   row and are split back per file: critical row failures reject those records (reason codes kept),
   too many of them or a failed table check quarantine that file; warnings load and are logged;
4. **published**: its staged rows moved into `pupil`, `pupil_address`, `fsm_period` in one transaction;
   a resubmission supersedes the school's earlier extract for that term (both are kept).

A file that cannot be read is **quarantined** byte for byte with a reason file and stable error codes;
the other files of its batch go on, and the task stays green. The task log has one line per file
(status, counts, codes, its trace and Data Docs links). Every file has its own OpenLineage runs, children
of its batch task's run. **summarise** lists every file's outcome from the extract registry. **verdict**
turns the run red when any step failed for a reason other than a file's own quarantine.
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
    def discover() -> list[dict[str, Any]]:
        """The landed files (and unfinished extracts) in batches."""
        from censustrace.airflow.tasks import discover_batches

        return discover_batches()  # a configuration error fails at once: retrying cannot fix it

    batches = IngestBatchOperator.partial(
        task_id="ingest_batch", outlets=[WAREHOUSE_PUPILS], map_index_template=IngestBatchOperator.LABEL
    ).expand(batch=discover())

    @task(trigger_rule="all_done")
    def summarise(results: list[dict[str, Any]] | None) -> dict[str, Any]:
        """Every file's outcome in this run (loaded, quarantined, duplicate, waiting), from the registry."""
        from censustrace.airflow.tasks import summarise_batches

        return summarise_batches(list(results or []))

    @task(trigger_rule="none_failed")
    def verdict(summary: dict[str, Any]) -> dict[str, Any]:
        """Red means red: runs only if no step failed (summarise runs whatever happened, so it cannot
        be the last word)."""
        from censustrace.airflow.tasks import run_verdict

        return run_verdict(summary)

    summary = summarise(batches.output)
    [batches, summary] >> verdict(summary)


census_ingest()
