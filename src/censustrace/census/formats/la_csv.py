"""LA warehouse export (CSV): three tables per school joined on ``upn``.

``pupilonroll`` is streamed row by row; ``addressesonroll`` and ``fsmperiod`` are read first into
dicts keyed by UPN. Memory bound: one small tuple of strings per address row and per FSM row of one
school (under 1 KB per pupil, so about 5 MB for a 5,000-pupil school), independent of the pupil table.
Each side table is capped at ``CsvRules.side_table_max_rows`` rows (CT-PARSE-TOO-LARGE, naming the file
and line): an LA-wide table must be split per school before it is sent.

Columns: a column that is not one of the table's (``COLUMNS``) is never read. Because a renamed optional
column (``senneeds`` sent as ``sen_needs``) would otherwise empty that item for every pupil without a
word, each one is reported: a CT-PARSE-UNKNOWN-COLUMN issue naming the file, line 1 and the column (and
the absent column it may be a renaming of), given to the caller's ``issues`` list; or, with
``CsvRules(unknown_columns="quarantine")``, a whole-file ParseError.

Which file is which table is decided by its header, not its name. The header of the extract (LA,
establishment, term, year) is not in any table: it comes from the file name
``<table>_<LA>_<ESTAB>_<TERM>_<YEAR>.csv`` and/or :class:`ExtractHints` (which must agree); the URN
only from the hints; the reference date from ``codes.reference_date``.

Accepted variants: UTF-8 with or without BOM; LF or CRLF; comma (or, if the header has none, tab or
semicolon) separated; column names in any case; extra columns reported and ignored; optional columns
absent (None); dates ISO or ``2020-Apr-25 00:00:00``; booleans True/False/true/false/1/0/Y/N/Yes/No.

Join rules (assumptions): the k-th ``pupilonroll`` row with a UPN takes the k-th address row with that
UPN (exports write one address row per pupil row, in order); every FSM row with a UPN goes to every
pupil row with that UPN (periods cannot be split between two rows sharing a UPN, which validation
reports as a duplicate anyway). Address/FSM rows that join no pupil row are CT-PARSE-ORPHAN issues,
given to the caller's ``issues`` list once the pupil table has been read.
"""

from __future__ import annotations

import csv
import difflib
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Literal, NamedTuple

from censustrace.census import codes
from censustrace.census.formats.errors import (
    ENCODING,
    HEADER,
    LAYOUT,
    LINE_TOO_LONG,
    MALFORMED,
    ORPHAN,
    SHAPE,
    TOO_LARGE,
    TRUNCATED,
    UNKNOWN_COLUMN,
    ParseError,
    ParseIssue,
    RecordContext,
)
from censustrace.census.formats.header import (
    NO_HINTS,
    ExtractHeader,
    ExtractHints,
    HeaderBuilder,
    file_name_parts,
)
from censustrace.census.formats.records import (
    FIELD_AT,
    UPN_AT,
    ParsedRecord,
    ParsedRow,
    as_records,
    check_upn_value,
    record_template,
)
from censustrace.census.formats.safexml import open_binary
from censustrace.census.formats.values import (
    Item,
    Kind,
    address_lines,
    fill_converted,
    fsm_eligible,
    fsm_period,
)

PUPILONROLL: Final = "pupilonroll"
ADDRESSESONROLL: Final = "addressesonroll"
FSMPERIOD: Final = "fsmperiod"
TABLES: Final = (PUPILONROLL, ADDRESSESONROLL, FSMPERIOD)

# --- the mapping: PupilRecord field <- pupilonroll column (required: must be in the header) ---------
PUPIL_ITEMS: Final[tuple[Item, ...]] = (
    Item("upn", "upn", required=True),
    Item("former_upn", "formerupn"),
    Item("uln", "uniquelearnernumber"),
    Item("surname", "surname", required=True),
    Item("forename", "forename", required=True),
    Item("middle_names", "middlenames"),
    Item("preferred_surname", "preferredsurname"),
    Item("former_surname", "formersurname"),
    Item("dob", "dob", Kind.DATE, required=True),
    Item("sex", "sex", required=True),
    Item("entry_date", "entrydate", Kind.DATE, required=True),
    Item("ethnicity", "ethnicity", required=True),
    Item("language", "language", required=True),
    Item("enrol_status", "enrolstatus", required=True),
    Item("nc_year", "ncyearactual", required=True),
    Item("sen_provision", "senprovision", required=True),
    Item("sen_needs", "senneeds", Kind.LIST),  # rank order, ";"-separated
    Item("boarder", "boarder", Kind.BOOL),
    Item("part_time", "parttime", Kind.BOOL),
    Item("yssa", "yssa"),
    Item("service_child", "servicechild"),
    Item("top_up_funding", "topupfunding", Kind.BOOL),
    Item("nationality", "nationality", Kind.LIST),  # ";"-separated; only AUT 2016 - SUM 2018
    Item("country_of_birth", "countryofbirth"),
)
# address_lines <- addressesonroll columns, in model.ADDRESS_ITEMS order; then postcode and uprn.
ADDRESS_COLUMNS: Final = ("saon", "paon", "street", "locality", "town", "administrativearea", "posttown")
POSTCODE_COLUMN: Final = "postcode"
UPRN_COLUMN: Final = "uniquepropertyreferencenumber"
# fsm_periods <- fsmperiod rows; fsm_eligible derived.
FSM_COLUMNS: Final = ("fsmstartdate", "fsmenddate", "ukcountry")

COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    PUPILONROLL: tuple(item.source for item in PUPIL_ITEMS),
    ADDRESSESONROLL: ("upn", *ADDRESS_COLUMNS, POSTCODE_COLUMN, UPRN_COLUMN),
    FSMPERIOD: ("upn", *FSM_COLUMNS),
}
REQUIRED: Final[dict[str, tuple[str, ...]]] = {
    PUPILONROLL: tuple(item.source for item in PUPIL_ITEMS if item.required),
    ADDRESSESONROLL: ("upn", POSTCODE_COLUMN),
    FSMPERIOD: ("upn", *FSM_COLUMNS),
}


@dataclass(frozen=True, slots=True)
class CsvRules:
    """How strict the reader is (the instance's settings: ``CENSUSTRACE_CSV_UNKNOWN_COLUMNS`` and
    ``CENSUSTRACE_CSV_SIDE_TABLE_MAX_ROWS``)."""

    unknown_columns: Literal["warn", "quarantine"] = "warn"
    side_table_max_rows: int = 200_000


DEFAULT_RULES: Final = CsvRules()
_UTF8_BOM: Final = b"\xef\xbb\xbf"
#: Longest physical line read (a census row is under 2 KB): keeps memory flat whatever the file holds.
MAX_LINE_BYTES: Final = 1 << 20
_NO_UPN_PROBLEM: Final = "is missing, so the row joins no pupil"
WHOLE_ROW: Final = "*"  # the field/item of an issue about a whole row


class _Lines:
    """Physical lines of a UTF-8 file, decoded strictly, so a bad byte is reported by line and offset."""

    def __init__(self, fh: IO[bytes], path: Path) -> None:
        self._fh = fh
        self._path = path
        self.line = 0
        self.offset = 0
        self.unterminated = False  # the last line read had no line end: the file may be cut short

    def __iter__(self) -> Iterator[str]:
        # readline with a cap, not ``for raw in fh``: one line of hundreds of MB would be read whole.
        readline = self._fh.readline
        while raw := readline(MAX_LINE_BYTES + 1):
            self.line += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ParseError(
                    LINE_TOO_LONG,
                    self._path,
                    f"a line is longer than {MAX_LINE_BYTES:,} bytes; no census row is near that long",
                    line=self.line,
                )
            data = raw
            if self.line == 1 and data.startswith(_UTF8_BOM):
                data = data[len(_UTF8_BOM) :]
                self.offset += len(_UTF8_BOM)
            if not data.endswith(b"\n"):
                self.unterminated = True
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                if self.unterminated and exc.reason == "unexpected end of data":
                    raise ParseError(
                        TRUNCATED, self._path, "the file ends part way through a character", line=self.line
                    ) from None
                raise ParseError(
                    ENCODING,
                    self._path,
                    "bytes are not valid UTF-8",
                    line=self.line,
                    offset=self.offset + exc.start,
                ) from None
            self.offset += len(data)
            yield text


def identify(columns: Iterable[str]) -> str | None:
    """Which export table a header belongs to, by the columns only it has; None if unclear."""
    present = set(columns)
    scores = {table: len(present & set(known[1:])) for table, known in COLUMNS.items()}  # known[0] is upn
    ranked = sorted(scores.values(), reverse=True)
    if ranked[0] == 0 or ranked[0] == ranked[1]:
        return None
    return max(scores, key=lambda table: scores[table])


def _delimiter(header_line: str) -> str:
    if "," in header_line:
        return ","
    return "\t" if header_line.count("\t") >= header_line.count(";") and "\t" in header_line else ";"


class _Table:
    """One open CSV table: its header, then its data rows as ``(row number, cells)``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh = open_binary(path)
        self._lines = _Lines(self._fh, path)
        lines = iter(self._lines)
        try:
            first = next(lines, None)
            if first is None:
                raise ParseError(TRUNCATED, path, "the file is empty")
            self._reader = csv.reader(itertools.chain([first], lines), delimiter=_delimiter(first))
            self.columns = [c.strip().lower() for c in self._next_row() or []]
        except BaseException:
            self._fh.close()
            raise
        duplicates = sorted({c for c in self.columns if self.columns.count(c) > 1})
        if duplicates:
            self.close()
            raise ParseError(LAYOUT, path, f"columns given more than once: {', '.join(duplicates)}")
        self.table = identify(self.columns)
        self.index = {name: i for i, name in enumerate(self.columns)}

    def _next_row(self) -> list[str] | None:
        try:
            return next(self._reader, None)
        except csv.Error:
            raise ParseError(MALFORMED, self.path, "not valid CSV", line=self._lines.line) from None

    def require(self, table: str) -> None:
        missing = [c for c in REQUIRED[table] if c not in self.index]
        if missing:
            raise ParseError(LAYOUT, self.path, f"{table} table is missing columns: {', '.join(missing)}")

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        width = len(self.columns)
        number = 0
        while True:
            start = self._lines.line
            row = self._next_row()
            if row is None:
                return
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line is not a row
            number += 1
            if len(row) < width and self._lines.unterminated:
                raise ParseError(
                    TRUNCATED, self.path, "the last row is cut short", line=self._lines.line, record=number
                )
            if self._lines.line > start + 1:
                # No census item holds a line break: a row over several lines is an unbalanced quote,
                # which would otherwise swallow the rows after it without trace.
                raise ParseError(
                    MALFORMED, self.path, "a quoted cell runs over a line end", line=start + 1, record=number
                )
            yield number, row

    @property
    def line(self) -> int:
        """The physical line last read (1 is the header)."""
        return self._lines.line

    def close(self) -> None:
        self._fh.close()


def unknown_columns(table: str, opened: _Table) -> list[ParseIssue]:
    """One CT-PARSE-UNKNOWN-COLUMN issue per column the table does not have, in header order."""
    known = COLUMNS[table]
    absent = [c for c in known if c not in opened.index]
    found = []
    for name in opened.columns:
        if name in known or not name:
            continue
        close = difflib.get_close_matches(name.replace("_", "").replace(" ", ""), absent, n=1, cutoff=0.75)
        hint = f"; perhaps {close[0]} renamed, which is then empty for every pupil" if close else ""
        problem = f"is not a column of the {table} table: its values are ignored{hint}"
        found.append(ParseIssue(UNKNOWN_COLUMN, opened.path.name, 1, "line", WHOLE_ROW, name, problem))
    return found


def _check_columns(tables: dict[str, _Table], rules: CsvRules) -> list[ParseIssue]:
    issues = [i for table, opened in tables.items() for i in unknown_columns(table, opened)]
    if issues and rules.unknown_columns == "quarantine":
        first = issues[0]
        raise ParseError(
            UNKNOWN_COLUMN,
            first.file,
            f"column {first.item} {first.problem.replace(': its values are ignored', '')}",
            line=1,
            item=first.item,
        )
    return issues


def _open_tables(paths: Path | Iterable[Path], rules: CsvRules = DEFAULT_RULES) -> dict[str, _Table]:
    """Open the three tables of one school, found by their headers; a lone pupilonroll path brings
    its conventionally named siblings (``addressesonroll_<same suffix>``)."""
    given = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    tables: dict[str, _Table] = {}
    try:
        for path in given:
            _add(tables, _Table(path))
        if set(tables) == {PUPILONROLL}:
            pupils = tables[PUPILONROLL].path
            named = file_name_parts(pupils)
            if named is not None and named.prefix == PUPILONROLL:
                suffix = pupils.name[len(PUPILONROLL) :]
                for table in (ADDRESSESONROLL, FSMPERIOD):
                    sibling = pupils.with_name(table + suffix)
                    if sibling.exists():
                        _add(tables, _Table(sibling))
        missing = [t for t in TABLES if t not in tables]
        if missing:
            where = given[0] if given else Path("(no file)")
            raise ParseError(LAYOUT, where, f"the LA export needs the tables: {', '.join(missing)}")
        for table, opened in tables.items():
            opened.require(table)
        _check_columns(tables, rules)
    except BaseException:
        for opened in tables.values():
            opened.close()
        raise
    return tables


def _add(tables: dict[str, _Table], opened: _Table) -> None:
    if opened.table is None:
        opened.close()
        raise ParseError(LAYOUT, opened.path, f"the header is not that of any of: {', '.join(TABLES)}")
    if opened.table in tables:
        opened.close()
        raise ParseError(LAYOUT, opened.path, f"a second {opened.table} table for the same school")
    tables[opened.table] = opened


def _header(tables: dict[str, _Table], hints: ExtractHints) -> ExtractHeader:
    pupils = tables[PUPILONROLL].path
    h = HeaderBuilder(pupils, hints)
    named = file_name_parts(pupils)
    for table, opened in tables.items():
        other = file_name_parts(opened.path)
        if table != PUPILONROLL and named and other and other[1:] != named[1:]:
            raise ParseError(
                HEADER,
                opened.path,
                "is named for another school or census than the pupilonroll table",
                item="file name",
            )
    pattern = "file name <{}> (pupilonroll_<LA>_<ESTAB>_<TERM>_<YEAR>.csv)"
    term = h.term(named.term if named else None, pattern.format("TERM"))
    year = h.year(str(named.year) if named else None, pattern.format("YEAR"))
    return ExtractHeader(
        format="la_csv",
        la=h.la(named.la if named else None, pattern.format("LA")),
        estab=h.estab(named.estab if named else None, pattern.format("ESTAB")),
        urn=h.urn(None, "urn (caller only)"),
        term=term,
        year=year,
        reference_date=codes.reference_date(term, year),
        source_files=tuple(tables[t].path.name for t in TABLES),
    )


def read_header(
    paths: Path | Iterable[Path], hints: ExtractHints = NO_HINTS, rules: CsvRules = DEFAULT_RULES
) -> ExtractHeader:
    """The extract header; reads only the header line of each table (to know which is which)."""
    tables = _open_tables(paths, rules)
    try:
        return _header(tables, hints)
    finally:
        for opened in tables.values():
            opened.close()


class _AddressRow(NamedTuple):
    number: int
    lines: tuple[str, ...]
    postcode: str | None
    uprn: str | None
    short: bool  # the row had the wrong number of cells


class _FsmRow(NamedTuple):
    number: int
    start: str
    end: str
    country: str
    short: bool


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


@dataclass(slots=True)
class _Join:
    """The address and FSM tables of one school, keyed by UPN, waiting for their pupil rows."""

    addresses: dict[str, list[_AddressRow]]
    fsm: dict[str, list[_FsmRow]]
    orphans: list[ParseIssue]
    address_file: str
    fsm_file: str
    matched_fsm: set[str] = field(default_factory=set)


def _capped(opened: _Table, cap: int) -> Iterator[tuple[int, list[str]]]:
    """The rows of a side table, refusing the file past ``cap`` rows (they are all held in memory)."""
    for number, row in opened.rows():
        if number > cap:
            raise ParseError(
                TOO_LARGE,
                opened.path,
                f"more than {cap:,} rows: a side table is held in memory to join its pupils; split an "
                "LA-wide table per school (or raise CENSUSTRACE_CSV_SIDE_TABLE_MAX_ROWS)",
                line=opened.line,
                record=number,
            )
        yield number, row


def _index(tables: dict[str, _Table], rules: CsvRules = DEFAULT_RULES) -> _Join:
    addr, fsm = tables[ADDRESSESONROLL], tables[FSMPERIOD]
    cap = rules.side_table_max_rows
    join = _Join({}, {}, [], addr.path.name, fsm.path.name)
    upn_at, width = addr.index["upn"], len(addr.columns)
    line_at = [addr.index.get(c) for c in ADDRESS_COLUMNS]
    post_at, uprn_at = addr.index.get(POSTCODE_COLUMN), addr.index.get(UPRN_COLUMN)
    for number, row in _capped(addr, cap):
        upn = _cell(row, upn_at)
        if not upn:
            join.orphans.append(_orphan(addr.path.name, number, "address_lines", _NO_UPN_PROBLEM))
            continue
        postcode, uprn = _cell(row, post_at) or None, _cell(row, uprn_at) or None
        lines = address_lines([_cell(row, i) for i in line_at], postcode, uprn)
        entry = _AddressRow(number, lines, postcode, uprn, len(row) != width)
        join.addresses.setdefault(upn, []).append(entry)
    upn_at, width = fsm.index["upn"], len(fsm.columns)
    start_at, end_at, country_at = (fsm.index.get(c) for c in FSM_COLUMNS)
    for number, row in _capped(fsm, cap):
        upn = _cell(row, upn_at)
        if not upn:
            join.orphans.append(_orphan(fsm.path.name, number, "fsm_periods", _NO_UPN_PROBLEM))
            continue
        period = _FsmRow(
            number, _cell(row, start_at), _cell(row, end_at), _cell(row, country_at), len(row) != width
        )
        join.fsm.setdefault(upn, []).append(period)
    return join


def iter_rows(
    paths: Path | Iterable[Path],
    hints: ExtractHints = NO_HINTS,
    issues: list[ParseIssue] | None = None,
    rules: CsvRules = DEFAULT_RULES,
) -> Iterator[ParsedRow]:
    """Every ``pupilonroll`` row, joined to its address and FSM rows, as ``(row, field values, issues)``.

    ``row`` is the 1-based data row of the pupilonroll file. Issues about address/FSM rows name those
    files and rows. CT-PARSE-ORPHAN issues (rows that join no pupil) are appended to ``issues`` at the
    end. Raises :class:`ParseError` for a whole-file problem in any of the three tables, possibly after
    some records were yielded: the caller must then reject the extract.
    """
    tables = _open_tables(paths, rules)
    try:
        header = _header(tables, hints)
        columns = _check_columns(tables, rules)
        join = _index(tables, rules)
        yield from _pupils(tables[PUPILONROLL], header, join)
    finally:
        for opened in tables.values():
            opened.close()
    if issues is not None:
        issues.extend(columns)
        issues.extend(_orphans(join))


def iter_records(
    paths: Path | Iterable[Path],
    hints: ExtractHints = NO_HINTS,
    issues: list[ParseIssue] | None = None,
    rules: CsvRules = DEFAULT_RULES,
) -> Iterator[ParsedRecord]:
    """:func:`iter_rows` as ``(row, record, issues)``."""
    return as_records(iter_rows(paths, hints, issues, rules))


def _orphans(join: _Join) -> list[ParseIssue]:
    """Address rows left over and FSM rows never matched, in file and row order."""
    found = list(join.orphans)
    for address_rows in join.addresses.values():
        found += [_orphan(join.address_file, row.number, "address_lines") for row in address_rows]
    for upn, fsm_rows in join.fsm.items():
        if upn not in join.matched_fsm:
            found += [_orphan(join.fsm_file, row.number, "fsm_periods") for row in fsm_rows]
    return sorted(found, key=lambda issue: (issue.file, issue.record))


def _orphan(file: str, number: int, field: str, problem: str = "matches no pupilonroll row") -> ParseIssue:
    return ParseIssue(ORPHAN, file, number, "row", field, "upn", problem)


_ADDRESS_AT, _POSTCODE_AT, _UPRN_AT = FIELD_AT["address_lines"], FIELD_AT["postcode"], FIELD_AT["uprn"]
_PERIODS_AT, _ELIGIBLE_AT = FIELD_AT["fsm_periods"], FIELD_AT["fsm_eligible"]


def _pupils(pupils: _Table, header: ExtractHeader, join: _Join) -> Iterator[ParsedRow]:
    file, width = pupils.path.name, len(pupils.columns)
    # Items whose column is absent stay None / () (the template's values), as an empty cell would.
    present = [
        (FIELD_AT[item.field], pupils.index[item.source], item)
        for item in PUPIL_ITEMS
        if item.source in pupils.index
    ]
    texts = [(at, index) for at, index, item in present if item.kind is Kind.TEXT]
    lists = [(at, index) for at, index, item in present if item.kind is Kind.LIST]
    # Only dates and booleans can raise issues: these keep the items' order, so issues do too.
    converted = [(at, index, item) for at, index, item in present if item.kind in (Kind.DATE, Kind.BOOL)]
    template = record_template(header)
    eligible_if_none = fsm_eligible((), header.reference_date, False)
    for number, row in pupils.rows():
        ctx = RecordContext(file, number, "row")
        if len(row) != width:
            ctx.add(SHAPE, WHOLE_ROW, WHOLE_ROW, f"has {len(row)} cells where the header has {width}")
            if len(row) < width:
                row = row + [""] * (width - len(row))
        values = template.copy()
        for at, index in texts:
            raw = row[index].strip()
            if raw:
                values[at] = raw
        for at, index in lists:
            raw = row[index]
            if raw:
                values[at] = tuple(part for p in raw.split(";") if (part := p.strip()))
        fill_converted(values, converted, row, ctx)
        check_upn_value(values, ctx, "upn")
        upn = values[UPN_AT]
        queue = join.addresses.get(upn)
        if queue:
            address = queue.pop(0)
            if not queue:
                del join.addresses[upn]
            if address.short:
                ctx.add(
                    SHAPE,
                    WHOLE_ROW,
                    WHOLE_ROW,
                    "has the wrong number of cells",
                    file=join.address_file,
                    number=address.number,
                )
            values[_ADDRESS_AT], values[_POSTCODE_AT], values[_UPRN_AT] = (
                address.lines,
                address.postcode,
                address.uprn,
            )
        fsm_rows = join.fsm.get(upn, ())
        if not fsm_rows:
            values[_ELIGIBLE_AT] = eligible_if_none
            yield ParsedRow(number, values, ctx.issues)
            continue
        join.matched_fsm.add(upn)
        periods = []
        incomplete = False
        for f in fsm_rows:
            if f.short:
                ctx.add(
                    SHAPE,
                    WHOLE_ROW,
                    WHOLE_ROW,
                    "has the wrong number of cells",
                    file=join.fsm_file,
                    number=f.number,
                )
            period = fsm_period(
                f.start, f.end, f.country, ctx, FSM_COLUMNS, file=join.fsm_file, number=f.number
            )
            if period is None:
                incomplete = True
            else:
                periods.append(period)
        values[_PERIODS_AT] = tuple(periods)
        values[_ELIGIBLE_AT] = fsm_eligible(periods, header.reference_date, incomplete)
        yield ParsedRow(number, values, ctx.issues)
