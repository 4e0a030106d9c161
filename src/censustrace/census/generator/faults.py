"""Known defects injected into generated files, so validators and quarantine can be tested.

Row faults (at most one per pupil row, each with probability ``--faults``; stable names):

==================  ========================================================================
``upn_check_letter``  UPN with a wrong check letter (field ``upn``)
``duplicate_upn``     UPN of an earlier pupil in the same file (field ``upn``; the later row)
``impossible_dob``    DOB after the census day, before 1961, or no such day (``2016-02-30``)
``unknown_code``      a code outside its code set; field one of ``UNKNOWN_CODES``
``missing_mandatory`` a mandatory item left out; field one of ``MANDATORY_FIELDS``
``bad_postcode``      a postcode that is not in UK postcode format (field ``postcode``)
==================  ========================================================================

Whole-file faults: ``malformed_xml`` (a mismatched end tag half way through), ``truncated`` (cut at
60% of its bytes, mid-row for CSV) and ``wrong_encoding`` (Windows-1252 bytes where UTF-8 is declared
or expected; the first pupil's forename is accented so the difference is really there). CSV files
get only the last two. A school with a whole-file fault gets no row faults, so every row fault
listed in the manifest can be found by reading the files.

Which schools get whole-file faults (only when ``--faults`` > 0): ``k = min(max(3, ceil(n * rate)),
n // 4)`` of the ``n`` schools, chosen by the seed, with the kinds dealt in turn in school order. So
12 schools give 3 faulty files, one of each kind, and fewer than 4 schools give none.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from collections import deque
from dataclasses import dataclass
from typing import Final

from censustrace.census.identifiers import UPN_CHECK_TABLE
from censustrace.census.model import PupilRecord

UPN_CHECK_LETTER: Final = "upn_check_letter"
DUPLICATE_UPN: Final = "duplicate_upn"
IMPOSSIBLE_DOB: Final = "impossible_dob"
UNKNOWN_CODE: Final = "unknown_code"
MISSING_MANDATORY: Final = "missing_mandatory"
BAD_POSTCODE: Final = "bad_postcode"
ROW_FAULTS: Final = (
    UPN_CHECK_LETTER,
    DUPLICATE_UPN,
    IMPOSSIBLE_DOB,
    UNKNOWN_CODE,
    MISSING_MANDATORY,
    BAD_POSTCODE,
)

MALFORMED_XML: Final = "malformed_xml"
TRUNCATED: Final = "truncated"
WRONG_ENCODING: Final = "wrong_encoding"
WHOLE_FILE_FAULTS: Final = (MALFORMED_XML, TRUNCATED, WRONG_ENCODING)
CSV_WHOLE_FILE_FAULTS: Final = (TRUNCATED, WRONG_ENCODING)

# Values that look plausible but are in no code set (checked by the tests against codes.py).
UNKNOWN_CODES: Final[dict[str, tuple[str, ...]]] = {
    "ethnicity": ("WBRT", "ASIA", "XXXX"),
    "language": ("ENGL", "ZZZ", "EN"),
    "sex": ("X", "9", "Q"),
    "enrol_status": ("Z", "D", "1"),
    "sen_provision": ("Q", "Y", "SEN"),
    "service_child": ("X", "Yes", "0"),
}
_UNKNOWN_FIELDS: Final = tuple(sorted(UNKNOWN_CODES))
MANDATORY_FIELDS: Final = ("surname", "forename", "dob", "sex", "enrol_status", "nc_year")
BAD_POSTCODES: Final = ("B1 1A", "12 3AB", "B1 1CI", "QQ1 1AA", "ZZ9 ZZZ9", "B11AA1")

_RECENT_UPNS = 64


@dataclass(frozen=True, slots=True)
class RowFault:
    """One injected defect: ``overrides`` maps a PupilRecord field to the text written instead
    (None: the item is left out)."""

    kind: str
    field: str
    overrides: dict[str, str | None]


class RowFaultInjector:
    """Decides, row by row in file order, whether and how to damage the row."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self._rng = rng
        self._rate = rate
        self._recent: deque[str] = deque(maxlen=_RECENT_UPNS)

    def next(self, pupil: PupilRecord) -> RowFault | None:
        fault = self._fault(pupil) if self._rate > 0 and self._rng.random() < self._rate else None
        if fault is None or fault.field != "upn":
            self._recent.append(pupil.upn)
        return fault

    def _fault(self, pupil: PupilRecord) -> RowFault:
        rng = self._rng
        kinds = [UPN_CHECK_LETTER, IMPOSSIBLE_DOB, UNKNOWN_CODE, MISSING_MANDATORY]
        if self._recent:
            kinds.append(DUPLICATE_UPN)
        if pupil.address_lines and pupil.postcode:
            kinds.append(BAD_POSTCODE)
        kind = kinds[rng.randrange(len(kinds))]
        if kind == UPN_CHECK_LETTER:
            wrong = UPN_CHECK_TABLE[(UPN_CHECK_TABLE.index(pupil.upn[0]) + rng.randint(1, 22)) % 23]
            return RowFault(kind, "upn", {"upn": wrong + pupil.upn[1:]})
        if kind == DUPLICATE_UPN:
            return RowFault(kind, "upn", {"upn": self._recent[rng.randrange(len(self._recent))]})
        if kind == IMPOSSIBLE_DOB:
            return RowFault(kind, "dob", {"dob": self._impossible_dob(pupil, rng)})
        if kind == UNKNOWN_CODE:
            field = _UNKNOWN_FIELDS[rng.randrange(len(_UNKNOWN_FIELDS))]
            values = UNKNOWN_CODES[field]
            return RowFault(kind, field, {field: values[rng.randrange(len(values))]})
        if kind == MISSING_MANDATORY:
            field = MANDATORY_FIELDS[rng.randrange(len(MANDATORY_FIELDS))]
            return RowFault(kind, field, {field: None})
        return RowFault(kind, "postcode", {"postcode": BAD_POSTCODES[rng.randrange(len(BAD_POSTCODES))]})

    @staticmethod
    def _impossible_dob(pupil: PupilRecord, rng: random.Random) -> str:
        choice = rng.randrange(3)
        if choice == 0:  # born after the census day
            return (pupil.reference_date + dt.timedelta(days=rng.randint(1, 400))).isoformat()
        if choice == 1:  # far too old to be on roll
            return dt.date(rng.randint(1900, 1960), rng.randint(1, 12), rng.randint(1, 28)).isoformat()
        year = pupil.dob.year if pupil.dob else pupil.census_year - 8
        return f"{year:04d}-{('02-30', '02-31', '04-31', '13-01')[rng.randrange(4)]}"


def plan_whole_file_faults(schools: int, rate: float, fmt: str, seed: int) -> dict[int, str]:
    """School index -> whole-file fault kind, by the rule in the module docstring."""
    if rate <= 0:
        return {}
    count = min(max(3, math.ceil(schools * rate)), schools // 4)
    if count == 0:
        return {}
    kinds = CSV_WHOLE_FILE_FAULTS if fmt == "csv" else WHOLE_FILE_FAULTS
    chosen = sorted(random.Random(f"censustrace-gen:{seed}:whole-file").sample(range(schools), count))
    return {index: kinds[n % len(kinds)] for n, index in enumerate(chosen)}
