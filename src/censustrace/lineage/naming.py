"""Dataset and job names, following the OpenLineage naming spec (see docs/lineage.md).

Files use the ``file`` namespace and their absolute path as name. A received file's version is its
sha256, so a school's resubmission is a new version of the same landing dataset and every consumer
can name the exact bytes it read.
"""

from __future__ import annotations

from pathlib import Path

FILE_NAMESPACE = "file"


def file_dataset_name(path: Path) -> str:
    return str(path.resolve())
