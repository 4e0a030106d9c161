"""Receiving one census file: claim it (an atomic rename out of the landing folder), archive its exact
bytes, check nobody wrote to it meanwhile, record the receipt, and only then remove the claim."""

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
from censustrace.intake.landing import CHANGED, Claim, LandingError, claim
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name


@dataclass(frozen=True, slots=True)
class Receipt:
    archived: ArchivedFile
    received_at: datetime
    lineage: StepLineage
    claim: Claim | None = None  # the receiver's private copy, removed by ``done``

    def give_back(self) -> None:
        """Put the file back in the landing folder (when what follows the archive failed)."""
        if self.claim is not None:
            self.claim.give_back()

    def done(self) -> None:
        """Remove this receiver's claim of the landed file (only its own: never a name in landing)."""
        if self.claim is not None:
            self.claim.release()

    def as_dict(self) -> dict[str, object]:
        return {**self.archived.as_dict(), "received_at": self.received_at.isoformat()}


def receive(path: Path, settings: Settings, *, remove_landing: bool = True) -> Receipt:
    """Claim one landed file, archive it, append its receipt and (by default) remove the claim.

    The file is first renamed into the landing folder's private claim folder, so a same-named upload
    arriving meanwhile is never touched, and the claim is removed only after the archive copy is
    durable: a crash in between leaves the claim to be received again (the archive stores the same bytes
    once). If the file changed while it was copied (a writer still had it open), nothing is recorded,
    the file goes back to the landing folder and CT-LANDING-CHANGED is raised. Callers that record more
    before the file may go (the registry) pass ``remove_landing=False`` and call ``Receipt.done()``.
    """
    from censustrace.compliance.erasure import ensure_not_erased, is_erased

    taken = claim(path)
    landing_name = file_dataset_name(taken.landing_path)
    try:
        archived = archive_file(taken.path, settings.archive_dir, name=taken.name)
    except BaseException:
        taken.give_back()  # to be received again by the next run, not an hour later
        raise
    if not taken.unchanged() or archived.size != taken.stat.st_size:
        where = taken.give_back()
        raise LandingError(
            f"{taken.name}: changed while it was being received; left at {where.name} to be received again",
            code=CHANGED,
        )
    if is_erased(settings, archived.sha256):
        # Bytes erased under a retention rule must not come back through a new receipt or a retry: the
        # copy just made goes, and so does the claimed one (it is the erased content).
        if not archived.already_archived:
            archived.archive_path.chmod(0o644)
            archived.archive_path.unlink(missing_ok=True)
        taken.release()
        ensure_not_erased(settings, archived.sha256, archived.original_name)
    received_at = datetime.now(UTC)
    receipt = Receipt(archived, received_at, _lineage(landing_name, archived, received_at), taken)
    receipts = settings.home / "receipts.jsonl"
    with receipts.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(receipt.as_dict(), sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    if remove_landing:
        receipt.done()
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
