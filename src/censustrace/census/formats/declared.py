"""What a sender declares about a file, checked against what the file holds or is called.

* **File name vs header.** Files are named ``<prefix>_<LA>_<ESTAB>_<TERM>_<YEAR>.<ext>``. Where a format
  carries the school, term or year in its header (School Census XML: ``Source/LEA``, ``Source/Estab``,
  ``CollectionDetails/Term`` and ``Year``; CTF: ``SourceSchool/LEA``, ``Estab`` and ``AcademicYear``),
  a conventionally named file whose name says otherwise is refused with CT-PARSE-NAME-MISMATCH: one of
  the two is wrong, and loading it would put a school's pupils under another school or census. A file
  whose name does not follow the convention is read from its header alone.
* **A CTF's date.** A CTF is not a census return: it is an extract of its source school dated by its
  header's ``DateTime``. When its name carries no term and year they are the term of that date
  (:func:`term_of`), an assumption (terms: January-March spring, April-August summer, September-December
  autumn; real terms end at Easter).

Messages name the file and the header item; the values compared are school numbers and terms, never
pupil data.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Final

from censustrace.census import codes
from censustrace.census.formats.errors import HEADER, ParseError
from censustrace.census.formats.header import FileNameParts

NAME_MISMATCH: Final = "CT-PARSE-NAME-MISMATCH"  # the file name names another school, term or year
_ACADEMIC_YEAR: Final = re.compile(r"([0-9]{4})\s*[/-]\s*([0-9]{2}|[0-9]{4})")


def check_name(path: Path, named: FileNameParts | None, header: dict[str, tuple[object, str]]) -> None:
    """Refuse (CT-PARSE-NAME-MISMATCH) a file whose conventional name disagrees with its header.

    ``header`` maps a name part (``la``, ``estab``, ``term``, ``year``) to (the header's value, the
    header item it came from); parts the format does not carry are left out."""
    if named is None:
        return
    for part, (value, item) in header.items():
        in_name = getattr(named, part)
        if value is not None and in_name != value:
            raise ParseError(
                NAME_MISMATCH,
                path,
                f"the file name gives {part.upper()} {in_name} but the header gives {value}",
                item=item,
            )


def academic_year(path: Path, text: str | None, item: str) -> int | None:
    """The calendar year an academic year ``2026/2027`` (or ``2026/27``) began; None if absent."""
    if text is None:
        return None
    m = _ACADEMIC_YEAR.fullmatch(text.strip())
    if m is None:
        raise ParseError(HEADER, path, "must be an academic year such as 2026/2027", item=item)
    start, end = int(m[1]), m[2]
    if int(end) % 100 != (start + 1) % 100:
        raise ParseError(HEADER, path, "must be two consecutive years", item=item)
    return start


def term_of(day: dt.date) -> tuple[str, int]:
    """The census term and calendar year a date falls in (see the module docstring)."""
    if day.month <= 3:
        return "SPR", day.year
    if day.month <= 8:
        return "SUM", day.year
    return "AUT", day.year


def check_academic_year(path: Path, term: str, year: int, start: int | None, item: str) -> None:
    """Refuse a CTF whose header's academic year is not that of the term and year of its name."""
    if start is not None and codes.academic_year_start(term, year) != start:
        raise ParseError(
            NAME_MISMATCH,
            path,
            f"the file name gives {term} {year} (academic year {codes.academic_year_start(term, year)}/"
            f"{codes.academic_year_start(term, year) + 1}) but the header gives {start}/{start + 1}",
            item=item,
        )
