"""The lineage of a validation: the staging tables it read, each at version = extract id, carrying the
OpenLineage input facets ``dataQualityAssertions`` (one assertion per expectation: GX type, code,
column, success, severity ``error``/``warn``) and ``dataQualityMetrics`` (row count, and nulls and
distinct values per column read: counts only); the output is the ``validation_result`` table."""

from __future__ import annotations

from collections.abc import Sequence

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import InputDatasetFacet
from openlineage.client.generated.data_quality_assertions_dataset import (
    Assertion,
    DataQualityAssertionsDatasetFacet,
)
from openlineage.client.generated.data_quality_metrics_input_dataset import (
    ColumnMetrics,
    DataQualityMetricsInputDatasetFacet,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

from censustrace.lineage.model import StepLineage
from censustrace.quality.engine import SuiteResult
from censustrace.quality.suites import CRITICAL
from censustrace.quality.tables import validation_result
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

#: Our severities in the facet's vocabulary ("error" blocks the pipeline, "warn" only warns).
FACET_SEVERITY = {CRITICAL: "error", "warning": "warn"}


def assertions_facet(result: SuiteResult) -> DataQualityAssertionsDatasetFacet:
    return DataQualityAssertionsDatasetFacet(
        assertions=[
            Assertion(
                assertion=r.type,
                success=r.success,
                column=r.column,
                severity=FACET_SEVERITY[r.severity],
                name=r.code,
                description=r.description,
                actual=None if r.error else _actual(r.unexpected_count, r.element_count, r.observed),
                params={"suite": r.suite},
            )
            for r in result.results
        ]
    )


def _actual(unexpected: int | None, elements: int | None, observed: int | None) -> str | None:
    if observed is not None:
        return f"{observed} rows"
    if unexpected is None:
        return None
    return f"{unexpected} of {elements or 0} unexpected"


def metrics_facet(result: SuiteResult) -> DataQualityMetricsInputDatasetFacet:
    return DataQualityMetricsInputDatasetFacet(
        rowCount=result.row_count,
        columnMetrics={
            name: ColumnMetrics(nullCount=m.null_count, distinctCount=m.distinct_count)
            for name, m in result.metrics.items()
        },
    )


def validation_lineage(url: str, extract_id: str, results: Sequence[SuiteResult]) -> StepLineage:
    namespace = warehouse_namespace(url)
    version = DatasetVersionDatasetFacet(datasetVersion=extract_id)
    inputs = []
    for result in results:
        input_facets: dict[str, InputDatasetFacet] = {
            "dataQualityAssertions": assertions_facet(result),
            "dataQualityMetrics": metrics_facet(result),
        }
        inputs.append(
            InputDataset(
                namespace=namespace,
                name=warehouse_dataset_name(url, result.table),
                facets={"version": version},
                inputFacets=input_facets,
            )
        )
    output = OutputDataset(
        namespace=namespace,
        name=warehouse_dataset_name(url, validation_result.name),
        facets={"version": version},
    )
    return StepLineage(inputs=inputs, outputs=[output])


__all__ = ["FACET_SEVERITY", "assertions_facet", "metrics_facet", "validation_lineage"]
