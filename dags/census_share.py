"""census_share__<agreement>: one DAG per data sharing agreement in ``policies/agreements/``.

Wiring only; the work lives in ``censustrace.shares`` (see docs/shares.md).
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from censustrace.airflow.operators import BuildShareOperator, CheckShareOperator, ReleaseShareOperator
from censustrace.airflow.share_dags import share_dag_specs
from censustrace.config import get_settings
from censustrace.consent.clock import release_day

for spec in share_dag_specs(get_settings().policies_dir, release_day()):
    with DAG(
        dag_id=spec.dag_id,
        schedule=spec.schedule,
        start_date=pendulum.datetime(
            spec.start_date.year, spec.start_date.month, spec.start_date.day, tz="UTC"
        ),
        catchup=False,
        doc_md=spec.doc,
        description=f"Share with {spec.recipient} for {spec.purpose}",
        tags=list(spec.tags),
        default_args={"owner": "census-data-sharing", "retries": 2, "retry_delay": timedelta(minutes=1)},
        max_active_runs=1,
    ) as dag:
        checked = CheckShareOperator(task_id="check", agreement_id=spec.agreement_id)
        built = BuildShareOperator(task_id="build", previous=checked.output)
        ReleaseShareOperator(task_id="release", previous=built.output)
    globals()[spec.dag_id] = dag
