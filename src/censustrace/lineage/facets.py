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
