"""Lineage of shares: the datasets a share reads and writes, with its column lineage and facets, and the
two ways an event leaves: committed to the lineage store before a file is released (``commit_event``),
or handed to the configured transport like any other step (``emit_step``).

Names: warehouse tables as in ``censustrace.warehouse.naming`` at version = the extract id (consent
decisions: the consent file id); the outbound file in the ``file`` namespace at its absolute path, version
= its sha256. No pupil data in any event: counts, field names and ids only.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Mapping
from typing import Final

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet, OutputDatasetFacet
from openlineage.client.generated.column_lineage_dataset import (
    ColumnLineageDatasetFacet,
    Fields,
    InputField,
    Transformation,
)
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from censustrace.config import Settings
from censustrace.consent.tables import consent_decisions
from censustrace.errors import CensustraceError
from censustrace.lineage.emit import transport
from censustrace.lineage.facets import ConsentCheckDatasetFacet, ShareDatasetFacet
from censustrace.lineage.naming import FILE_NAMESPACE
from censustrace.shares.errors import ShareLineageError
from censustrace.shares.register import ShareRow
from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

logger = logging.getLogger(__name__)

# Run ids of share releases are uuid5 names of the share id under this namespace: a retry re-sends the
# same run.
_RUN_NS: Final = uuid.UUID("8c1d3f0e-5a7b-5c2d-9e4f-736861726573")

#: Warehouse table and column of each field a share can send (address items come from pupil_address).
ADDRESS_FIELDS: Final = ("address_lines", "postcode", "uprn")
FSM_FIELD: Final = "fsm_periods"
_ADDRESS_ITEMS: Final = (
    "saon",
    "paon",
    "street",
    "locality",
    "town",
    "administrative_area",
    "post_town",
)

_DESCRIPTIONS: Final[Mapping[str, str]] = {
    "pseudonymise": "keyed HMAC-SHA256 with a key of this agreement's own (not the pupil key)",
    "year_month": "date truncated to year and month (YYYY-MM)",
    "year": "date truncated to the year (YYYY)",
    "district": "postcode truncated to its outward code (district)",
    "sector": "postcode truncated to its sector (outward code and first inward digit)",
}


def release_job_name(agreement_id: str) -> str:
    """The job of a share's release event: ``census_share__<agreement id>.release``."""
    return f"census_share__{agreement_id}.release"


def release_run_id(share_id: str) -> str:
    return str(uuid.uuid5(_RUN_NS, share_id))


def source_columns(field: str) -> tuple[str, tuple[str, ...]]:
    """The warehouse table and column(s) an outbound field is read from."""
    if field == "address_lines":
        return "pupil_address", _ADDRESS_ITEMS
    if field in ADDRESS_FIELDS:
        return "pupil_address", (field,)
    if field == FSM_FIELD:
        return "fsm_period", ("start_date", "end_date", "uk_country")
    return "pupil", (field,)


def _table_dataset(settings: Settings, table: str, version: str) -> InputDataset:
    url = settings.warehouse_db_url
    return InputDataset(
        namespace=warehouse_namespace(url),
        name=warehouse_dataset_name(url, table),
        facets={"version": DatasetVersionDatasetFacet(datasetVersion=version)},
    )


def share_inputs(settings: Settings, share: ShareRow) -> list[InputDataset]:
    """The exact warehouse versions a share used: each source extract of each table it read, and each
    consent file whose decisions applied."""
    tables = sorted({source_columns(f)[0] for f in share.fields} | {"pupil"})
    inputs = [
        _table_dataset(settings, table, extract_id)
        for table in tables
        for extract_id in sorted(share.source_extracts or ())
    ]
    inputs += [
        _table_dataset(settings, consent_decisions.name, file_id)
        for file_id in sorted(share.consent_files or ())
    ]
    return inputs


def _column_lineage(
    settings: Settings, share: ShareRow, refused: Mapping[str, bool]
) -> ColumnLineageDatasetFacet:
    url = settings.warehouse_db_url
    namespace = warehouse_namespace(url)
    fields: dict[str, Fields] = {}
    for field in share.fields:
        transform = share.transforms.get(field, "none")
        table, columns = source_columns(field)
        description = _DESCRIPTIONS.get(transform)
        if refused.get(field):
            blank = "refused and not-obtained codes sent blank"
            description = f"{description}; {blank}" if description else blank
        subtype = "IDENTITY" if description is None and len(columns) == 1 else "TRANSFORMATION"
        transformation = Transformation(
            type="DIRECT", subtype=subtype, description=description, masking=transform == "pseudonymise"
        )
        fields[field] = Fields(
            inputFields=[
                InputField(
                    namespace=namespace,
                    name=warehouse_dataset_name(url, table),
                    field=column,
                    transformations=[transformation],
                )
                for column in columns
            ]
        )
    pupil_name = warehouse_dataset_name(url, "pupil")
    # Which pupils: one record per pupil key, within the agreement's scope, minus objections.
    indirect = [
        InputField(
            namespace=namespace,
            name=pupil_name,
            field=column,
            transformations=[Transformation(type="INDIRECT", subtype="FILTER", description=what)],
        )
        for column, what in (
            ("laestab", "agreement scope (LA, school)"),
            ("nc_year", "agreement scope (national curriculum years)"),
            ("pupil_key", "one record per pupil: the latest census"),
        )
    ]
    indirect.append(
        InputField(
            namespace=namespace,
            name=warehouse_dataset_name(url, consent_decisions.name),
            field="decision",
            transformations=[
                Transformation(type="INDIRECT", subtype="FILTER", description="objections and consents")
            ],
        )
    )
    return ColumnLineageDatasetFacet(fields=fields, dataset=indirect)


def share_facets(
    settings: Settings, share: ShareRow, consent: ConsentCheckDatasetFacet
) -> dict[str, DatasetFacet]:
    """Dataset facets of an outbound file: version, schema, column lineage, share and consent check."""
    approval = share.approval or {}
    refused = {field: bool((share.suppressed or {}).get(field) is not None) for field in share.fields}
    return {
        "version": DatasetVersionDatasetFacet(datasetVersion=share.sha256 or ""),
        "schema": SchemaDatasetFacet(
            fields=[SchemaDatasetFacetFields(name=field, type="string") for field in share.fields]
        ),
        "columnLineage": _column_lineage(settings, share, refused),
        "censusShare": ShareDatasetFacet(
            shareId=share.share_id,
            agreementId=share.agreement_id,
            recipient=share.recipient or "",
            recipientType=share.recipient_type,
            purpose=share.purpose or "",
            lawfulBasis=share.lawful_basis or "",
            specialCategoryCondition=share.special_category_condition,
            legalGateway=share.legal_gateway,
            approvalReference=approval.get("reference"),
            approvedBy=approval.get("approved_by"),
            approvedOn=approval.get("approved_on"),
            policyVersion=share.policy_version or "",
            asOf=share.as_of.isoformat(),
            pupilCount=share.pupils or 0,
            excluded=dict(share.excluded or {}),
            fields=list(share.fields),
            transforms={f: share.transforms.get(f, "none") for f in share.fields},
            suppressed=dict(share.suppressed or {}),
            flags=list(share.flags),
            sourceExtracts=sorted(share.source_extracts or ()),
        ),
        "consentCheck": consent,
    }


def consent_facet(share: ShareRow) -> ConsentCheckDatasetFacet:
    check = share.consent_check or {}
    return ConsentCheckDatasetFacet(
        purpose=share.purpose or "",
        coveringPurposes=list(check.get("covering", ())),
        consentRequired=bool(check.get("consent_required", False)),
        decisionsApplied=int(check.get("decisions_applied", 0)),
        excluded=dict(share.excluded or {}),
        consentFiles=sorted(share.consent_files or ()),
    )


def share_output(settings: Settings, share: ShareRow, path: str) -> OutputDataset:
    """The outbound file at ``path`` (staged or released) as a lineage output."""
    statistics: dict[str, OutputDatasetFacet] = {
        "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=share.pupils or 0, size=share.size)
    }
    return OutputDataset(
        namespace=FILE_NAMESPACE,
        name=path,
        facets=share_facets(settings, share, consent_facet(share)),
        outputFacets=statistics,
    )


def register_output(settings: Settings, table: str, version: str) -> OutputDataset:
    """A warehouse table written by a share step (``shares``, ``disclosures``) at version = share id."""
    url = settings.warehouse_db_url
    return OutputDataset(
        namespace=warehouse_namespace(url),
        name=warehouse_dataset_name(url, table),
        facets={"version": DatasetVersionDatasetFacet(datasetVersion=version)},
    )


# --- delivery -------------------------------------------------------------------------------------------


def commit_event(settings: Settings, payload: str) -> None:
    """Store ``payload`` in the lineage store now, or raise :class:`ShareLineageError`: no outbox, no
    retry later. The store keeps an event once, so sending the same payload again is harmless. An HTTP
    endpoint, if configured, also gets it through the transport (queued in the outbox if it is down)."""
    from censustrace.lineage.store.db import drop_shared_engine, shared_engine
    from censustrace.lineage.store.ingest import store_event

    url = settings.lineage_db_url
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        store_event(shared_engine(url), payload)
    except CensustraceError as exc:
        raise ShareLineageError(
            f"the lineage store {shown} refused the share's event: {exc.message}"
        ) from exc
    except (SQLAlchemyError, OSError) as exc:
        drop_shared_engine(url)
        raise ShareLineageError(
            f"the lineage store {shown} is unreachable ({type(exc).__name__}); nothing was released"
        ) from exc
    if settings.lineage_http_url:
        transport(settings, store=False).emit_json(payload)


def keep_lineage_summary(settings: Settings, file_path: str, sha256: str) -> None:
    """Work out and keep the grouped lineage the share page shows for a released file, so that its first
    view reads a few rows instead of walking every file behind it (seconds with 20,000). Best effort:
    the share is released already, and the page works it out itself if this fails."""
    from censustrace.lineage.store.db import shared_engine
    from censustrace.lineage.store.queries import find_dataset, find_dataset_version
    from censustrace.lineage.store.upstream import upstream

    try:
        with shared_engine(settings.lineage_db_url).connect() as conn:
            dataset_id = find_dataset(conn, "file", file_path)
            start = find_dataset_version(conn, dataset_id, sha256) if dataset_id is not None else None
            if start is not None:
                upstream(conn, start)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning(
            "the share page's lineage summary was not kept (%s); it is worked out on first view",
            type(exc).__name__,
        )


def dedupe(datasets: Iterable[InputDataset]) -> list[InputDataset]:
    """Each (namespace, name, version) once, in first-seen order."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for dataset in datasets:
        version = getattr((dataset.facets or {}).get("version"), "datasetVersion", "")
        key = (dataset.namespace, dataset.name, str(version))
        if key not in seen:
            seen.add(key)
            out.append(dataset)
    return out


__all__ = [
    "commit_event",
    "release_job_name",
    "release_run_id",
    "share_inputs",
    "share_output",
    "source_columns",
]
