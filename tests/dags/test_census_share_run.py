"""Real Airflow runs (dag.test()) of two share DAGs generated from the demo agreements.

One allowed agreement: the file reaches the recipient's outbox only with its share record, disclosure
log and lineage; the lineage is spec-valid, free of pupil data and traces back to the received files;
the release task links to the share's page in the viewer. One refused agreement: the run fails at the
check without retrying, a blocked share is recorded with its reasons, and nothing is written.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.intake.archive import sha256_of
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.spec import validate_event
from tests.plugins.helpers.privacy import identifiers_in, leaks

pytestmark = pytest.mark.dagrun

ALLOWED = "la330-sen-transport-2026"
REFUSED = "home-office-immigration-2026"


def _run(dags: dict[str, Any], dag_id: str) -> Any:
    return dags[dag_id].test()


def _events(settings: Settings) -> list[dict[str, Any]]:
    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.store.ingest import export_raw_events

    return [json.loads(body) for body in export_raw_events(make_engine(settings.lineage_db_url))]


def test_allowed_share_is_released_with_lineage_and_refused_one_is_blocked(
    airflow_db: Settings, clean_state: Settings, tmp_path: Path, dags: dict[str, Any]
) -> None:
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from censustrace.shares.register import list_shares

    settings = clean_state
    from censustrace.census.codes import term_containing
    from censustrace.consent.clock import release_day

    term, year = term_containing(release_day())  # the sample of the term containing today, as the demo
    manifest = generate(
        GeneratorOptions(
            schools=2, pupils_per_school=40, term=term, year=year, la="330", seed=11,
            fmt="xml", faults=0.0, consents=True, out=tmp_path / "gen",
        )
    )  # fmt: skip
    files = [tmp_path / "gen" / f["file"] for f in manifest["files"]]
    # Loaded by hand, through the CLI: its lineage must trace like census_ingest's.
    done = subprocess.run(
        [sys.executable, "-m", "censustrace.cli", "ingest", "--json", *map(str, files)],
        capture_output=True,
        text=True,
        env={**os.environ, "CENSUSTRACE_HOME": str(settings.home)},
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [json.loads(line)["status"] for line in done.stdout.splitlines()] == ["loaded", "loaded"]
    for consent in manifest["consents"]:
        ingest_consent_file(tmp_path / "gen" / consent["file"], settings)

    run = _run(dags, f"census_share__{ALLOWED}")
    assert "success" in str(run.state)
    (share,) = [s for s in list_shares(settings) if s.agreement_id == ALLOWED]
    assert share.status == "delivered"
    outbound = Path(str(share.file_path))
    assert outbound.is_file()
    assert outbound.is_relative_to(settings.share_outbox_dir)
    assert sha256_of(outbound) == share.sha256
    with outbound.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == share.pupils > 0
    assert set(rows[0]) >= {"forename", "surname", "sen_provision"}

    # The release task links to the share's page in the viewer.
    with create_session() as session:
        query = XComModel.get_many(run_id=run.run_id, key="_link_TraceLink", task_ids="release")
        link = str(XComModel.deserialize_value(session.scalars(query).one()))
    assert link == f"{settings.viewer_base_url}/shares/{share.share_id}"

    # Lineage: spec-valid, no pupil identifier, and the outbound file traces to both received files.
    events = _events(settings)
    for event in events:
        assert validate_event(event, extra_schemas=schema_documents()) == [], event["job"]["name"]
    assert leaks(events, identifiers_in(files)) == []
    from sqlalchemy import select

    from censustrace.lineage.store.db import make_engine
    from censustrace.lineage.traceback import trace_target
    from censustrace.shares.tables import disclosures
    from censustrace.warehouse.db import warehouse_engine
    from censustrace.warehouse.tables import extracts

    # Exactly the received files of the extracts the disclosed pupils were read from (the session's
    # warehouse may hold other tests' extracts too: they must not appear).
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        used = set(
            conn.execute(
                select(extracts.c.sha256)
                .join(disclosures, disclosures.c.extract_id == extracts.c.extract_id)
                .where(disclosures.c.share_id == share.share_id)
            ).scalars()
        )
        disclosed = conn.execute(
            select(disclosures.c.pupil_key).where(disclosures.c.share_id == share.share_id)
        ).all()
    assert len(disclosed) == share.pupils
    assert used <= {sha256_of(p) for p in files}
    traced = trace_target(make_engine(settings.lineage_db_url), f"dataset:file:{outbound}")
    assert {s["sha256"] for s in traced["sources"]} == used

    # The refused agreement: failed at the check, not retried, recorded as blocked, nothing written.
    refused = _run(dags, f"census_share__{REFUSED}")
    assert "failed" in str(refused.state)
    with create_session() as session:
        tis = {
            ti.task_id: ti
            for ti in session.query(TaskInstance).filter(TaskInstance.run_id == refused.run_id).all()
        }
    assert "failed" in str(tis["check"].state)
    assert tis["check"].try_number == 1
    assert "success" not in str(tis["release"].state)
    (blocked,) = [s for s in list_shares(settings) if s.agreement_id == REFUSED]
    assert blocked.status == "blocked"
    codes = {r["code"] for r in blocked.reasons}
    assert {"CT-POLICY-NO-APPROVAL", "CT-POLICY-GATEWAY-REQUIRED"} <= codes
    assert "high_risk" in blocked.flags
    assert blocked.file_path is None
    outbox = settings.share_outbox_dir
    assert [p for p in outbox.rglob("*") if p.is_file() and "Home Office" in str(p)] == []
