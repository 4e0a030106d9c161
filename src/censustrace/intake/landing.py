"""The landing folder: where schools' census files arrive."""

from __future__ import annotations

from pathlib import Path

# Uploads in progress are written as dot-files and renamed into place; only complete files are taken.
CENSUS_SUFFIXES = (".xml", ".csv")


def pending_files(landing_dir: Path) -> list[Path]:
    """Census files waiting in the landing folder, in a stable order."""
    if not landing_dir.is_dir():
        return []
    return sorted(
        p
        for p in landing_dir.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in CENSUS_SUFFIXES
    )
