"""The extract header (who sent the extract, for which census), the hints a caller knows, the
conventional file name, and the checks every header item goes through.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, NamedTuple

from censustrace.census import codes
from censustrace.census.formats.errors import HEADER, ParseError
from censustrace.census.formats.values import parse_date

FormatName = Literal["school_census_xml", "ctf_xml", "la_csv"]

# --- the extract header ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExtractHeader:
    """Who sent the extract and for which census. None where the format does not carry an item.

    ``software`` is the MIS software code (census XML ``SoftwareCode``) or supplier (CTF ``SupplierID``);
    ``declared_pupils`` is a pupil count stated in the file (none of the three layouts has one yet).
    """

    format: FormatName
    la: str
    estab: str
    urn: str | None
    term: str
    year: int
    reference_date: dt.date
    software: str | None = None
    software_release: str | None = None
    document_datetime: dt.datetime | None = None
    declared_pupils: int | None = None
    dest_laestab: str | None = None  # CTF only: the school the file is addressed to
    source_files: tuple[str, ...] = ()  # file names (not paths) the extract was read from

    @property
    def laestab(self) -> str:
        return self.la + self.estab


@dataclass(frozen=True, slots=True)
class ExtractHints:
    """Header values the caller knows, for formats that lack them (CSV: all; CTF: term and year).

    Where the file does carry an item, a hint must agree with it, or CT-PARSE-HEADER is raised: a
    mismatch means the wrong file was picked up.
    """

    la: str | None = None
    estab: str | None = None
    term: str | None = None
    year: int | None = None
    urn: str | None = None


NO_HINTS: Final = ExtractHints()

# ``<prefix>_<LA>_<ESTAB>_<TERM>_<YEAR>.<ext>``, as the generator (and docs/data-model.md) names files.
_FILE_NAME = re.compile(
    r"(?P<prefix>[A-Za-z]+)_(?P<la>[0-9]{3})_(?P<estab>[0-9]{4})_(?P<term>AUT|SPR|SUM)_(?P<year>[0-9]{4})"
    r"\.(?:xml|csv)",
    re.IGNORECASE,
)


class FileNameParts(NamedTuple):
    prefix: str
    la: str
    estab: str
    term: str
    year: int


def file_name_parts(path: Path) -> FileNameParts | None:
    """The LA, establishment, term and year in a conventionally named census file, or None."""
    m = _FILE_NAME.fullmatch(path.name)
    if m is None:
        return None
    return FileNameParts(m["prefix"].lower(), m["la"], m["estab"], m["term"].upper(), int(m["year"]))


_LA = re.compile(r"[0-9]{3}")
_ESTAB = re.compile(r"[0-9]{4}")
_URN = re.compile(r"[0-9]{6}")
_YEAR = re.compile(r"[0-9]{4}")


class HeaderBuilder:
    """Checks header items one by one; every error names the item's path in the file."""

    def __init__(self, path: Path, hints: ExtractHints) -> None:
        self.path = path
        self.hints = hints

    def fail(self, item: str, problem: str) -> ParseError:
        return ParseError(HEADER, self.path, problem, item=item)

    def _merge(self, value: str | None, hint: str | None, item: str) -> str | None:
        if value is not None and hint is not None and value != hint:
            raise self.fail(item, "does not match the value the caller expected")
        return value if value is not None else hint

    def la(self, value: str | None, item: str) -> str:
        return self._pattern(self._merge(value, self.hints.la, item), _LA, item, "3-digit LA number")

    def estab(self, value: str | None, item: str) -> str:
        return self._pattern(self._merge(value, self.hints.estab, item), _ESTAB, item, "4-digit number")

    def urn(self, value: str | None, item: str) -> str | None:
        merged = self._merge(value, self.hints.urn, item)
        return None if merged is None else self._pattern(merged, _URN, item, "6-digit URN")

    def term(self, value: str | None, item: str) -> str:
        merged = self._merge(value.upper() if value else None, self.hints.term, item)
        if merged is None:
            raise self.fail(item, "is missing")
        if merged not in codes.TERMS:
            raise self.fail(item, f"must be one of {', '.join(codes.TERMS)}")
        return merged

    def year(self, value: str | None, item: str) -> int:
        hint = None if self.hints.year is None else str(self.hints.year)
        return int(self._pattern(self._merge(value, hint, item), _YEAR, item, "4-digit year"))

    def date(self, value: str | None, item: str) -> dt.date | None:
        if value is None:
            return None
        try:
            return parse_date(value)
        except ValueError:
            raise self.fail(item, "is not a date") from None

    def datetime(self, value: str | None, item: str) -> dt.datetime | None:
        if value is None:
            return None
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            raise self.fail(item, "is not an ISO 8601 date-time") from None

    def _pattern(self, value: str | None, pattern: re.Pattern[str], item: str, what: str) -> str:
        if value is None:
            raise self.fail(item, "is missing")
        if not pattern.fullmatch(value):
            raise self.fail(item, f"must be a {what}")
        return value
