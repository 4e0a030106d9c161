"""Data upgrades of the lineage store that need the instance's settings (Alembic revisions cannot see
them): run by ``censustrace init`` after the schema migrations, idempotent.

* SQLite warehouse datasets named by the database file's absolute path (before 0.2) are renamed to
  ``<instance>.<table>`` (``CENSUSTRACE_INSTANCE``); each old name is kept in ``dataset_aliases`` so that
  ``censustrace trace``, the API and the viewer still resolve it. Raw events are kept as received.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select, update

from censustrace.db import write_transaction
from censustrace.lineage.store.tables import dataset_aliases, datasets, namespaces
from censustrace.warehouse.naming import SQLITE_NAMESPACE, legacy_sqlite_table

log = logging.getLogger(__name__)


def rename_legacy_datasets(engine: Engine, instance: str) -> dict[str, Any]:
    """Rename path-named SQLite datasets to ``<instance>.<table>``: ``{"renamed": [...], "kept": [...]}``
    (kept: the new name already belongs to another dataset, so the old one stays as it is)."""
    renamed: list[dict[str, str]] = []
    kept: list[str] = []
    now = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%f}000Z"
    with write_transaction(engine) as conn:
        namespace_id = conn.execute(
            select(namespaces.c.id).where(namespaces.c.name == SQLITE_NAMESPACE)
        ).scalar_one_or_none()
        if namespace_id is None:
            return {"renamed": renamed, "kept": kept}
        rows = conn.execute(
            select(datasets.c.id, datasets.c.name)
            .where(datasets.c.namespace_id == namespace_id, datasets.c.name.like("/%"))
            .order_by(datasets.c.id)
        ).all()
        taken = set(
            conn.execute(select(datasets.c.name).where(datasets.c.namespace_id == namespace_id)).scalars()
        )
        for dataset_id, old in rows:
            table = legacy_sqlite_table(str(old))
            if table is None:
                continue
            new = f"{instance}.{table}"
            if new in taken:
                kept.append(str(old))
                log.warning("lineage store: %s not renamed, %s already exists", old, new)
                continue
            conn.execute(update(datasets).where(datasets.c.id == dataset_id).values(name=new))
            conn.execute(
                insert(dataset_aliases).values(
                    namespace=SQLITE_NAMESPACE, name=str(old), dataset_id=dataset_id, created_at=now
                )
            )
            taken.add(new)
            renamed.append({"from": str(old), "to": new})
    return {"renamed": renamed, "kept": kept}


__all__ = ["rename_legacy_datasets"]
