"""What every census reader shares: the extract header, parse errors and issues, value conversion, and
the safe streaming XML loop used by the School Census and CTF readers.

Two kinds of problem, kept apart on purpose:

* A **whole-file** problem (the bytes are not a census file of the expected layout) raises
  :class:`ParseError`; nothing from that file may be trusted, even records already yielded.
* A **row-level** problem (one value cannot be converted, one row has the wrong shape) becomes a
  :class:`ParseIssue` attached to that record, whose field is then None, so the data-quality step can
  quarantine the row and keep the rest.

Neither ever carries a value from the file: messages name the file, the record (1-based pupil index in
XML, 1-based data row in CSV), the ``PupilRecord`` field and the source item, because any value may be
pupil data. Exceptions from lxml are not chained for the same reason (their text can quote bytes).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, NamedTuple

from lxml import etree

from censustrace.census import codes
from censustrace.census.model import ADDRESS_ITEMS, PUPIL_FIELDS, FsmPeriod, PupilRecord
from censustrace.errors import CensustraceError

FormatName = Literal["school_census_xml", "ctf_xml", "la_csv"]

# --- error and issue codes ---------------------------------------------------------------------------
# Whole-file (raised as ParseError).
IO_ERROR: Final = "CT-PARSE-IO"  # the file cannot be opened or read
MALFORMED: Final = "CT-PARSE-MALFORMED"  # not well-formed XML / not parseable CSV (line, column)
ENCODING: Final = "CT-PARSE-ENCODING"  # bytes not valid in the declared/assumed encoding (line, offset)
TRUNCATED: Final = "CT-PARSE-TRUNCATED"  # the file ends early (empty, or cut mid-element / mid-row)
HEADER: Final = "CT-PARSE-HEADER"  # a header item missing, invalid or contradicting a hint (its path)
LAYOUT: Final = "CT-PARSE-LAYOUT"  # wrong root element, misplaced element, missing CSV columns/tables
FORBIDDEN: Final = "CT-PARSE-FORBIDDEN"  # DOCTYPE / entity declarations (XXE, billion laughs)
# Row-level (ParseIssue; the record is still yielded).
VALUE: Final = "CT-PARSE-VALUE"  # a value that cannot be converted (not a date, not a boolean); field None
REPEATED: Final = "CT-PARSE-REPEATED"  # a single item given more than once; the first is used
SHAPE: Final = "CT-PARSE-SHAPE"  # a CSV row with more or fewer cells than the header
NO_UPN: Final = "CT-PARSE-NO-UPN"  # the record has no UPN; ``upn`` is ""
LINE_TOO_LONG: Final = "CT-PARSE-LINE-TOO-LONG"  # a CSV line longer than MAX_LINE_BYTES (memory bound)
ORPHAN: Final = "CT-PARSE-ORPHAN"  # an address/FSM row that joins no pupil row (reported to a sink)
UNKNOWN_COLUMN: Final = "CT-PARSE-UNKNOWN-COLUMN"  # a CSV column the table does not have (a warning,
# reported to the same sink; whole-file when the caller's CsvRules say so)
TOO_LARGE: Final = "CT-PARSE-TOO-LARGE"  # a CSV side table over the row cap it is held in memory under

Unit = Literal["pupil", "row", "line"]


class ParseError(CensustraceError):
    """A census file that cannot be read as a whole. ``code`` is one of the whole-file codes above.

    The message names the file and where (line/column, byte offset, record, item), never a value.
    """

    code = MALFORMED

    def __init__(
        self,
        code: str,
        path: Path | str,
        problem: str,
        *,
        line: int | None = None,
        column: int | None = None,
        offset: int | None = None,
        record: int | None = None,
        unit: Unit = "row",
        field: str | None = None,
        item: str | None = None,
    ) -> None:
        self.file = Path(path).name
        self.line, self.column, self.offset = line, column, offset
        self.record, self.field, self.item = record, field, item
        where = []
        if line is not None:
            where.append(f"line {line}" + (f", column {column}" if column is not None else ""))
        if offset is not None:
            where.append(f"byte {offset}")
        if record is not None:
            where.append(f"{unit} {record}")
        if field is not None:
            where.append(f"field {field}")
        if item is not None:
            where.append(f"item {item}")
        suffix = f" ({'; '.join(where)})" if where else ""
        super().__init__(f"{self.file}: {problem}{suffix}", code=code)

    def as_dict(self) -> dict[str, str]:
        out = super().as_dict()
        out["file"] = self.file
        for name in ("line", "column", "offset", "record", "field", "item"):
            value = getattr(self, name)
            if value is not None:
                out[name] = str(value)
        return out


@dataclass(frozen=True, slots=True)
class ParseIssue:
    """One row-level problem: where it is and what kind, never the value."""

    code: str
    file: str
    record: int  # 1-based pupil index (XML/CTF) or data row of ``file`` (CSV, header excluded)
    unit: Unit
    field: str  # the PupilRecord field affected ("*": the whole row)
    item: str  # the source item: XML path relative to the pupil element, or CSV column ("*": the row)
    problem: str  # fixed text, e.g. "is not a date"

    @property
    def message(self) -> str:
        return (
            f"{self.code}: {self.file} {self.unit} {self.record}: {self.field} ({self.item}) {self.problem}"
        )

    def as_dict(self) -> dict[str, str | int]:
        return {
            "code": self.code,
            "file": self.file,
            "record": self.record,
            "unit": self.unit,
            "field": self.field,
            "item": self.item,
            "message": self.message,
        }


class ParsedRecord(NamedTuple):
    """What ``iter_records`` yields: record number, the record, and its row-level issues."""

    number: int
    record: PupilRecord
    issues: list[ParseIssue]


class ParsedRow(NamedTuple):
    """What ``iter_rows`` yields: a record as its field values in ``PUPIL_FIELDS`` order (the same
    values ``PupilRecord(*values)`` holds), for callers that store rows and need no record object."""

    number: int
    values: list[Any]
    issues: list[ParseIssue]


class RecordContext:
    """Collects the issues of one record as it is mapped."""

    __slots__ = ("file", "issues", "number", "unit")

    def __init__(self, file: str, number: int, unit: Unit) -> None:
        self.file = file
        self.number = number
        self.unit: Unit = unit
        self.issues: list[ParseIssue] = []

    def add(
        self,
        code: str,
        field: str,
        item: str,
        problem: str,
        *,
        file: str | None = None,
        number: int | None = None,
    ) -> None:
        self.issues.append(
            ParseIssue(code, file or self.file, number or self.number, self.unit, field, item, problem)
        )


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


# --- value conversion --------------------------------------------------------------------------------


class Kind(enum.Enum):
    TEXT = "text"  # kept exactly as written (surrounding whitespace removed)
    DATE = "date"
    BOOL = "bool"
    LIST = "list"  # repeated XML element, or ``;``-separated CSV cell


@dataclass(frozen=True, slots=True)
class Item:
    """One row of a format's mapping table: a PupilRecord field and where it comes from."""

    field: str
    source: str  # XML path relative to the pupil element, or CSV column name
    kind: Kind = Kind.TEXT
    required: bool = False  # CSV only: the column must be in the header (else CT-PARSE-LAYOUT)


_MONTHS: Final = {
    m: n
    for n, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1
    )
}
# ISO ``2020-04-25`` or the LA export's ``2020-Apr-25``, optionally followed by a time (``T`` or space)
# and a zone, which are checked for shape and then dropped: census items are days.
_DATE = re.compile(
    r"([0-9]{4})-([0-9]{2}|[A-Za-z]{3})-([0-9]{2})"
    r"(?:[T ]([01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\.[0-9]+)?)?)?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])?"
)


def parse_date(text: str) -> dt.date:
    """A date in any form real extracts use; ValueError (with no value in it) otherwise.

    Accepted: ``2020-04-25``, ``2020-04-25T00:00:00``, ``2020-04-25 00:00:00(.000)``, ``2020-Apr-25``,
    ``2020-Apr-25 00:00:00`` (month names in any case), each with an optional zone. Day-first
    (``25/04/2020``) is deliberately not guessed: an ambiguous date is worse than a rejected one.
    """
    if len(text) == 10 and text[4] == "-" and text[7] == "-" and text[5:7].isdigit():
        return dt.date.fromisoformat(text)  # the common case, fast
    m = _DATE.fullmatch(text)
    if m is None:
        raise ValueError("not a date")
    month = int(m[2]) if m[2].isdigit() else _MONTHS.get(m[2].lower())
    if month is None:
        raise ValueError("not a month")
    return dt.date(int(m[1]), month, int(m[3]))


_TRUE: Final = frozenset({"true", "t", "yes", "y", "1"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0"})


def parse_bool(text: str) -> bool:
    """xs:boolean (``true``/``false``/``1``/``0``) and export styles (``True``, ``Y``/``N``, ``Yes``)."""
    low = text.lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("not a boolean")


_BOOLS: Final[dict[str, bool]] = {**dict.fromkeys(_TRUE, True), **dict.fromkeys(_FALSE, False)}


def fill_converted(
    values: list[Any],
    converted: Iterable[tuple[int, int, Item]],
    cells: Sequence[str | None],
    ctx: RecordContext,
) -> None:
    """:func:`convert` for the date and boolean items of a record at once, the form the readers use:
    ``converted`` holds ``(position in values, index in cells, item)`` in the items' order (so issues
    keep that order); an empty or absent cell leaves the value as it is (None)."""
    for at, index, item in converted:
        raw = cells[index]
        if raw:
            raw = raw.strip()
        if not raw:
            continue
        if item.kind is Kind.DATE:
            try:
                values[at] = parse_date(raw)
            except ValueError:
                ctx.add(VALUE, item.field, item.source, "is not a date")
        else:
            flag = _BOOLS.get(raw.lower())
            if flag is None:
                ctx.add(VALUE, item.field, item.source, f"is not a {item.kind.value}")
            else:
                values[at] = flag


def convert(item: Item, raw: str | None, ctx: RecordContext) -> Any:
    """One scalar value; an unconvertible one becomes None plus a CT-PARSE-VALUE issue."""
    if not raw:
        return None
    if item.kind is Kind.TEXT:
        return raw
    try:
        return parse_date(raw) if item.kind is Kind.DATE else parse_bool(raw)
    except ValueError:
        ctx.add(VALUE, item.field, item.source, f"is not a {item.kind.value}")
        return None


def fsm_period(
    start: str | None,
    end: str | None,
    country: str | None,
    ctx: RecordContext,
    items: Sequence[str],
    *,
    file: str | None = None,
    number: int | None = None,
) -> FsmPeriod | None:
    """One FSM period from its three items (source names in ``items``); None plus an issue if unusable."""
    start_date = end_date = None
    ok = True
    for index, raw in ((0, start), (1, end)):
        if not raw:
            continue
        try:
            value = parse_date(raw)
        except ValueError:
            ctx.add(VALUE, "fsm_periods", items[index], "is not a date", file=file, number=number)
            ok = False
            continue
        if index == 0:
            start_date = value
        else:
            end_date = value
    if ok and start_date is None:
        ctx.add(VALUE, "fsm_periods", items[0], "is missing: the period is dropped", file=file, number=number)
        ok = False
    if not ok or start_date is None:
        return None
    return FsmPeriod(start_date, end_date, country or "")


def fsm_eligible(periods: Sequence[FsmPeriod], reference_date: dt.date, incomplete: bool) -> bool | None:
    """True when a period covers the census day; None (unknown) when one could not be read and none
    of the readable ones covers it."""
    if any(p.covers(reference_date) for p in periods):
        return True
    return None if incomplete else False


def address_lines(items: Sequence[str | None], postcode: str | None, uprn: str | None) -> tuple[str, ...]:
    """The seven BS7666 items with ``""`` for gaps, or ``()`` when the pupil has no address item at all."""
    if not (postcode or uprn or any(items)):
        return ()
    return tuple(value or "" for value in items)


_EMPTY_RECORD: Final[dict[str, Any]] = {
    **dict.fromkeys(PUPIL_FIELDS),
    "nationality": (),
    "sen_needs": (),
    "address_lines": (),
    "fsm_periods": (),
}


def make_record(values: dict[str, Any], header: ExtractHeader) -> PupilRecord:
    """A PupilRecord from mapped ``values`` (missing fields None/empty) and the extract header."""
    return PupilRecord(
        **{
            **_EMPTY_RECORD,
            **values,
            "laestab": header.laestab,
            "urn": header.urn,
            "census_term": header.term,
            "census_year": header.year,
            "reference_date": header.reference_date,
        }
    )


def check_upn(values: dict[str, Any], ctx: RecordContext, item: str) -> None:
    """``upn`` is a required str in the record: an absent one becomes ``""`` plus a CT-PARSE-NO-UPN issue."""
    if not values.get("upn"):
        values["upn"] = ""
        ctx.add(NO_UPN, "upn", item, "is missing")


# --- records as value lists -------------------------------------------------------------------------
# The readers fill a list of field values per record (in ``PUPIL_FIELDS`` order) rather than a dict of
# keyword arguments: a record is built with one positional call, or not at all when the caller stores
# rows (staging). ``iter_records`` and ``iter_rows`` therefore share every line of mapping code.

#: Position of each PupilRecord field in a value list.
FIELD_AT: Final[dict[str, int]] = {name: at for at, name in enumerate(PUPIL_FIELDS)}
UPN_AT: Final = FIELD_AT["upn"]


def record_template(header: ExtractHeader) -> list[Any]:
    """The values of a record with nothing read (None, or ``()`` for lists) and the extract header's
    fields filled in: each record starts as a copy of this."""
    values = [_EMPTY_RECORD[name] for name in PUPIL_FIELDS]
    values[FIELD_AT["laestab"]] = header.laestab
    values[FIELD_AT["urn"]] = header.urn
    values[FIELD_AT["census_term"]] = header.term
    values[FIELD_AT["census_year"]] = header.year
    values[FIELD_AT["reference_date"]] = header.reference_date
    return values


def check_upn_value(values: list[Any], ctx: RecordContext, item: str) -> None:
    """:func:`check_upn` for a value list."""
    if not values[UPN_AT]:
        values[UPN_AT] = ""
        ctx.add(NO_UPN, "upn", item, "is missing")


def as_records(rows: Iterable[ParsedRow]) -> Iterator[ParsedRecord]:
    """Rows as records (``PupilRecord(*values)``), in the same order, lazily."""
    for number, values, issues in rows:
        yield ParsedRecord(number, PupilRecord(*values), issues)


# --- safe streaming XML ------------------------------------------------------------------------------

_SNIFF_BYTES: Final = 64 * 1024
_BOMS: Final = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))
_FIRST_ELEMENT = re.compile(r"<([A-Za-z_][\w.:-]*)")
_DTD_DECLARATION = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def decode_head(head: bytes) -> str:
    """The first bytes of a file as text, for sniffing only (BOM honoured, bad bytes replaced)."""
    for bom, encoding in _BOMS:
        if head.startswith(bom):
            return head[len(bom) :].decode(encoding, errors="replace")
    return head.decode("utf-8", errors="replace")


def xml_prolog(text: str) -> tuple[str, str | None]:
    """The text before the root element, and the root element's name (None if not in ``text``).

    Comments and processing instructions are skipped; a DOCTYPE is left in the prolog for the caller.
    """
    pos = 0
    while True:
        m = _FIRST_ELEMENT.search(text, pos)
        if m is None:
            return text, None
        before = text[: m.start()]
        # A "<name" inside an unclosed comment or PI is not the root: continue after it closes.
        if before.count("<!--") > before.count("-->"):
            end = text.find("-->", m.start())
        elif before.count("<?") > before.count("?>"):
            end = text.find("?>", m.start())
        else:
            return before, m[1]
        if end == -1:
            return text, None
        pos = end


@dataclass(frozen=True, slots=True)
class XmlLayout:
    """Where a format keeps its header and pupils: ``root/header`` and ``root/container/record``."""

    root: str
    header: str
    container: str
    record: str


class _Source:
    """The file as lxml reads it, remembering whether the end was reached (to tell truncation apart)."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.eof = False
        self.consumed = 0
        self.tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        if data:
            self.consumed += len(data)
            self.tail = data[-4:]
        else:
            self.eof = True
        return data


def _ends_mid_utf8_character(tail: bytes) -> bool:
    """Whether ``tail`` (the last bytes of a file) stops part way through a UTF-8 sequence."""
    for back in range(1, min(4, len(tail)) + 1):
        byte = tail[-back]
        if byte & 0xC0 != 0x80:  # a lead byte (or ASCII): does its sequence need more than we have?
            need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4 if byte & 0xF8 == 0xF0 else 1
            return need > back
    return False


_ENCODING_ERRORS: Final = frozenset(
    {
        etree.ErrorTypes.ERR_INVALID_ENCODING,
        etree.ErrorTypes.ERR_UNSUPPORTED_ENCODING,
        etree.ErrorTypes.ERR_UNKNOWN_ENCODING,
    }
)


# libxml2 error numbers to their constant names: fixed strings, safe to put in a message.
_ERROR_NAMES: Final[dict[int, str]] = {
    value: name for name, value in vars(etree.ErrorTypes).items() if name.startswith("ERR_")
}


def _classify(exc: Any, source: _Source, path: Path, root_seen: bool) -> ParseError:
    """Turn an lxml syntax error into a ParseError without any of lxml's text (it can quote bytes).

    lxml only reports an error at ``close()`` (after the last read) when the document stopped part
    way, so an error after EOF is truncation. The exception: lxml's generic "no element found"
    (ERR_INTERNAL_ERROR) after the root was seen, which hides a real syntax error (for example an
    undeclared entity when entities are not resolved).
    """
    line, column = exc.position if exc.position and exc.position[0] else (None, None)
    kind = _ERROR_NAMES.get(exc.code)
    label = f" [{kind}]" if kind else ""
    if source.consumed == 0:
        return ParseError(TRUNCATED, path, "the file is empty")
    if exc.code in _ENCODING_ERRORS and not (source.eof and _ends_mid_utf8_character(source.tail)):
        return ParseError(
            ENCODING, path, "bytes are not valid in the declared encoding", line=line, column=column
        )
    if source.eof and not (exc.code == etree.ErrorTypes.ERR_INTERNAL_ERROR and root_seen):
        return ParseError(TRUNCATED, path, "the file ends before the document is complete", line=line)
    return ParseError(MALFORMED, path, f"not well-formed XML{label}", line=line, column=column)


def _has_dtd(elem: Any) -> bool:
    info = elem.getroottree().docinfo
    return bool(info.doctype) or info.internalDTD is not None or info.externalDTD is not None


def open_binary(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise ParseError(IO_ERROR, path, f"cannot be opened ({exc.strerror})") from None


def stream_xml(path: Path, layout: XmlLayout) -> Generator[tuple[bool, Any], None, None]:
    """Yield ``(True, header_element)`` once, then ``(False, pupil_element)`` for each pupil, in order.

    Memory stays bounded whatever the file size: each element is cleared after the consumer has had
    it, and earlier pupils are removed from their parent. Entities are never resolved, no DTD or
    network resource is loaded, and a DOCTYPE (the carrier of XXE and billion-laughs payloads) is
    refused outright with CT-PARSE-FORBIDDEN. Closing the generator early stops reading the file.
    """
    with open_binary(path) as fh:
        head = fh.read(_SNIFF_BYTES)
        prolog, root_name = xml_prolog(decode_head(head))
        if _DTD_DECLARATION.search(prolog):
            raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
        if root_name is not None and root_name != layout.root:
            raise ParseError(LAYOUT, path, f"the root element must be {layout.root}", item=root_name)
        fh.seek(0)
        source = _Source(fh)
        # Only "end" events (a "start" per pupil would cost a Python step each for nothing), and no
        # whitespace-only text nodes between elements (no item is read from them: leaf texts are stripped).
        events = etree.iterparse(
            source,
            events=("end",),
            tag=(layout.root, layout.header, layout.record),
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            huge_tree=False,
            remove_blank_text=True,
        )
        root: Any = None
        container: Any = None  # the pupils' parent, once checked
        header_seen = False
        try:
            for _, elem in events:
                if root is None:
                    # Belt and braces for prologs the sniff above cannot read (e.g. UTF-16 without BOM).
                    if _has_dtd(elem):
                        raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
                    root = elem.getroottree().getroot()
                    if root.tag != layout.root:
                        raise ParseError(LAYOUT, path, f"the root element must be {layout.root}")
                parent = elem.getparent()
                if elem.tag == layout.record:
                    if parent is not container:
                        if parent is None or parent.tag != layout.container or parent.getparent() is not root:
                            raise ParseError(
                                LAYOUT, path, f"{layout.record} must be in {layout.root}/{layout.container}"
                            )
                        container = parent
                    if not header_seen:
                        raise ParseError(
                            HEADER,
                            path,
                            "is missing before the pupils",
                            item=f"{layout.root}/{layout.header}",
                        )
                    yield False, elem
                    elem.clear()
                    while elem.getprevious() is not None:
                        del parent[0]
                elif elem.tag == layout.header and parent is root and not header_seen:
                    header_seen = True
                    yield True, elem
                    elem.clear()
        except etree.XMLSyntaxError as exc:
            raise _classify(exc, source, path, root is not None) from None
        if root is None:
            root = events.root
            if root is not None and _has_dtd(root):
                raise ParseError(FORBIDDEN, path, "DOCTYPE and entity declarations are not accepted")
            if root is None or root.tag != layout.root:
                raise ParseError(LAYOUT, path, f"the root element must be {layout.root}")
        if not header_seen:
            raise ParseError(HEADER, path, "is missing", item=f"{layout.root}/{layout.header}")


@dataclass(frozen=True, slots=True)
class Shape:
    """Which paths of a pupil element are containers to descend into, and which are repeated groups
    (``FSMperiods/FSMperiod``) to keep whole. Derived from the mapping, so unknown elements cost little."""

    containers: frozenset[str]
    groups: frozenset[str]

    @classmethod
    def of(cls, paths: Iterable[str], groups: Iterable[str] = ()) -> Shape:
        group_set = frozenset(groups)
        containers = {
            path.rsplit("/", depth)[0]
            for path in (*paths, *group_set)
            for depth in range(1, path.count("/") + 1)
        }
        return cls(frozenset(containers), group_set)


_ANY_SHAPE: Final = Shape(frozenset(), frozenset())


@dataclass(slots=True)
class Flat:
    """A flattened element: first leaf text by path, later repeats apart, repeated groups as elements."""

    leaves: dict[str, str] = field(default_factory=dict)
    repeats: dict[str, list[str]] = field(default_factory=dict)
    groups: dict[str, list[Any]] = field(default_factory=dict)

    def first(self, path: str) -> str | None:
        return self.leaves.get(path)

    def all(self, path: str) -> list[str]:
        first = self.leaves.get(path)
        return [] if first is None else [first, *self.repeats.get(path, ())]


def flatten(elem: Any, shape: Shape = _ANY_SHAPE) -> Flat:
    """Leaf texts of ``elem`` keyed by path (``PupilIdentifiers/UPN``), stripped, ``""`` for empty.

    With a shape, only its containers are descended into (an unknown element is one empty leaf);
    without one, every element with children is. Comments and processing instructions are skipped.
    Breadth first, so repeats keep document order within their container.
    """
    flat = Flat()
    leaves, repeats, groups = flat.leaves, flat.repeats, flat.groups
    containers, group_paths = shape.containers, shape.groups
    descend_all = shape is _ANY_SHAPE
    todo: list[tuple[Any, str]] = [(elem, "")]
    index = 0
    while index < len(todo):
        parent, prefix = todo[index]
        index += 1
        for child in parent:
            tag = child.tag
            if tag.__class__ is not str:  # comment or processing instruction
                continue
            path = prefix + tag
            if path in containers or (descend_all and len(child)):
                todo.append((child, path + "/"))
            elif path in group_paths:
                groups.setdefault(path, []).append(child)
            else:
                text = child.text
                text = text.strip() if text else ""
                if path in leaves:
                    repeats.setdefault(path, []).append(text)
                else:
                    leaves[path] = text
    return flat


def xml_address_paths(prefix: str) -> tuple[str, ...]:
    """``<prefix>BS7666Address/{SAON..PostTown}`` (ADDRESS_ITEMS order), ``.../PostCode``, then the UPRN."""
    bs = prefix + "BS7666Address/"
    return (*(bs + name for name in ADDRESS_ITEMS), bs + "PostCode", prefix + "UniquePropertyReferenceNumber")


_FSM_ITEMS: Final = ("FSMstartDate", "FSMendDate", "UKcountry")


def xml_fsm(
    groups: Sequence[Any], group_path: str, ctx: RecordContext, header: ExtractHeader
) -> tuple[tuple[FsmPeriod, ...], bool | None]:
    """FSM periods from repeated ``FSMstartDate/FSMendDate/UKcountry`` groups, and the derived flag."""
    items = tuple(f"{group_path}/{name}" for name in _FSM_ITEMS)
    periods: list[FsmPeriod] = []
    incomplete = False
    for group in groups:
        g = child_texts(group, _FSM_ITEMS)
        period = fsm_period(g["FSMstartDate"], g["FSMendDate"], g["UKcountry"], ctx, items)
        if period is None:
            incomplete = True
        else:
            periods.append(period)
    return tuple(periods), fsm_eligible(periods, header.reference_date, incomplete)


def header_texts(elem: Any) -> dict[str, str | None]:
    """A header element's leaf texts by path, ``None`` for empty; repeated items keep the first."""
    return {path: (text or None) for path, text in flatten(elem).leaves.items()}


def child_texts(elem: Any, names: Iterable[str]) -> dict[str, str | None]:
    """``flatten(elem).first(name)`` for each of ``names`` (direct children of ``elem``), in one pass
    that reads no other text: the first child of that tag without child elements, stripped."""
    found: dict[str, str | None] = dict.fromkeys(names)
    for child in elem:
        tag = child.tag
        if tag in found and found[tag] is None and not len(child):
            text = child.text
            found[tag] = text.strip() if text else ""
    return found


# --- a format's XML mapping, compiled --------------------------------------------------------------

_ADDRESS_AT: Final = FIELD_AT["address_lines"]
_POSTCODE_AT: Final = FIELD_AT["postcode"]
_UPRN_AT: Final = FIELD_AT["uprn"]

# A node of a compiled mapping: child tag -> leaf slot (int), container (descended into) or the path
# of a repeated group (str, whose elements are kept whole).
_Node = dict[str, "int | str | _Node"]


def _walk(
    elem: Any,
    node: _Node,
    texts: list[str | None],
    repeats: dict[int, list[str]],
    groups: dict[str, list[Any]],
) -> None:
    for child in elem:
        entry = node.get(child.tag)  # comments, PIs and entities have non-str tags: never found
        if entry is None:
            continue
        if entry.__class__ is int:
            text = child.text
            text = text.strip() if text else ""
            if texts[entry] is None:
                texts[entry] = text
            else:
                repeats.setdefault(entry, []).append(text)
        elif entry.__class__ is dict:
            _walk(child, entry, texts, repeats, groups)
        else:
            groups.setdefault(entry, []).append(child)  # type: ignore[arg-type]  # a group path


class XmlPlan:
    """A format's XML mapping (its items, address prefix and repeated groups) compiled once, so that
    each pupil element is walked in one pass that reads only the mapped items.

    ``read`` then ``fill`` give exactly what flattening the pupil with ``flatten(elem, Shape.of(...))``
    and then mapping its leaves item by item gives (same values, same issues in the same order; the test
    ``tests/census/formats/test_xml_plan.py`` keeps that mapping as its reference), without building a
    path string per element or a dict per pupil: this is where most of the reader's time went.
    """

    def __init__(self, items: Sequence[Item], address_prefix: str, groups: Iterable[str] = ()) -> None:
        address_paths = xml_address_paths(address_prefix)
        paths = list(dict.fromkeys([*(item.source for item in items), *address_paths]))
        slot_of = {path: slot for slot, path in enumerate(paths)}
        shape = Shape.of(paths, groups)
        # As in flatten: a container is descended into even if it is also a group or a leaf path, and a
        # group is kept whole even if it is also a leaf path.
        tree: _Node = {}
        nodes: dict[str, _Node] = {"": tree}
        for path in sorted(shape.containers, key=lambda p: p.count("/")):
            parent, _, tag = path.rpartition("/")
            nodes[path] = nodes[parent][tag] = {}
        for path in sorted(shape.groups):
            parent, _, tag = path.rpartition("/")
            nodes[parent].setdefault(tag, path)
        for path, slot in slot_of.items():
            parent, _, tag = path.rpartition("/")
            nodes[parent].setdefault(tag, slot)
        self.tree = tree
        self.slots = len(paths)
        self.items = tuple((FIELD_AT[item.field], slot_of[item.source], item) for item in items)
        self.text_items = tuple((at, slot) for at, slot, item in self.items if item.kind is Kind.TEXT)
        self.list_items = tuple((at, slot) for at, slot, item in self.items if item.kind is Kind.LIST)
        self.converted_items = tuple(
            (at, slot, item) for at, slot, item in self.items if item.kind in (Kind.DATE, Kind.BOOL)
        )
        *lines, postcode, uprn = (slot_of[path] for path in address_paths)
        self.line_slots = tuple(lines)
        self.postcode_slot, self.uprn_slot = postcode, uprn

    def read(self, elem: Any) -> tuple[list[str | None], dict[int, list[str]], dict[str, list[Any]]]:
        """The mapped leaf texts of ``elem`` by slot (None: absent; stripped, ``""`` for empty), later
        repeats of a slot, and the elements of each repeated group, all in document order."""
        texts: list[str | None] = [None] * self.slots
        repeats: dict[int, list[str]] = {}
        groups: dict[str, list[Any]] = {}
        _walk(elem, self.tree, texts, repeats, groups)
        return texts, repeats, groups

    def fill(
        self, values: list[Any], texts: list[str | None], repeats: dict[int, list[str]], ctx: RecordContext
    ) -> None:
        """Put the items and the address into ``values`` (a copy of the record template)."""
        if repeats:
            self._fill_repeated(values, texts, repeats, ctx)
        else:
            for at, slot in self.text_items:
                text = texts[slot]
                if text:
                    values[at] = text
            for at, slot in self.list_items:
                text = texts[slot]
                if text:
                    values[at] = (text,)
            fill_converted(values, self.converted_items, texts, ctx)
        postcode = texts[self.postcode_slot] or None
        uprn = texts[self.uprn_slot] or None
        lines = [texts[slot] for slot in self.line_slots]
        if postcode or uprn or any(lines):
            values[_ADDRESS_AT] = tuple([line or "" for line in lines])
        values[_POSTCODE_AT] = postcode
        values[_UPRN_AT] = uprn

    def _fill_repeated(
        self, values: list[Any], texts: list[str | None], repeats: dict[int, list[str]], ctx: RecordContext
    ) -> None:
        """Item by item, for the rare pupil with an item given more than once: a list takes every
        non-empty text, any other item the first (with a CT-PARSE-REPEATED issue)."""
        for at, slot, item in self.items:
            text = texts[slot]
            if slot in repeats:
                if item.kind is Kind.LIST:
                    values[at] = tuple(t for t in (text, *repeats[slot]) if t)
                    continue
                ctx.add(REPEATED, item.field, item.source, "is given more than once; the first is used")
            if not text:
                continue
            if item.kind is Kind.TEXT:
                values[at] = text
            elif item.kind is Kind.LIST:
                values[at] = (text,)
            else:
                values[at] = convert(item, text, ctx)
