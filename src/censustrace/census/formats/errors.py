"""Parse errors and issues of every census reader, and their stable ``CT-PARSE-*`` codes.

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

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from censustrace.errors import CensustraceError

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
