"""Retention: erase warehouse values that must not be kept, with a lineage event saying what, how many
rows and under which rule.

Rules:

* ``never_share_legacy``: nationality and country of birth (collected AUT 2016 to SUM 2018; DfE agreed
  to delete them), when ``fields.yaml`` marks them ``never_share``: erased from every record.
* ``retention_ended``: a field whose policy entry carries ``retention_days`` is erased from records
  whose census reference date is older than that many days before ``as_of``. ``fields.yaml`` has no such
  key today, so this rule erases nothing until the policy gains it.

Erasing sets the values to NULL in ``pupil`` / ``pupil_address`` (and in staging). Trace-back of earlier
shares is untouched: a share names the warehouse versions it read (extract ids), and those versions
still lead to the received files; the erasure is a new version (``retention-<as_of>-<id>``) derived
from them. Files already released are the recipients' to delete under their agreements.

Idempotent: a second run on the same day finds nothing left to erase, records nothing and has no lineage.

The copies of received and released files follow in ``censustrace.compliance.retention``, which runs
this first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any, Final

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from sqlalchemy import ColumnElement, Table, and_, insert, select, update

from censustrace.config import Settings
from censustrace.lineage.facets import RetentionErasureDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.shares.lineage import source_columns
from censustrace.shares.tables import erasures
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace
from censustrace.warehouse.tables import STAGING, extracts, pupil, pupil_address

LEGACY_ITEMS: Final = ("nationality", "country_of_birth")
NEVER_SHARE_LEGACY: Final = "never_share_legacy"
RETENTION_ENDED: Final = "retention_ended"
_TABLES: Final[dict[str, Table]] = {"pupil": pupil, "pupil_address": pupil_address}


def _planned(policy: Any, as_of: dt.date) -> list[tuple[str, str, dt.date | None]]:
    """(rule, field, cut-off reference date or None for every record)."""
    plan: list[tuple[str, str, dt.date | None]] = []
    for name in LEGACY_ITEMS:
        entry = policy.fields.get(name)
        if entry is not None and entry.never_share:
            plan.append((NEVER_SHARE_LEGACY, name, None))
    for name, entry in policy.fields.items():
        days = getattr(entry, "retention_days", None)
        if isinstance(days, int) and days >= 0 and name not in LEGACY_ITEMS:
            plan.append((RETENTION_ENDED, name, as_of - dt.timedelta(days=days)))
    return plan


def erase_warehouse_values(
    settings: Settings, as_of: dt.date, *, lineage: StepLineage | None = None
) -> dict[str, Any]:
    """Erase what the rules say (see the module docstring) in one transaction; what was erased
    (``{as_of, rows, erasures, version}``)."""
    from censustrace.consent.policies import load_policy

    policy = load_policy(settings.policies_dir)
    engine = warehouse_engine(settings.warehouse_db_url)
    done: list[dict[str, Any]] = []
    now = dt.datetime.now(dt.UTC)
    with write_transaction(engine) as conn:
        for rule, field, cutoff in _planned(policy, as_of):
            table_name, columns = source_columns(field)
            table = _TABLES.get(table_name)
            if table is None:
                continue  # FSM periods are rows, not a value to blank
            for column in columns:
                touched = _erase(conn, table, column, cutoff)
                if touched[0]:
                    rows, extract_ids = touched
                    conn.execute(
                        insert(erasures).values(
                            erased_at=now,
                            as_of=as_of,
                            rule=rule,
                            table_name=table.name,
                            field=column,
                            rows=rows,
                            extracts=extract_ids,
                        )
                    )
                    done.append(
                        {
                            "rule": rule,
                            "table": table.name,
                            "field": column,
                            "rows": rows,
                            "extracts": extract_ids,
                        }
                    )
    version = f"retention-{as_of.isoformat()}-{uuid.uuid4().hex[:8]}" if done else None
    if lineage is not None and version is not None:
        lineage.extend(_lineage(settings, as_of, done, version))
    return {
        "as_of": as_of.isoformat(),
        "rows": sum(d["rows"] for d in done),
        "erasures": [{**d, "extracts": len(d["extracts"])} for d in done],
        "version": version,
    }


def _erase(conn: Any, table: Table, column: str, cutoff: dt.date | None) -> tuple[int, list[str]]:
    """Blank ``column`` where it has a value (for a cut-off: in extracts whose census day is before it);
    the canonical rows and the extracts touched. Staging is blanked too for an everywhere rule."""
    condition: ColumnElement[bool] = table.c[column].is_not(None)
    if cutoff is not None:
        # One extract is one census, so its reference date decides for all its records.
        condition = and_(
            condition,
            table.c.extract_id.in_(select(extracts.c.extract_id).where(extracts.c.reference_date < cutoff)),
        )
    extract_ids = sorted(conn.execute(select(table.c.extract_id).where(condition).distinct()).scalars())
    rows = conn.execute(update(table).where(condition).values({column: None})).rowcount
    if cutoff is None:
        staged = STAGING[table]
        conn.execute(update(staged).where(staged.c[column].is_not(None)).values({column: None}))
    return int(rows or 0), extract_ids


def _lineage(settings: Settings, as_of: dt.date, done: Iterable[dict[str, Any]], version: str) -> StepLineage:
    """Inputs: each table at each extract version changed; output: each table at the erasure's version
    with what was erased (rule, field, rows, extracts)."""
    url = settings.warehouse_db_url
    namespace = warehouse_namespace(url)
    by_table: dict[str, list[dict[str, Any]]] = {}
    for item in done:
        by_table.setdefault(item["table"], []).append(item)
    step = StepLineage()
    for table, items in sorted(by_table.items()):
        name = warehouse_dataset_name(url, table)
        versions = sorted({e for item in items for e in item["extracts"]})
        step.inputs += [
            InputDataset(
                namespace=namespace,
                name=name,
                facets={"version": DatasetVersionDatasetFacet(datasetVersion=version)},
            )
            for version in versions
        ]
        step.outputs.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                facets={
                    "version": DatasetVersionDatasetFacet(datasetVersion=version),
                    "retentionErasure": RetentionErasureDatasetFacet(
                        asOf=as_of.isoformat(),
                        erasures=[
                            {
                                "rule": i["rule"],
                                "field": i["field"],
                                "rows": i["rows"],
                                "extracts": i["extracts"],
                            }
                            for i in items
                        ],
                    ),
                },
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(
                        rowCount=sum(int(i["rows"]) for i in items)
                    )
                },
            )
        )
    return step


__all__ = ["LEGACY_ITEMS", "erase_warehouse_values"]
