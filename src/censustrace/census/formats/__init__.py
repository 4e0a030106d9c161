"""Census file readers: School Census XML, CTF XML and the LA warehouse CSV export, into PupilRecords.

``parse_extract(path_or_paths)`` finds the format from the content (``detect_format``), reads and
checks the header at once, and returns a :class:`ParsedExtract` whose ``records()`` streams
``(record number, PupilRecord, issues)``. Whole-file problems raise :class:`ParseError`; row-level
problems are :class:`ParseIssue` values on the record (see ``errors``). Error codes are the
``CT-PARSE-*`` constants in ``errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from censustrace.census.formats import census_xml, ctf_xml, la_csv
from censustrace.census.formats.errors import LAYOUT, TRUNCATED, ParseError, ParseIssue
from censustrace.census.formats.header import NO_HINTS, ExtractHeader, ExtractHints, FormatName
from censustrace.census.formats.records import ParsedRecord, ParsedRow
from censustrace.census.formats.safexml import decode_head, open_binary, xml_prolog
from censustrace.errors import UsageError

__all__ = [
    "ExtractHeader",
    "ExtractHints",
    "FormatName",
    "ParseError",
    "ParseIssue",
    "ParsedExtract",
    "ParsedRecord",
    "ParsedRow",
    "detect_format",
    "parse_extract",
]

_SNIFF_BYTES: Final = 64 * 1024
_XML_ROOTS: Final[dict[str, FormatName]] = {"Message": "school_census_xml", "CTfile": "ctf_xml"}


def detect_format(path: Path | str) -> FormatName:
    """The format of one census file from its first bytes (root element or CSV header), not its name.

    Raises CT-PARSE-LAYOUT when it is none of them, CT-PARSE-TRUNCATED when it is empty.
    """
    path = Path(path)
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
    if not head:
        raise ParseError(TRUNCATED, path, "the file is empty")
    text = decode_head(head).lstrip()
    if text.startswith("<"):
        _, root = xml_prolog(text)
        if root in _XML_ROOTS:
            return _XML_ROOTS[root]
        raise ParseError(
            LAYOUT,
            path,
            f"XML whose root element is not one of {', '.join(_XML_ROOTS)}",
            item=root or "(none)",
        )
    first_line = text.splitlines()[0] if text else ""
    separator = "," if "," in first_line else ("\t" if "\t" in first_line else ";")
    columns = [c.strip().strip('"').lower() for c in first_line.split(separator)]
    if la_csv.identify(columns) is not None:
        return "la_csv"
    raise ParseError(LAYOUT, path, "neither census XML, CTF nor an LA export table (pupilonroll, ...)")


@dataclass(frozen=True, slots=True)
class ParsedExtract:
    """One school's census extract: its checked header, and its records on demand (streamed)."""

    format: FormatName
    paths: tuple[Path, ...]
    header: ExtractHeader
    hints: ExtractHints = NO_HINTS
    csv_rules: la_csv.CsvRules = la_csv.DEFAULT_RULES

    def records(self, issues: list[ParseIssue] | None = None) -> Iterator[ParsedRecord]:
        """``(record number, PupilRecord, issues)`` in file order; each call reads the files again.

        ``issues`` receives problems that belong to no record (CSV rows that join no pupil) once the
        records are exhausted. A ParseError may come after some records: then reject the extract.
        """
        if self.format == "school_census_xml":
            return census_xml.iter_records(self.paths[0], self.hints)
        if self.format == "ctf_xml":
            return ctf_xml.iter_records(self.paths[0], self.hints)
        return la_csv.iter_records(self.paths, self.hints, issues, self.csv_rules)

    def rows(self, issues: list[ParseIssue] | None = None) -> Iterator[ParsedRow]:
        """:meth:`records` as field values in ``PUPIL_FIELDS`` order, without building a record: for
        callers that store rows (staging). Same order, numbers, issues and errors."""
        if self.format == "school_census_xml":
            return census_xml.iter_rows(self.paths[0], self.hints)
        if self.format == "ctf_xml":
            return ctf_xml.iter_rows(self.paths[0], self.hints)
        return la_csv.iter_rows(self.paths, self.hints, issues, self.csv_rules)

    def __iter__(self) -> Iterator[ParsedRecord]:
        return self.records()


def parse_extract(
    paths_or_path: Path | str | Iterable[Path | str],
    hints: ExtractHints = NO_HINTS,
    *,
    csv_rules: la_csv.CsvRules = la_csv.DEFAULT_RULES,
) -> ParsedExtract:
    """Detect the format, read the header (raising ParseError if the extract is unusable) and return
    the extract. One XML/CTF file, or the CSV tables of one school (all three, or the pupilonroll
    table alone when its siblings are named like it). ``hints`` supply or check header values;
    ``csv_rules`` say how strict the LA CSV reader is (unknown columns, side-table cap)."""
    if isinstance(paths_or_path, str | Path):
        paths: tuple[Path, ...] = (Path(paths_or_path),)
    else:
        paths = tuple(Path(p) for p in paths_or_path)
    if not paths:
        raise UsageError("parse_extract needs at least one file")
    formats = {detect_format(p) for p in paths}
    if formats == {"la_csv"}:
        header = la_csv.read_header(paths, hints, csv_rules)
        return ParsedExtract("la_csv", paths, header, hints, csv_rules)
    if len(paths) != 1:
        raise UsageError("an XML or CTF extract is one file; several were given")
    fmt = formats.pop()
    reader = census_xml if fmt == "school_census_xml" else ctf_xml
    return ParsedExtract(fmt, paths, reader.read_header(paths[0], hints), hints)
