"""Which lineage the pipeline owns, and who may write it.

The datasets and jobs censustrace produces (received, archived and quarantined files, extracts and
every other warehouse table, share files and manifests, agreement files, and every job in our
namespace: ``censustrace.*`` and the ``census_*`` DAGs) are written only by the pipeline's own producers:
its transport, which writes to the store directly, and HTTP clients holding a ``pipeline`` token. An
event POSTed with any other producer token (``producer``: external) that names one of them anywhere
(input, output, the dataset of a DatasetEvent, the job, the parent job, a column-lineage input) would add
a version or an edge to our evidence, so it is refused whole: 403 ``CT-LINEAGE-FORBIDDEN``, naming the
JSON path. External producers keep full use of every other namespace and name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal

from censustrace.errors import CensustraceError
from censustrace.lineage.naming import FILE_NAMESPACE

if TYPE_CHECKING:
    from censustrace.config import Settings
    from censustrace.lineage.store.parse import DatasetRef, ParsedEvent

ProducerKind = Literal["pipeline", "external"]
FORBIDDEN: Final = "CT-LINEAGE-FORBIDDEN"


class LineageForbidden(CensustraceError):
    """An external producer's event names a dataset or job the pipeline owns (HTTP 403)."""

    code = FORBIDDEN


@dataclass(frozen=True, slots=True)
class Producer:
    """Who sent an event over HTTP: the token's name and whether it is the pipeline's own."""

    name: str
    kind: ProducerKind

    @property
    def label(self) -> str:
        """What the store records on each edge the event adds (``run_dataset_versions.producer``)."""
        return f"{self.kind}:{self.name}"[:80]


@dataclass(frozen=True, slots=True)
class Ownership:
    """The namespaces and name prefixes the pipeline owns."""

    job_namespaces: frozenset[str]
    #: (namespace, name prefix): a dataset is owned if its name starts with the prefix.
    dataset_prefixes: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, settings: Settings) -> Ownership:
        from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

        url = settings.warehouse_db_url
        # The warehouse: every table of our database (the name of a table "x" minus the "x").
        table_prefix = warehouse_dataset_name(url, "x")[:-1]
        folders = {settings.home, settings.share_outbox_dir, settings.policies_dir, settings.expectations_dir}
        prefixes = [(warehouse_namespace(url), table_prefix)]
        prefixes += sorted({(FILE_NAMESPACE, _folder(path)) for path in folders})
        return cls(frozenset({settings.lineage_namespace}), tuple(prefixes))

    def owns_dataset(self, namespace: str, name: str) -> bool:
        return any(namespace == ns and name.startswith(prefix) for ns, prefix in self.dataset_prefixes)

    def owns_job(self, namespace: str, _name: str) -> bool:
        return namespace in self.job_namespaces

    def check(self, event: ParsedEvent, producer: Producer | None) -> None:
        """Raise :class:`LineageForbidden` if an external ``producer`` names anything we own."""
        if producer is None or producer.kind == "pipeline":
            return
        path = self._first_owned(event)
        if path is not None:
            where, what = path
            raise LineageForbidden(
                f"{where}: {what} belongs to the censustrace pipeline; producer token "
                f"{producer.name!r} (external) may not add versions or edges to it "
                "(use your own namespace, or a pipeline token for the pipeline's own producers)"
            )

    def _first_owned(self, event: ParsedEvent) -> tuple[str, str] | None:
        for label, job in (("$.job", event.job), ("$.run.facets.parent.job", event.parent_job)):
            if job is not None and self.owns_job(*job):
                return label, f"job {job[0]}:{job[1]}"
        refs: list[tuple[str, DatasetRef]] = [(f"$.inputs[{i}]", ref) for i, ref in enumerate(event.inputs)]
        refs += [(f"$.outputs[{i}]", ref) for i, ref in enumerate(event.outputs)]
        if event.dataset is not None:
            refs.append(("$.dataset", event.dataset))
        for label, ref in refs:
            if self.owns_dataset(ref.namespace, ref.name):
                return label, f"dataset {ref.namespace}:{ref.name}"
            for dependency in ref.column_lineage:
                if self.owns_dataset(dependency.namespace, dependency.name):
                    return (
                        f"{label}.facets.columnLineage",
                        f"dataset {dependency.namespace}:{dependency.name}",
                    )
        return None


def _folder(path: Path) -> str:
    return str(path.expanduser().resolve()).rstrip("/") + "/"


__all__ = ["FORBIDDEN", "LineageForbidden", "Ownership", "Producer"]
