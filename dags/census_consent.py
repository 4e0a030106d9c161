"""census_consent: take schools' consent and objection files from ``landing/consent/``.

Wiring only; the work lives in ``censustrace.consent.landing`` (see docs/shares.md). census_ingest never
reads that folder.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from censustrace.airflow.operators import TakeConsentFilesOperator

DOC = """
### Consent files
Every 15 minutes, archives byte for byte and applies each consent file in `landing/consent/`
(`upn, purpose, decision, recorded_on, source`), by pupil key. Objections for pupils not seen yet are
kept and apply when the pupil appears (also under a FormerUPN); a file sent again is re-applied
idempotently. Shares judge objections again at release, so a late objection is never lost.
"""

with DAG(
    dag_id="census_consent",
    schedule="*/15 * * * *",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    doc_md=DOC,
    tags=["census", "consent"],
    default_args={"owner": "census-data-engineering", "retries": 2, "retry_delay": timedelta(minutes=1)},
    max_active_runs=1,
):
    TakeConsentFilesOperator(task_id="take_consent_files")
