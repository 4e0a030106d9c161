"""censustrace's own OpenLineage facets. Each has a JSON schema in ``schemas/``, named by ``_schemaURL``.

The schema URLs use the reserved ``.invalid`` domain on purpose: they identify a schema kept in this
repository (``schema_documents()`` maps each URL to its file), not a place to fetch it from.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import attr
from openlineage.client.generated.base import DatasetFacet

SCHEMA_BASE = "https://censustrace.invalid/spec/facets/1-0-0/"
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


def _schema_url(name: str) -> str:
    return f"{SCHEMA_BASE}{name}.json#/$defs/{name}"


@attr.define
class CensusExtractDatasetFacet(DatasetFacet):
    """A received census file: its exact bytes and, once parsed, whose census it is."""

    sha256: str
    size: int
    originalName: str
    receivedAt: str
    format: str | None = None
    laestab: str | None = None
    urn: str | None = None
    term: str | None = None
    year: int | None = None
    referenceDate: str | None = None
    pupilCount: int | None = None

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("CensusExtractDatasetFacet")


@cache
def schema_documents() -> dict[str, dict[str, Any]]:
    """Every censustrace facet schema by its ``$id`` (the part of ``_schemaURL`` before ``#``)."""
    docs: dict[str, dict[str, Any]] = {}
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs[doc["$id"]] = doc
    return docs


# --- shares (censustrace.shares) ------------------------------------------------------------------------


@attr.define
class ShareDatasetFacet(DatasetFacet):
    """One share (a release under a data sharing agreement): to whom, why, under which law and approval,
    checked against which policy version, how many pupils and which fields. Counts only, no pupil data."""

    shareId: str
    agreementId: str
    recipient: str
    recipientType: str | None
    purpose: str
    lawfulBasis: str
    specialCategoryCondition: str | None
    legalGateway: str | None
    approvalReference: str | None
    approvedBy: str | None
    approvedOn: str | None
    policyVersion: str
    asOf: str
    pupilCount: int
    excluded: dict[str, int] = attr.Factory(dict)
    fields: list[str] = attr.Factory(list)
    transforms: dict[str, str] = attr.Factory(dict)
    suppressed: dict[str, int] = attr.Factory(dict)
    flags: list[str] = attr.Factory(list)
    sourceExtracts: list[str] = attr.Factory(list)

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("ShareDatasetFacet")


@attr.define
class ConsentCheckDatasetFacet(DatasetFacet):
    """How pupils' recorded decisions were applied to a share: which purposes' decisions counted (the
    share's purpose and the purposes covering it), whether consent was required, and how many pupils
    each rule kept out."""

    purpose: str
    coveringPurposes: list[str] = attr.Factory(list)
    consentRequired: bool = False
    decisionsApplied: int = 0
    excluded: dict[str, int] = attr.Factory(dict)
    consentFiles: list[str] = attr.Factory(list)

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("ConsentCheckDatasetFacet")


@attr.define
class RetentionErasureDatasetFacet(DatasetFacet):
    """Values erased from a warehouse table under a retention rule: which rule, which fields, how many
    rows, of which extracts."""

    asOf: str
    erasures: list[dict[str, Any]] = attr.Factory(list)

    @staticmethod
    def _get_schema() -> str:
        return _schema_url("RetentionErasureDatasetFacet")
