"""The lineage of the ingest steps: the datasets stage and publish read and write (archived files,
staging and canonical tables, with schema, row counts, the extract's header and column lineage back to
the source items), and the steps of one file merged into one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final, cast

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet, OutputDatasetFacet
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
    Transformation,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import OutputStatisticsOutputDatasetFacet
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from sqlalchemy import Dialect, Engine, Table

from censustrace.census.formats.header import FormatName
from censustrace.config import Settings
from censustrace.intake.registry import ExtractRow, archive_input, census_facet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.warehouse.naming import (
    CSV_JOIN_COLUMN,
    SourceItem,
    column_sources,
    description,
    warehouse_dataset_name,
    warehouse_namespace,
)

_TRANSFORMS: Final[dict[str, tuple[str, str]]] = {
    "identity": ("DIRECT", "IDENTITY"),
    "transformation": ("DIRECT", "TRANSFORMATION"),
    "masked": ("DIRECT", "TRANSFORMATION"),
    "derived": ("DIRECT", "TRANSFORMATION"),
}


def table_lineage(
    settings: Settings,
    engine: Engine,
    head: ExtractRow,
    files: list[ExtractRow],
    tables: Iterable[Table],
    written: Mapping[str, int],
    *,
    pupil_count: int | None = None,
    read: Iterable[Table] = (),
) -> StepLineage:
    """Inputs: the archived files at their sha256 (and the ``read`` tables at version = extract id);
    outputs: ``tables`` at version = extract id, with schema, row count, the extract's header and column
    lineage back to the source items."""
    url = settings.warehouse_db_url
    archived = [archive_input(settings, f) for f in files]
    by_role = {
        (f.csv_table or "file"): (FILE_NAMESPACE, i.name) for f, i in zip(files, archived, strict=True)
    }
    inputs: list[InputDataset] = list(archived)
    version_facet = DatasetVersionDatasetFacet(datasetVersion=head.extract_id)
    # Publish reads the validated staging tables: the trace then passes through them and their
    # data-quality facets on the way back to the files.
    inputs += [
        InputDataset(
            namespace=_warehouse_namespace(url),
            name=_warehouse_dataset_name(url, table.name),
            facets={"version": version_facet},
        )
        for table in read
    ]
    known = head.format in ("school_census_xml", "ctf_xml", "la_csv")
    sources = _column_sources(cast(FormatName, head.format)) if known else {}
    outputs = []
    for table in tables:
        canonical = table.name.removeprefix("staged_")
        facets: dict[str, DatasetFacet] = {
            "version": DatasetVersionDatasetFacet(datasetVersion=head.extract_id),
            "schema": SchemaDatasetFacet(
                fields=[
                    SchemaDatasetFacetFields(name=name, type=type_)
                    for name, type_ in _column_types(engine.dialect, table)
                ]
            ),
            "censusExtract": census_facet(head, pupil_count),
        }
        column_facet = _column_lineage(
            sources.get(canonical, {}), by_role, csv_join=head.format == "la_csv" and canonical != "pupil"
        )
        if column_facet is not None:
            facets["columnLineage"] = column_facet
        output_facets: dict[str, OutputDatasetFacet] = {
            "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=written.get(table.name, 0))
        }
        outputs.append(
            OutputDataset(
                namespace=_warehouse_namespace(url),
                name=_warehouse_dataset_name(url, table.name),
                facets=facets,
                outputFacets=output_facets,
            )
        )
    return StepLineage(inputs=inputs, outputs=outputs)


# Names and sources are the same for every file: worked out once (they parse URLs, walk mappings).
_warehouse_namespace = lru_cache(maxsize=16)(warehouse_namespace)
_warehouse_dataset_name = lru_cache(maxsize=64)(warehouse_dataset_name)
_column_sources = lru_cache(maxsize=8)(column_sources)


@lru_cache(maxsize=64)
def _column_types(dialect: Dialect, table: Table) -> tuple[tuple[str, str], ...]:
    """(name, SQL type) of each column, as the dialect writes it (compiled once per table)."""
    return tuple((c.name, str(c.type.compile(dialect=dialect))) for c in table.columns)


def _column_lineage(
    sources: Mapping[str, tuple[SourceItem, ...]],
    by_role: Mapping[str, tuple[str, str]],
    *,
    csv_join: bool,
) -> ColumnLineageDatasetFacet | None:
    fields: dict[str, Fields] = {}
    for column, items in sources.items():
        inputs = []
        for item in items:
            if item.role not in by_role:
                continue
            namespace, name = by_role[item.role]
            kind, subtype = _TRANSFORMS[item.transform]
            transformation = Transformation(
                type=kind,
                subtype=subtype,
                description=description(column) if item.transform != "identity" else None,
                masking=item.transform == "masked",
            )
            inputs.append(
                InputField(namespace=namespace, name=name, field=item.item, transformations=[transformation])
            )
        if inputs:
            fields[column] = Fields(inputFields=inputs)
    if not fields:
        return None
    dataset: list[InputField] = []
    if csv_join:
        # Address and FSM rows are matched to pupil rows on the UPN of each table.
        dataset = [
            InputField(
                namespace=namespace,
                name=name,
                field=CSV_JOIN_COLUMN,
                transformations=[Transformation(type="INDIRECT", subtype="JOIN")],
            )
            for namespace, name in by_role.values()
        ]
    return ColumnLineageDatasetFacet(fields=fields, dataset=dataset)


def merge_lineage(steps: Iterable[StepLineage]) -> StepLineage:
    """The lineage of several steps as one: each dataset once (the last step's facets win), and a
    dataset written by one step and read by a later one (the archived file) only as an output."""
    inputs: dict[tuple[str, str], Any] = {}
    outputs: dict[tuple[str, str], Any] = {}
    merged = StepLineage()
    for step in steps:
        for dataset in step.inputs:
            inputs[(dataset.namespace, dataset.name)] = dataset
        for output in step.outputs:
            outputs[(output.namespace, output.name)] = output
        merged.run_facets.update(step.run_facets)
        merged.job_facets.update(step.job_facets)
    merged.inputs = [d for key, d in inputs.items() if key not in outputs]
    merged.outputs = list(outputs.values())
    return merged


__all__ = ["merge_lineage", "table_lineage"]
