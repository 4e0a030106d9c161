"""Consent files arriving in ``landing/consent/``: taken by the ``census_consent`` DAG, never by
``census_ingest`` (which reads only the files directly in ``landing/``, see ``intake.landing``).

Each file is archived byte for byte and applied (``objections.ingest_consent_file``); a file applied or
registered as a duplicate is then removed from the landing folder (its bytes are in the archive). A file
refused whole stays archived and is moved to ``landing/consent/.refused/`` so it is not retried forever
but is not lost either.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from censustrace.config import Settings
from censustrace.lineage.model import StepLineage

CONSENT_FOLDER: Final = "consent"
SUFFIXES: Final = (".csv",)


def consent_landing_dir(settings: Settings) -> Path:
    return settings.landing_dir / CONSENT_FOLDER


def pending_consent_files(settings: Settings) -> list[Path]:
    """Consent files waiting, in a stable order (uploads in progress are dot-files: not taken)."""
    folder = consent_landing_dir(settings)
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in SUFFIXES
    )


def take_consent_files(settings: Settings, *, lineage: StepLineage | None = None) -> dict[str, Any]:
    """Apply every waiting consent file; ``{"files": [outcome...], "applied": n, "refused": n}``."""
    from censustrace.consent.objections import ingest_consent_file

    outcomes = []
    for path in pending_consent_files(settings):
        outcome = ingest_consent_file(path, settings)
        if lineage is not None:
            lineage.extend(outcome.lineage)
        if outcome.status == "refused":
            refused = path.parent / ".refused"
            refused.mkdir(exist_ok=True)
            os.replace(path, refused / path.name)
        else:
            path.unlink(missing_ok=True)
        outcomes.append({**outcome.as_dict(), "file": path.name})
    return {
        "files": outcomes,
        "applied": sum(o["status"] != "refused" for o in outcomes),
        "refused": sum(o["status"] == "refused" for o in outcomes),
    }


__all__ = ["consent_landing_dir", "pending_consent_files", "take_consent_files"]
