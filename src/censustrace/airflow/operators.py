"""Thin Airflow operators: each calls one use case and hands its lineage to the OpenLineage provider."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink

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
        from censustrace.intake.stage import stage

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


class TraceLink(BaseOperatorLink):
    """The page in the censustrace viewer that traces what this task wrote back to the received files."""

    name = "Trace in censustrace"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        # Called on the worker right after execute (Airflow stores the result as an XCom).
        return str(getattr(operator, "trace_url", "") or "")


class DataDocsLink(BaseOperatorLink):
    """The GX Data Docs page of this extract's pupil suite, served by the censustrace web app."""

    name = "Data Docs"

    def get_link(self, operator: BaseOperator, *, ti_key: Any) -> str:
        # Called on the worker right after execute (Airflow stores the result as an XCom).
        return str(getattr(operator, "data_docs_url", "") or "")


class ValidateExtractOperator(_ExtractStepOperator):
    """Run the GX suites on the staged extract: critical row failures reject those records, too many
    (or a failed table check) quarantine the extract and fail this task; warnings are logged."""

    ui_color = "#fff3cd"
    operator_extra_links = (DataDocsLink(),)
    data_docs_url = ""

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from censustrace.config import get_settings
        from censustrace.quality.run import validate_extract

        settings = get_settings()
        staged = dict(self.previous)
        outcome = validate_extract(str(staged["extract_id"]), settings)
        self._lineage = outcome.lineage
        if outcome.data_docs:
            self.data_docs_url = f"{settings.viewer_base_url}/data-docs/{outcome.data_docs[0]}"
        for line in outcome.summary:  # one line per expectation: pass/fail with counts, no values
            self.log.info("%s", line)
        for warning in outcome.warnings:
            self.log.warning("%s %s", warning["code"], warning["message"])
        result = {"file": staged["file"], **outcome.as_dict()}
        if outcome.status == "quarantined":
            for error in outcome.errors:
                self.log.error("%s %s", error["code"], error["message"])
            raise AirflowFailException(
                f"{staged['file']}: quarantined by data quality checks "
                + " ".join(e["code"] for e in outcome.errors)
            )
        self.log.info(
            "validated %s: %s; %d records rejected %s",
            outcome.extract_id,
            outcome.status,
            len(outcome.rejected),
            outcome.rejected_by_code,
        )
        return result


class PublishExtractOperator(_ExtractStepOperator):
    """Move an extract's staged rows into the warehouse tables in one transaction; supersede the old."""

    ui_color = "#f8ecd6"
    operator_extra_links = (TraceLink(),)
    trace_url = ""

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.intake.publish import publish
        from censustrace.viewer.links import trace_url
        from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

        settings = get_settings()
        staged = dict(self.previous)
        result = publish(str(staged["extract_id"]), {}, settings)
        self._lineage = result.lineage
        if result.status == "loaded":
            url = settings.warehouse_db_url
            self.trace_url = trace_url(
                settings,
                warehouse_namespace(url),
                warehouse_dataset_name(url, "pupil"),
                result.extract_id,
            )
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


class IngestBatchOperator(CensustraceOperator):
    """Ingest a batch of landed files in this one task: each file received, registered, staged,
    validated (one GX run per suite for the whole batch) and published, with its own registry row,
    quarantine, lineage runs (children of this task's run, written in one transaction) and outcome.

    A file's bad input quarantines that file only (logged, the task stays green). A file that fails for
    any other reason fails the task after the others are done, so Airflow retries the batch; the retry
    finishes what is unfinished and reports what is already loaded."""

    template_fields = ("batch",)
    ui_color = "#d6e9f8"
    operator_extra_links = (DataDocsLink(), TraceLink())
    data_docs_url = ""
    trace_url = ""

    #: The grid labels each batch by the files it holds (file names carry no pupil data). Mapped with
    #: ``.partial(map_index_template=LABEL)``: ``partial`` does not run ``__init__``.
    LABEL = "{{ task.batch['label'] }}"

    def __init__(self, *, batch: Any, **kwargs: Any) -> None:
        # ``batch``: {"label", "items"}.
        kwargs.setdefault("map_index_template", self.LABEL)
        super().__init__(**kwargs)
        self.batch = batch

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowException

        from censustrace.config import get_settings
        from censustrace.intake.batch import ingest_batch
        from censustrace.lineage.bulk import airflow_parent
        from censustrace.quality.docs import page_path
        from censustrace.viewer.links import run_url, trace_url
        from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

        settings = get_settings()
        parent = airflow_parent(context, settings.lineage_namespace)
        result = ingest_batch([str(i) for i in self.batch["items"]], settings, parent=parent)
        url = settings.warehouse_db_url
        namespace, pupils = warehouse_namespace(url), warehouse_dataset_name(url, "pupil")
        self.data_docs_url = f"{settings.viewer_base_url}/data-docs/index.html"
        if parent is not None:
            self.trace_url = run_url(settings, parent.run_id)
        files = []
        for outcome in result.outcomes:
            codes = [e["code"] for e in outcome.errors]
            name = Path(outcome.file).name
            links = ""
            if outcome.status == "loaded" and outcome.extract_id:
                docs = f"{settings.viewer_base_url}/data-docs/{page_path('pupil', outcome.extract_id)}"
                links = (
                    f" trace={trace_url(settings, namespace, pupils, outcome.extract_id)} data_docs={docs}"
                )
            # File names, hashes, counts and codes only: pupil data never reaches the task log.
            line = "%s: %s extract=%s sha256=%s rows=%s%s%s"
            args = (name, outcome.status, outcome.extract_id, outcome.sha256, outcome.rows.as_dict())
            level = (
                self.log.info if outcome.status in ("loaded", "duplicate", "received") else self.log.warning
            )
            level(line, *args, "".join(f" {c}" for c in codes), links)
            files.append(
                {
                    "file": name,
                    "extract_id": outcome.extract_id,
                    "status": outcome.status,
                    "rows": outcome.rows.as_dict(),
                    "errors": [{"code": c} for c in codes],
                }
            )
        self.log.info("batch of %d files written with %d lineage events", len(files), result.events)
        if result.failed:
            raise AirflowException(
                f"{len(result.failed)} of {len(files)} files failed (not bad input; retry finishes them): "
                + "; ".join(f"{Path(o.file).name} {o.errors[-1]['code']}" for o in result.failed)
            )
        return {"files": files}


# --- shares ------------------------------------------------------------------------------------------------


class CheckShareOperator(CensustraceOperator):
    """Check the agreement against the policy for today (Europe/London; never the run's logical date)
    and record the share (or the blocked attempt, once per run). A refusal fails the task at once,
    without retries: retrying cannot change a policy."""

    template_fields = ("agreement_id",)
    ui_color = "#f3e5f5"

    def __init__(self, *, agreement_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agreement_id = agreement_id

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from censustrace.config import get_settings
        from censustrace.lineage.model import StepLineage
        from censustrace.shares.steps import ShareBlocked, check_share

        lineage = StepLineage()
        self._lineage = lineage
        try:
            share = check_share(self.agreement_id, get_settings(), run_key=context["run_id"], lineage=lineage)
        except ShareBlocked as exc:
            for item in exc.share.get("reasons", []):
                self.log.error("refused: %s %s", item.get("code"), item.get("message"))
            raise AirflowFailException(str(exc)) from exc
        self.log.info(
            "share %s checked: agreement %s allowed for %s",
            share["share_id"],
            self.agreement_id,
            share["as_of"],
        )
        return share


class _ShareStepOperator(CensustraceOperator):
    """Takes the previous share step's summary (``share_id``)."""

    template_fields = ("previous",)

    def __init__(self, *, previous: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.previous = previous


class BuildShareOperator(_ShareStepOperator):
    """Select the population in scope, exclude objections, transform, suppress refused codes and write
    the outbound file and its manifest, unreleased."""

    ui_color = "#ede7f6"

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.lineage.model import StepLineage
        from censustrace.shares.steps import build_share

        lineage = StepLineage()
        self._lineage = lineage
        share = build_share(str(self.previous["share_id"]), get_settings(), lineage=lineage)
        self.log.info(
            "share %s built: %s pupils, excluded %s", share["share_id"], share["pupils"], share["excluded"]
        )
        return share


class ReleaseShareOperator(_ShareStepOperator):
    """No lineage, no share: record the share and its disclosures, commit its lineage event, and only
    then move the file into the recipient's outbox."""

    ui_color = "#e8eaf6"
    operator_extra_links = (TraceLink(),)
    trace_url = ""

    def execute(self, context: Any) -> dict[str, Any]:
        from airflow.sdk.exceptions import AirflowFailException

        from censustrace.config import get_settings
        from censustrace.lineage.model import StepLineage
        from censustrace.shares.steps import ShareBlocked, release_share

        settings = get_settings()
        lineage = StepLineage()
        self._lineage = lineage
        try:
            share = release_share(str(self.previous["share_id"]), settings, lineage=lineage)
        except ShareBlocked as exc:  # refused for the day it leaves: retrying cannot change a policy
            for item in exc.share.get("reasons", []):
                self.log.error("refused at release: %s %s", item.get("code"), item.get("message"))
            raise AirflowFailException(str(exc)) from exc
        self.trace_url = f"{settings.viewer_base_url}/shares/{share['share_id']}"
        self.log.info(
            "share %s %s: %s pupils to %s, sha256=%s",
            share["share_id"],
            share["status"],
            share["pupils"],
            share["recipient"],
            share["sha256"],
        )
        return share


class ApplyRetentionOperator(CensustraceOperator):
    """Erase warehouse items whose retention has ended or that must never be kept (nationality,
    country of birth), recording each erasure; earlier shares still trace back."""

    ui_color = "#eceff1"

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.compliance.retention import apply_retention
        from censustrace.config import get_settings
        from censustrace.lineage.model import StepLineage

        lineage = StepLineage()
        self._lineage = lineage
        result = apply_retention(get_settings(), context["dag_run"].run_after.date(), lineage=lineage)
        self.log.info("retention: %s", result)
        return result


class TakeConsentFilesOperator(CensustraceOperator):
    """Archive and apply every consent file waiting in ``landing/consent/`` (objections by pupil key;
    pending ones kept for pupils not seen yet)."""

    ui_color = "#fce4ec"

    def execute(self, context: Any) -> dict[str, Any]:
        from censustrace.config import get_settings
        from censustrace.consent.landing import take_consent_files
        from censustrace.lineage.model import StepLineage

        lineage = StepLineage()
        self._lineage = lineage
        result = take_consent_files(get_settings(), lineage=lineage)
        for item in result["files"]:  # file names, counts and codes only: never a UPN
            self.log.info(
                "consent file %s: %s rows %s %s",
                item["file"],
                item["status"],
                item["rows"],
                " ".join(e["code"] for e in item["errors"]),
            )
        return result
