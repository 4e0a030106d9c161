"""Synthetic, deterministic School Census data with known injected faults, for tests and demos.

``generate(GeneratorOptions(out=..., ...))`` writes one census file (XML, CTF) or one set of CSV tables
per school, optional consent files, and ``manifest.json``; see ``docs/data-model.md`` for the layouts
and the manifest.
"""

from censustrace.census.generator.faults import (
    CSV_WHOLE_FILE_FAULTS,
    MANDATORY_FIELDS,
    ROW_FAULTS,
    UNKNOWN_CODES,
    WHOLE_FILE_FAULTS,
)
from censustrace.census.generator.options import FORMATS, Format, GeneratorOptions
from censustrace.census.generator.runner import MANIFEST_NAME, generate

__all__ = [
    "CSV_WHOLE_FILE_FAULTS",
    "FORMATS",
    "MANDATORY_FIELDS",
    "MANIFEST_NAME",
    "ROW_FAULTS",
    "UNKNOWN_CODES",
    "WHOLE_FILE_FAULTS",
    "Format",
    "GeneratorOptions",
    "generate",
]
