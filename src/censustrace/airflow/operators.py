"""Thin Airflow operators: each calls one use case and hands its lineage to the OpenLineage provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage

    from censustrace.lineage.model import StepLineage


class CensustraceOperator(BaseOperator):
    """Base for our operators: keeps the use case's lineage and returns it on completion."""

    _lineage: StepLineage | None = None

    def get_openlineage_facets_on_start(self) -> OperatorLineage[Any, Any]:
        from airflow.providers.openlineage.extractors import OperatorLineage

        return OperatorLineage()

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        from airflow.providers.openlineage.extractors import OperatorLineage

        step = self._lineage
        if step is None:
            return OperatorLineage()
        return OperatorLineage(
            inputs=list(step.inputs),
            outputs=list(step.outputs),
            run_facets=dict(step.run_facets),
            job_facets=dict(step.job_facets),
        )

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> OperatorLineage[Any, Any]:
        return self.get_openlineage_facets_on_complete(task_instance)


class ReceiveExtractOperator(CensustraceOperator):
    """Archive one landed census file byte for byte (sha256-addressed) before anything reads it."""

    template_fields = ("path",)
    ui_color = "#d6e9f8"

    def __init__(self, *, path: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.path = path

    def execute(self, context: Any) -> dict[str, object]:
        from censustrace.config import get_settings
        from censustrace.intake.receive import receive

        receipt = receive(Path(self.path), get_settings())
        self._lineage = receipt.lineage
        archived = receipt.archived
        # File names and hashes only: pupil data never reaches the task log.
        self.log.info(
            "received %s: sha256=%s size=%d%s",
            archived.original_name,
            archived.sha256,
            archived.size,
            " (same bytes already archived)" if archived.already_archived else "",
        )
        return receipt.as_dict()
