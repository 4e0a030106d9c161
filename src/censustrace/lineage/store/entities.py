"""Finding or creating the namespaces, datasets and jobs an event names, for the lineage store writer.

Every namespace, dataset and job the event names is looked up in one query (unless this transaction has
seen it already); the missing ones are created with one INSERT per table, in key order so that
concurrent writers lock them in one order.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection

from censustrace.lineage.store.parse import ParsedEvent
from censustrace.lineage.store.seen import _Row, _Seen
from censustrace.lineage.store.statements import WriterStatements
from censustrace.lineage.store.tables import datasets, jobs, namespaces

#: Names looked up or rows inserted by one statement at most: an event may name thousands of datasets,
#: and SQLite takes at most 32,766 parameters per statement.
_KEYS_PER_STATEMENT: Final = 500


class _EntityWriter:
    """The part of :class:`~censustrace.lineage.store.writer._Writer` that resolves an event's
    namespaces, datasets and jobs to rows (``seen``), inside the writer's transaction."""

    conn: Connection
    sql: WriterStatements
    event: ParsedEvent
    at: str
    seen: _Seen

    def entities(self) -> None:
        event, seen = self.event, self.seen
        refs = [*event.inputs, *event.outputs, *([event.dataset] if event.dataset else [])]
        dataset_keys = sorted({(ref.namespace, ref.name) for ref in refs})
        job_keys = sorted({key for key in (event.job, event.parent_job) if key is not None})
        names = sorted({namespace for namespace, _ in (*dataset_keys, *job_keys)})
        missing_datasets = [key for key in dataset_keys if key not in seen.datasets]
        missing_jobs = [key for key in job_keys if key not in seen.jobs]
        if missing_datasets or missing_jobs or any(name not in seen.namespaces for name in names):
            self.look_up(names, missing_datasets, missing_jobs)
            self.create(names, missing_datasets, missing_jobs)
        # Out-of-order arrival: the earliest event that mentioned a thing is when it was first seen.
        for table, known in (
            (namespaces, [seen.namespaces[name] for name in names]),
            (datasets, [seen.datasets[key] for key in dataset_keys]),
            (jobs, [seen.jobs[key] for key in job_keys]),
        ):
            late = [row for row in known if row.created_at > self.at]
            if late:
                self.conn.execute(
                    self.sql.lower_created_at[table.name], [{"b_id": row.id, "b_at": self.at} for row in late]
                )
                for row in late:
                    row.created_at = self.at

    def look_up(
        self, names: list[str], missing_datasets: list[tuple[str, str]], missing_jobs: list[tuple[str, str]]
    ) -> None:
        seen = self.seen
        missing_names = [name for name in names if name not in seen.namespaces]
        wanted_datasets, wanted_jobs = set(missing_datasets), set(missing_jobs)
        longest = max(len(missing_names), len(missing_datasets), len(missing_jobs))
        for start in range(0, longest, _KEYS_PER_STATEMENT):
            some_datasets = missing_datasets[start : start + _KEYS_PER_STATEMENT]
            some_jobs = missing_jobs[start : start + _KEYS_PER_STATEMENT]
            parameters = {
                "b_namespaces": sorted(
                    {*missing_names[start : start + _KEYS_PER_STATEMENT], *(ns for ns, _ in some_datasets)}
                ),
                "b_datasets": sorted({name for _, name in some_datasets}),
                "b_job_namespaces": sorted({namespace for namespace, _ in some_jobs}),
                "b_jobs": sorted({name for _, name in some_jobs}),
            }
            for (
                kind,
                namespace_id,
                namespace,
                namespace_created_at,
                row_id,
                name,
                created_at,
                parent,
            ) in self.conn.execute(self.sql.entities, parameters):
                if namespace not in seen.namespaces:
                    seen.namespaces[namespace] = _Row(int(namespace_id), namespace_created_at)
                key = (namespace, name)
                if row_id is None:
                    continue
                if kind == "dataset" and key in wanted_datasets:
                    seen.datasets[key] = _Row(int(row_id), created_at)
                elif kind == "job" and key in wanted_jobs:
                    seen.jobs[key] = _Row(int(row_id), created_at, None if parent is None else int(parent))

    def create(
        self, names: list[str], missing_datasets: list[tuple[str, str]], missing_jobs: list[tuple[str, str]]
    ) -> None:
        seen, at = self.seen, self.at
        new_names = [name for name in names if name not in seen.namespaces]
        if new_names:
            made, _ = self.insert_rows(
                namespaces, [{"name": name, "created_at": at} for name in new_names], ("name",)
            )
            for (name,), row in made.items():
                seen.namespaces[name] = row
        for table, missing, target in (
            (datasets, missing_datasets, seen.datasets),
            (jobs, missing_jobs, seen.jobs),
        ):
            keys = [key for key in missing if key not in target]
            if not keys:
                continue
            rows = [
                {"namespace_id": seen.namespaces[namespace].id, "name": name, "created_at": at}
                for namespace, name in keys
            ]
            made, created = self.insert_rows(table, rows, ("namespace_id", "name"))
            for (namespace, name), values in zip(keys, rows, strict=True):
                found = made[(values["namespace_id"], name)]
                target[(namespace, name)] = found
                if table is datasets and (values["namespace_id"], name) in created:
                    seen.new_datasets.add(found.id)

    def insert_rows(
        self, table: Table, rows: list[dict[str, Any]], key: tuple[str, ...]
    ) -> tuple[dict[tuple[Any, ...], _Row], set[tuple[Any, ...]]]:
        """Insert ``rows`` (in key order, so concurrent writers lock in one order); a row that another
        writer inserted first is read instead. Returns every row by key, and the keys inserted here."""
        made: dict[tuple[Any, ...], _Row] = {}
        for start in range(0, len(rows), _KEYS_PER_STATEMENT):
            statement = (
                self.sql.insert_ignore(table, key)
                .values(rows[start : start + _KEYS_PER_STATEMENT])
                .returning(table.c.id, *(table.c[column] for column in key))
            )
            made.update(
                (tuple(found[1:]), _Row(int(found[0]), self.at)) for found in self.conn.execute(statement)
            )
        created = set(made)
        for row in rows:
            row_key = tuple(row[column] for column in key)
            if row_key not in made:
                found = self.conn.execute(
                    select(table).where(*(table.c[column] == row[column] for column in key))
                ).one()
                parent = found._mapping.get("parent_job_id")
                made[row_key] = _Row(int(found.id), found.created_at, None if parent is None else int(parent))
        return made, created
