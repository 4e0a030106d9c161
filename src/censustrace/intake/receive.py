"""Receiving one census file: archive its exact bytes first, record the receipt, clear the landing slot."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.generated.base import DatasetFacet
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)

from censustrace.config import Settings
from censustrace.intake.archive import ArchivedFile, archive_file
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name


@dataclass(frozen=True, slots=True)
class Receipt:
    archived: ArchivedFile
    received_at: datetime
    lineage: StepLineage

    def as_dict(self) -> dict[str, object]:
        return {**self.archived.as_dict(), "received_at": self.received_at.isoformat()}


def receive(path: Path, settings: Settings, *, remove_landing: bool = True) -> Receipt:
    """Archive one landed file, append its receipt and (by default) remove it from the landing folder.

    The landing copy is removed only after the archive copy is durable, so a crash in between leaves the
    file in landing to be received again (the archive stores the same bytes once). Callers that record
    more before the file may go (the registry) pass ``remove_landing=False`` and remove it themselves.
    """
    from censustrace.compliance.erasure import ensure_not_erased, is_erased

    landing_name = file_dataset_name(path)
    archived = archive_file(path, settings.archive_dir)
    if is_erased(settings, archived.sha256):
        # Bytes erased under a retention rule must not come back through a new receipt or a retry: the
        # copy just made goes, and so does the landed one (it is the erased content).
        if not archived.already_archived:
            archived.archive_path.chmod(0o644)
            archived.archive_path.unlink(missing_ok=True)
        path.unlink(missing_ok=True)
        ensure_not_erased(settings, archived.sha256, archived.original_name)
    received_at = datetime.now(UTC)
    receipt = Receipt(archived, received_at, _lineage(landing_name, archived, received_at))
    receipts = settings.home / "receipts.jsonl"
    with receipts.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(receipt.as_dict(), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if remove_landing:
        path.unlink()
    return receipt


def _lineage(landing_name: str, archived: ArchivedFile, received_at: datetime) -> StepLineage:
    facets: dict[str, DatasetFacet] = {
        "version": DatasetVersionDatasetFacet(datasetVersion=archived.sha256),
        "censusExtract": CensusExtractDatasetFacet(
            sha256=archived.sha256,
            size=archived.size,
            originalName=archived.original_name,
            receivedAt=received_at.isoformat(),
        ),
    }
    return StepLineage(
        inputs=[InputDataset(namespace=FILE_NAMESPACE, name=landing_name, facets=facets)],
        outputs=[
            OutputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(archived.archive_path),
                facets=dict(facets),
                outputFacets={"outputStatistics": OutputStatisticsOutputDatasetFacet(size=archived.size)},
            )
        ],
    )
