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
    """Archive one landed census file byte for byte (sha256-addressed) and register it as an extract."""

    template_fields = ("path",)
    ui_color = "#d6e9f8"

    def __init__(self, *, path: str, **kwargs: Any) -> None:
        # Each mapped instance is labelled by its file name in the UI (file names carry no pupil data).
        kwargs.setdefault("map_index_template", "{{ task.path.rsplit('/', 1)[-1] }}")
        super().__init__(**kwargs)
        self.path = path

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.intake.ingest import receive_and_register

        received = receive_and_register(Path(self.path), get_settings())
        self._lineage = received.lineage
        result = received.as_dict()
        archived = received.receipt.archived
        # File names, hashes and codes only: pupil data never reaches the task log.
        self.log.info(
            "received %s: sha256=%s size=%d extract=%s status=%s%s",
            archived.original_name,
            archived.sha256,
            archived.size,
            result["extract_id"],
            result["status"],
            "".join(f" {e['code']}" for e in result["errors"]),
        )
        return result


class _ExtractStepOperator(CensustraceOperator):
    """Takes the previous step's result for one file; skips (visibly) when there is nothing to do."""

    template_fields = ("previous",)

    def __init__(self, *, previous: Any, **kwargs: Any) -> None:
        kwargs.setdefault("map_index_template", "{{ task.previous['file'] }}")
        super().__init__(**kwargs)
        self.previous = previous

    def _skip(self, why: str) -> None:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(why)


class StageExtractOperator(_ExtractStepOperator):
    """Parse the archived bytes of a complete extract into the staging tables (one transaction)."""

    ui_color = "#e8f0d6"

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.intake.ingest import stage

        received = dict(self.previous)
        extract_id = received.get("ready")
        if not extract_id:
            codes = " ".join(e["code"] for e in received.get("errors", []))
            self._skip(f"{received['file']}: {received['status']} {codes}".strip())
        result = stage(str(extract_id), get_settings())
        self._lineage = result.lineage
        self.log.info(
            "staged %s: status=%s read=%d rejected=%d",
            extract_id,
            result.status,
            result.rows.read,
            result.rows.rejected,
        )
        if result.status == "quarantined":
            self._skip(f"{received['file']}: quarantined " + " ".join(e["code"] for e in result.errors))
        return {"file": received["file"], "extract_id": extract_id, "status": result.status}


class PublishExtractOperator(_ExtractStepOperator):
    """Move an extract's staged rows into the warehouse tables in one transaction; supersede the old."""

    ui_color = "#f8ecd6"

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.intake.ingest import publish

        staged = dict(self.previous)
        result = publish(str(staged["extract_id"]), {}, get_settings())
        self._lineage = result.lineage
        outcome = {
            "file": staged["file"],
            "extract_id": result.extract_id,
            "status": result.status,
            "supersedes": result.supersedes,
            "rows": result.rows.as_dict(),
        }
        self.log.info("published %s: %s", result.extract_id, outcome)
        if result.status == "quarantined":
            self._skip(f"{staged['file']}: quarantined " + " ".join(e["code"] for e in result.errors))
        return outcome
