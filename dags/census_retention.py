"""census_retention: erase what must not be kept, weekly, with a lineage event per erasure.

Wiring only; the work lives in ``censustrace.compliance.retention`` (see docs/operations.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from censustrace.airflow.operators import ApplyRetentionOperator

DOC = """
### Retention
Weekly, erases from the warehouse the items the policy says must not be kept: `never_share` legacy
items (nationality, country of birth) and fields whose retention has ended. Each erasure (rule, table,
field, rows, extracts) is recorded in the `erasures` table and as an OpenLineage event; shares made
earlier still trace back to their received files, because lineage links exact versions.
"""

with DAG(
    dag_id="census_retention",
    schedule="0 3 * * 0",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=DOC,
    tags=["census", "retention"],
    default_args={"owner": "census-data-engineering", "retries": 2, "retry_delay": timedelta(minutes=5)},
    max_active_runs=1,
):
    ApplyRetentionOperator(task_id="apply_retention")
