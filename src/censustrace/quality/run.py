"""``validate_extract``: the validation step between ``stage`` and ``publish``.

It reads a staged extract's rows, runs every suite of ``settings.expectations_dir`` on them with GX Core
(every row, no sampling) and routes by severity:

* a **critical** row-level failure rejects the record: its expectation's code is merged into
  ``staged_pupil.reject_codes``, so ``publish(extract_id, {}, settings)`` leaves it out. An address or
  FSM row that fails rejects its pupil record;
* the **whole extract is quarantined** (``censustrace.intake.quarantine``: its bytes set aside, staging
  emptied) when a table-level critical expectation fails (no pupils, a row count that is not the
  registry's ``rows_read``), a critical expectation cannot be evaluated (a column missing from the
  data), or more than a suite's ``max_critical_share`` of its rows (default 5 %) fail critically
  (``CT-DQ-THRESHOLD``);
* a failed **warning** loads, and is reported: in the outcome, and in the registry's ``reasons`` with
  its code and counts.

Results (counts and record numbers, never values) go to ``validation_result``, Data Docs pages to
``settings.data_docs_dir``. The database writes are one transaction; a rerun on the same staged extract
replaces its earlier codes, reasons and results with the same ones (idempotent). An extract that is not
``staged`` is left alone (``skipped``).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection, delete, insert, update

from censustrace.config import Settings
from censustrace.intake.quarantine import IngestError, Reason, quarantine, reason
from censustrace.intake.registry import ExtractRow, get_extract
from censustrace.intake.reject_codes import DQ_PREFIX, read_codes, set_codes
from censustrace.lineage.model import StepLineage
from censustrace.quality.frames import read_frames
from censustrace.quality.suites import Suites, load_suites
from censustrace.quality.tables import validation_result
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import QUARANTINED, STAGED, extracts

if TYPE_CHECKING:
    from censustrace.quality.engine import SuiteResult

PASSED: Final = "passed"
WARNINGS: Final = "warnings"
ROWS_REJECTED: Final = "rows_rejected"
SKIPPED: Final = "skipped"
STATUSES: Final = (PASSED, WARNINGS, ROWS_REJECTED, QUARANTINED, SKIPPED)

THRESHOLD: Final = "CT-DQ-THRESHOLD"  # too large a share of a suite's rows failed critical expectations
#: Record numbers named in one reason message at most (the results table keeps them all).
LISTED_RECORDS: Final = 10


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    """A suite's outcome for the caller: success and per-expectation counts (no record numbers)."""

    name: str
    success: bool
    rows: int
    failed_critical_rows: int
    data_docs_page: str | None
    expectations: tuple[dict[str, Any], ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "success": self.success,
            "rows": self.rows,
            "failed_critical_rows": self.failed_critical_rows,
            "data_docs_page": self.data_docs_page,
            "expectations": [dict(e) for e in self.expectations],
        }


@dataclass(frozen=True, slots=True)
class ValidationOutcome:
    """What validation decided for one extract.

    ``status``: ``passed`` (every expectation), ``warnings`` (only warnings failed), ``rows_rejected``
    (some records rejected, the rest will load), ``quarantined`` (the whole extract), ``skipped`` (the
    extract was not staged). ``rejected`` maps record number -> the codes rejecting it (critical
    failures of this run only; the parse rule's own rejections are not repeated). ``data_docs``: page
    paths relative to the Data Docs root. ``summary``: one line per expectation for a task log."""

    extract_id: str
    status: str
    suites: tuple[SuiteSummary, ...] = ()
    rejected: Mapping[int, tuple[str, ...]] = field(default_factory=dict)
    warnings: tuple[Reason, ...] = ()
    errors: tuple[Reason, ...] = ()
    data_docs: tuple[str, ...] = ()
    summary: tuple[str, ...] = ()
    lineage: StepLineage = field(default_factory=StepLineage)

    @property
    def rejected_by_code(self) -> dict[str, int]:
        tally: Counter[str] = Counter()
        for codes in self.rejected.values():
            tally.update(codes)
        return dict(sorted(tally.items()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe (an Airflow XCom): counts, codes and page paths; no record lists, no pupil data."""
        return {
            "extract_id": self.extract_id,
            "status": self.status,
            "suites": [s.as_dict() for s in self.suites],
            "rejected": len(self.rejected),
            "rejected_by_code": self.rejected_by_code,
            "warnings": [dict(w) for w in self.warnings],
            "errors": [dict(e) for e in self.errors],
            "data_docs": list(self.data_docs),
            "summary": list(self.summary),
        }


def validation_outcome(
    settings: Settings,
    extract_id: str,
    results: Sequence[SuiteResult],
    decision: Any,
    page_of: Mapping[str, str],
    pages: tuple[str, ...],
) -> ValidationOutcome:
    """What validating one extract found (shared by one extract and a batch, split back per extract)."""
    from censustrace.quality.lineage import validation_lineage

    status = (
        QUARANTINED
        if decision.errors
        else ROWS_REJECTED
        if decision.rejected
        else WARNINGS
        if decision.warnings
        else PASSED
    )
    return ValidationOutcome(
        extract_id=extract_id,
        status=status,
        suites=tuple(
            SuiteSummary(
                name=r.suite,
                success=r.success,
                rows=r.row_count,
                failed_critical_rows=decision.failed_rows.get(r.suite, 0),
                data_docs_page=page_of[r.suite],
                expectations=tuple(x.as_dict() for x in r.results),
            )
            for r in results
        ),
        rejected={} if decision.errors else decision.rejected,
        warnings=decision.warnings,
        errors=decision.errors,
        data_docs=pages,
        summary=tuple(x.summary() for r in results for x in r.results),
        lineage=validation_lineage(settings.warehouse_db_url, extract_id, results),
    )


def validate_extract(extract_id: str, settings: Settings) -> ValidationOutcome:
    """Validate a staged extract and route its failures by severity (see the module docstring)."""
    from censustrace.quality.docs import write_pages
    from censustrace.quality.engine import run_suite

    suites = load_suites(settings.expectations_dir)  # a bad suite file fails here, loudly
    engine = warehouse_engine(settings.warehouse_db_url)
    with engine.connect() as conn:
        head = _staged_head(conn, extract_id)
        if head is None:
            return ValidationOutcome(extract_id=extract_id, status=SKIPPED)
        codes = read_codes(conn, extract_id)
        frames = read_frames(conn, extract_id, suites, codes)
    parameters = {"rows_read": head.rows_read or 0, **suites.code_set_parameters()}
    results = [run_suite(suite, frames[suite.name], parameters) for suite in suites]
    del frames
    decision = _decide(head, suites, results, codes.parse_rejected())
    validated_at = dt.datetime.now(dt.UTC)
    pages = write_pages(settings.data_docs_dir, suites, extract_id, results, validated_at.isoformat())
    page_of = {r.suite: p for r, p in zip(results, pages, strict=True)}
    with write_transaction(engine) as conn:
        locked = get_extract(conn, extract_id, lock=True)
        if locked is None or locked.status != STAGED:  # done meanwhile by another process
            return ValidationOutcome(extract_id=extract_id, status=SKIPPED)
        _store_results(conn, extract_id, results, page_of, validated_at)
        if decision.errors:
            quarantine(extract_id, decision.errors, settings, connection=conn)
        else:
            set_codes(conn, extract_id, codes, decision.rejected)
            _store_warnings(conn, locked, decision.warnings)
    return validation_outcome(settings, extract_id, results, decision, page_of, pages)


def _staged_head(conn: Connection, extract_id: str) -> ExtractRow | None:
    head = get_extract(conn, extract_id)
    if head is None:
        raise IngestError(f"no extract {extract_id} in the registry", code="CT-INGEST-NOT-FOUND")
    if head.part_of is not None:
        raise IngestError(
            f"{extract_id} is a table of extract {head.part_of}; validate that", code="CT-INGEST-STATE"
        )
    return head if head.status == STAGED else None


# --- routing -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Decision:
    rejected: dict[int, tuple[str, ...]]
    warnings: tuple[Reason, ...]
    errors: tuple[Reason, ...]
    failed_rows: dict[str, int]


def _decide(head: ExtractRow, suites: Suites, results: Sequence[Any], parse_rejected: set[int]) -> _Decision:
    """Route the failures. Rows of records the parse rule already rejected are judged and reported in
    the results like any other, but add no reason and do not count toward the critical share: their
    record is not published anyway, and one unreadable record must not tip a small school over 5 %."""
    file = head.original_name
    rejected: dict[int, list[str]] = defaultdict(list)
    errors: list[Reason] = []
    failures: list[Reason] = []
    warnings: list[Reason] = []
    failed_rows: dict[str, int] = {}
    for suite, result in zip(suites, results, strict=True):
        location = f"{file}, suite {suite.name}"
        critical_keys: set[tuple[int, ...]] = set()
        critical_counts: Counter[str] = Counter()
        for r in result.results:
            if r.success:
                continue
            if r.error is not None or r.table_level:
                target = errors if r.critical else warnings
                target.append(reason(r.code, f"{file}: {_what_failed(r, suite.name)}", location))
                continue
            keys = [k for k in r.failed_keys if k[0] not in parse_rejected]
            if not keys:
                continue
            records = sorted({k[0] for k in keys})
            what = f"{len(keys)} of {result.row_count} {suite.name} rows fail {r.code} {r.name}"
            if not r.critical:
                warnings.append(reason(r.code, f"{file}: {what} (a warning){_records(records)}", location))
                continue
            failures.append(reason(r.code, f"{file}: {what}{_records(records)}", location))
            critical_keys.update(keys)
            critical_counts[r.code] += len(keys)
            for number in records:
                rejected[number].append(r.code)
        failed = failed_rows[suite.name] = len(critical_keys)
        if result.row_count and failed / result.row_count > suite.max_critical_share:
            detail = ", ".join(f"{code} x{n}" for code, n in sorted(critical_counts.items()))
            errors.insert(
                0,
                reason(
                    THRESHOLD,
                    f"{file}: {failed} of {result.row_count} {suite.name} rows "
                    f"({100 * failed / result.row_count:.1f} %) fail critical expectations, more than the "
                    f"{100 * suite.max_critical_share:g} % the suite allows ({detail})",
                    location,
                ),
            )
    if errors:
        errors += failures  # a quarantined extract's reasons name every critical failure
    return _Decision(
        rejected={n: tuple(dict.fromkeys(codes)) for n, codes in sorted(rejected.items())},
        warnings=tuple(warnings),
        errors=tuple(errors),
        failed_rows=failed_rows,
    )


def _what_failed(r: Any, suite: str) -> str:
    if r.error is not None:
        return f"{r.code} {r.name} not evaluated: {r.error}"
    return f"{r.code} {r.name} failed: {r.observed} {suite} rows"


def _records(numbers: Sequence[int]) -> str:
    if not numbers:
        return ""
    listed = ", ".join(str(n) for n in numbers[:LISTED_RECORDS])
    more = f" and {len(numbers) - LISTED_RECORDS} more" if len(numbers) > LISTED_RECORDS else ""
    return f"; records {listed}{more}"


# --- writes ------------------------------------------------------------------------------------------------


def _store_results(
    conn: Connection,
    extract_id: str,
    results: Iterable[Any],
    pages: Mapping[str, str],
    validated_at: dt.datetime,
) -> None:
    conn.execute(delete(validation_result).where(validation_result.c.extract_id == extract_id))
    rows = [
        {
            "extract_id": extract_id,
            "suite": r.suite,
            "code": r.code,
            "name": r.name,
            "type": r.type,
            "column_name": r.column,
            "severity": r.severity,
            "success": r.success,
            "element_count": r.element_count,
            "unexpected_count": r.unexpected_count,
            "unexpected_percent": r.unexpected_percent,
            "unexpected_records": list(r.records) if r.records else None,
            "error": r.error,
            "data_docs_page": pages.get(r.suite),
            "validated_at": validated_at,
        }
        for result in results
        for r in result.results
    ]
    if rows:
        conn.execute(insert(validation_result), rows)


def _store_warnings(conn: Connection, row: ExtractRow, warnings: Sequence[Reason]) -> None:
    """The registry keeps the extract's warnings (publish keeps them); an earlier run's are replaced."""
    kept = [r for r in row.reasons if not r["code"].startswith(DQ_PREFIX)]
    if kept != row.reasons or warnings:
        conn.execute(
            update(extracts).where(extracts.c.extract_id == row.extract_id).values(reasons=[*kept, *warnings])
        )


__all__ = [
    "PASSED",
    "ROWS_REJECTED",
    "SKIPPED",
    "STATUSES",
    "THRESHOLD",
    "WARNINGS",
    "SuiteSummary",
    "ValidationOutcome",
    "validate_extract",
]
