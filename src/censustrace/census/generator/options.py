"""What the generator is asked for, checked once, with errors naming the CLI option."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from censustrace.census.codes import TERMS
from censustrace.errors import UsageError

Format = Literal["xml", "ctf", "csv"]
FORMATS: tuple[Format, ...] = ("xml", "ctf", "csv")

# One LA has 4-digit establishment numbers; the generator uses 1000-9999, so 9,000 schools at most.
MAX_SCHOOLS = 9000
MAX_PUPILS_PER_SCHOOL = 5000
MIN_YEAR, MAX_YEAR = 2000, 2100
MAX_SEED = 2**63 - 1
_LA = re.compile(r"[0-9]{3}")
# 000 is no LA; 001-005 are the pseudo-LA codes of temporary UPNs.
_RESERVED_LA = frozenset({"000", "001", "002", "003", "004", "005"})


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class GeneratorOptions:
    """Options of ``censustrace generate``; each field's CLI option is named in its errors."""

    out: Path
    schools: int = 12
    pupils_per_school: int = 340
    term: str = "AUT"
    year: int = 2026
    la: str = "330"
    seed: int = 1
    fmt: Format = "xml"
    faults: float = 0.0
    consents: bool = False

    def __post_init__(self) -> None:
        if not _is_int(self.schools) or not 1 <= self.schools <= MAX_SCHOOLS:
            raise UsageError(f"--schools must be between 1 and {MAX_SCHOOLS}, got {self.schools!r}")
        if not _is_int(self.pupils_per_school) or not 1 <= self.pupils_per_school <= MAX_PUPILS_PER_SCHOOL:
            raise UsageError(
                f"--pupils-per-school must be between 1 and {MAX_PUPILS_PER_SCHOOL}, "
                f"got {self.pupils_per_school!r}"
            )
        if self.term not in TERMS:
            raise UsageError(f"--term must be one of {', '.join(TERMS)}, got {self.term!r}")
        if not _is_int(self.year) or not MIN_YEAR <= self.year <= MAX_YEAR:
            raise UsageError(f"--year must be between {MIN_YEAR} and {MAX_YEAR}, got {self.year!r}")
        if not isinstance(self.la, str) or not _LA.fullmatch(self.la) or self.la in _RESERVED_LA:
            raise UsageError(f"--la must be a 3-digit LA number from 006 to 999, got {self.la!r}")
        if not _is_int(self.seed) or not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be an integer from 0 to {MAX_SEED}, got {self.seed!r}")
        if self.fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got {self.fmt!r}")
        faults_ok = isinstance(self.faults, int | float) and not isinstance(self.faults, bool)
        if not faults_ok or not math.isfinite(self.faults) or not 0.0 <= self.faults <= 1.0:
            raise UsageError(f"--faults must be a rate between 0 and 1, got {self.faults!r}")
        if not isinstance(self.consents, bool):
            raise UsageError(f"--consents must be true or false, got {self.consents!r}")
        if not isinstance(self.out, Path):
            raise UsageError(f"--out must be a folder path, got {self.out!r}")
        if self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {self.out} exists and is not a folder")

    def as_manifest(self) -> dict[str, Any]:
        """The options as recorded in the manifest; ``out`` is left out so a copied folder still matches."""
        return {
            "schools": self.schools,
            "pupils_per_school": self.pupils_per_school,
            "term": self.term,
            "year": self.year,
            "la": self.la,
            "seed": self.seed,
            "format": self.fmt,
            "faults": self.faults,
            "consents": self.consents,
        }
