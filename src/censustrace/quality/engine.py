"""Run a suite on a pandas frame with GX Core, and keep only what may be kept: counts and record numbers.

One ephemeral GX context per process (no files, no analytics, no progress bars), with one pandas
dataframe asset per suite, built on first use and reused for every extract: the per-file cost that
matters when ~20,000 school files are validated one by one.

GX is asked for ``COMPLETE`` results with ``unexpected_index_column_names`` (the suite's row key) and
``exclude_unexpected_values``, so it returns the failing rows' record numbers without their values. Even
so a result can carry data (``partial_unexpected_list``, ``unexpected_list``, ``unexpected_rows``, an
index query, an exception message quoting a value): :func:`sanitised` rebuilds every result from an
allow-list of count fields before anything is stored, logged or rendered.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from censustrace.quality.gx_compat import configurations_memoised
from censustrace.quality.suites import CRITICAL, ExpectationSpec, SuiteSpec

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

#: Result fields that are counts (or a table-level observed count): the only ones kept from GX.
_COUNT_FIELDS: Final = (
    "element_count",
    "unexpected_count",
    "unexpected_percent",
    "missing_count",
    "missing_percent",
    "unexpected_percent_total",
    "unexpected_percent_nonmissing",
)
#: Table-level expectations whose observed value is a row count (safe to keep).
_COUNT_OBSERVED: Final = frozenset(
    {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
)


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """One expectation's outcome on one extract: counts and failing record numbers, never values."""

    suite: str
    code: str
    name: str
    type: str
    column: str | None
    severity: str
    description: str
    fault: str | None
    table_level: bool
    success: bool
    element_count: int | None
    unexpected_count: int | None
    unexpected_percent: float | None
    observed: int | None  # a table-level row count
    records: tuple[int, ...]  # failing record numbers, ascending, each once
    failed_keys: tuple[tuple[int, ...], ...]  # failing rows by the suite's row key (FSM: record, period)
    error: str | None  # why it could not be evaluated

    @property
    def failed_rows(self) -> int:
        return len(self.failed_keys)

    @property
    def critical(self) -> bool:
        return self.severity == CRITICAL

    def summary(self) -> str:
        """One line for a task log: pass/fail, code, what, counts."""
        verdict = "PASS" if self.success else "FAIL"
        if self.error:
            counts = f"not evaluated: {self.error}"
        elif self.table_level:
            counts = f"observed {self.observed}"
        else:
            counts = f"{self.unexpected_count or 0} of {self.element_count or 0} unexpected"
        return f"{verdict} [{self.severity}] {self.suite} {self.code} {self.name}: {counts}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "name": self.name,
            "type": self.type,
            "column": self.column,
            "severity": self.severity,
            "success": self.success,
            "element_count": self.element_count,
            "unexpected_count": self.unexpected_count,
            "unexpected_percent": self.unexpected_percent,
            "observed": self.observed,
            "error": self.error,
        }


@dataclass(frozen=True, slots=True)
class ColumnMetric:
    null_count: int
    distinct_count: int


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """A suite's outcome: per-expectation results (in suite order), the rows it read, and counts of nulls
    and distinct values per column (for the lineage metrics facet). ``document`` is the sanitised GX
    validation result, for Data Docs."""

    suite: str
    table: str
    row_count: int
    results: tuple[ExpectationResult, ...]
    metrics: Mapping[str, ColumnMetric]
    document: Any  # great_expectations ExpectationSuiteValidationResult (sanitised)

    @property
    def success(self) -> bool:
        return all(r.success for r in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "success": self.success,
            "rows": self.row_count,
            "expectations": [r.as_dict() for r in self.results],
        }


# --- the GX runtime ----------------------------------------------------------------------------------------

#: First pass, every expectation: counts only (no per-row metrics), which is most of GX's cost saved.
COUNTS_FORMAT: Final = {"result_format": "BASIC", "partial_unexpected_count": 0}
#: Second pass, only the row-level expectations that found unexpected rows: their record numbers.
RESULT_FORMAT: Final = {
    "result_format": "COMPLETE",
    "unexpected_index_column_names": ["record_number"],
    "exclude_unexpected_values": True,
    "return_unexpected_index_query": False,
    "include_unexpected_rows": False,
    "partial_unexpected_count": 0,
}


class _Runtime:
    """The process's GX context and one batch definition per suite (GX objects are not thread-safe:
    validations in one process take turns)."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import (
            DataContextConfig,
            InMemoryStoreBackendDefaults,
            ProgressBarsConfig,
        )

        config = DataContextConfig(
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False),
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        )
        self.context = gx.get_context(mode="ephemeral", project_config=config)
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self.datasource = self.context.data_sources.add_pandas("censustrace")
        self.batch_definitions: dict[str, Any] = {}
        self.lock = threading.Lock()

    def batch_definition(self, suite: str) -> Any:
        definition = self.batch_definitions.get(suite)
        if definition is None:
            asset = self.datasource.add_dataframe_asset(suite)
            definition = self.batch_definitions[suite] = asset.add_batch_definition_whole_dataframe(suite)
        return definition


_runtime: _Runtime | None = None
_runtime_lock = threading.Lock()


def runtime() -> _Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = _Runtime()
        return _runtime


def run_suite(suite: SuiteSpec, frame: pd.DataFrame, parameters: Mapping[str, Any]) -> SuiteResult:
    """Validate ``frame`` (the suite's rows, in record order) against ``suite``: every row, no sampling.

    Two passes over the same batch: every expectation for counts, then only the failed row-level ones
    for the failing rows' record numbers (a clean file pays for the first pass only)."""
    gx_runtime = runtime()
    with gx_runtime.lock, validation_memo():
        batch = gx_runtime.batch_definition(suite.name).get_batch(batch_parameters={"dataframe": frame})
        validation = batch.validate(
            suite.gx_suite, result_format=COUNTS_FORMAT, expectation_parameters=dict(parameters)
        )
        by_code = {r.expectation_config.meta.get("code"): r for r in validation.results}
        with_rows = tuple(
            spec.code
            for spec in suite.expectations
            if not spec.table_level and _failed_with_rows(by_code.get(spec.code))
        )
        if with_rows:
            rows = batch.validate(
                _part_of(suite, with_rows),
                result_format={**RESULT_FORMAT, "unexpected_index_column_names": list(suite.row_key)},
                expectation_parameters=dict(parameters),
            )
            by_code.update((r.expectation_config.meta.get("code"), r) for r in rows.results)
    columns = set(frame.columns)
    results = tuple(
        _result(suite, spec, by_code.get(spec.code), columns, len(frame)) for spec in suite.expectations
    )
    return SuiteResult(
        suite=suite.name,
        table=suite.table,
        row_count=len(frame),
        results=results,
        metrics=column_metrics(frame, [c for c in suite.columns() if c in columns]),
        document=sanitised(suite, by_code, results, validation.meta.get("great_expectations_version")),
    )


#: Off in tests that compare results with and without the memo.
MEMOISE_CONFIGURATIONS = True


def validation_memo() -> AbstractContextManager[None]:
    """Around one validation: GX's configuration memo (``censustrace.quality.gx_compat``) unless off."""
    return configurations_memoised() if MEMOISE_CONFIGURATIONS else nullcontext()


def _failed_with_rows(result: Any) -> bool:
    """Failed with unexpected rows, so its record numbers are wanted. (One that passes within its
    ``mostly``, like the count of temporary UPNs, keeps its counts only.)"""
    if result is None or result.success:
        return False
    count = (result.result or {}).get("unexpected_count")
    return isinstance(count, int | float) and count > 0


_parts: dict[tuple[int, tuple[str, ...]], Any] = {}


def _part_of(suite: SuiteSpec, codes: tuple[str, ...]) -> Any:
    """A GX suite of just these expectations of ``suite`` (cached: the same few fail file after file)."""
    import great_expectations as gx

    key = (id(suite.gx_suite), codes)
    part = _parts.get(key)
    if part is None:
        if len(_parts) > 1024:
            _parts.clear()
        wanted = set(codes)
        part = _parts[key] = gx.ExpectationSuite(
            name=suite.name,
            expectations=[
                e.configuration.to_domain_obj()
                for e in suite.gx_suite.expectations
                if e.meta["code"] in wanted
            ],
        )
    return part


def column_metrics(frame: pd.DataFrame, columns: Iterable[str]) -> dict[str, ColumnMetric]:
    """Nulls and distinct values per column: counts only."""
    from censustrace.quality.suites import PARSE_REJECTED

    out = {}
    for column in columns:
        if column == PARSE_REJECTED:
            continue
        values = frame[column]
        out[column] = ColumnMetric(int(values.isna().sum()), int(values.nunique(dropna=True)))
    return out


def _result(
    suite: SuiteSpec, spec: ExpectationSpec, gx_result: Any, columns: set[str], rows: int
) -> ExpectationResult:
    raw: Mapping[str, Any] = (gx_result.result or {}) if gx_result is not None else {}
    error = None
    missing = [c for c in spec.columns if c not in columns]
    if missing:
        error = f"column {', '.join(missing)} missing from the data"
    elif gx_result is None:
        error = "GX returned no result for it"
    elif _raised(gx_result.exception_info):
        error = f"GX could not evaluate it ({_exception_kind(gx_result.exception_info)})"
    records, failed_keys = _failing(raw.get("unexpected_index_list"), suite.row_key)
    observed = raw.get("observed_value") if spec.type in _COUNT_OBSERVED else None
    return ExpectationResult(
        suite=suite.name,
        code=spec.code,
        name=spec.name,
        type=spec.type,
        column=spec.column,
        severity=spec.severity,
        description=spec.description,
        fault=spec.fault,
        table_level=spec.table_level,
        success=bool(gx_result.success) and error is None if gx_result is not None else False,
        element_count=_int(raw.get("element_count", rows if spec.table_level and error is None else None)),
        unexpected_count=_int(raw.get("unexpected_count")),
        unexpected_percent=_float(raw.get("unexpected_percent")),
        observed=_int(observed),
        records=records,
        failed_keys=failed_keys,
        error=error,
    )


def _failing(
    index_list: object, row_key: Sequence[str]
) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """Record numbers and row keys of the failing rows from GX's ``unexpected_index_list``: with
    ``exclude_unexpected_values`` one dict of lists, ``{"record_number": [...], ...}``; otherwise one dict
    per row."""
    if not isinstance(index_list, list) or not index_list:
        return (), ()
    keys: list[tuple[int, ...]] = []
    for item in index_list:
        if not isinstance(item, dict):
            continue
        values = [item.get(name) for name in row_key]
        if all(isinstance(v, list) for v in values):
            keys.extend(zip(*(map(int, v) for v in values), strict=True))  # type: ignore[arg-type]
        else:
            keys.append(tuple(int(v) for v in values))  # type: ignore[arg-type]
    rows = sorted(set(keys))
    return tuple(sorted({k[0] for k in rows})), tuple(rows)


def _raised(info: object) -> bool:
    if not isinstance(info, dict):
        return False
    if "raised_exception" in info:
        return bool(info["raised_exception"])
    # Metric failures come keyed by metric id: {"MetricConfigurationID(...)": {"exception_message": ...}}.
    return any(isinstance(v, dict) and v.get("exception_message") for v in info.values())


def _exception_kind(info: object) -> str:
    """The exception's class name only: GX messages may quote values from the data."""
    texts: list[str] = []
    if isinstance(info, dict):
        texts = [str(info.get("exception_traceback") or "")]
        texts += [str(v.get("exception_traceback") or "") for v in info.values() if isinstance(v, dict)]
    for text in texts:
        lines = [line for line in text.strip().splitlines() if line and not line.startswith(" ")]
        if lines:
            name = lines[-1].split(":", 1)[0].strip()
            if re.fullmatch(r"[A-Za-z_][\w.]*", name):
                return name.rsplit(".", 1)[-1]
    return "an exception"


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


# --- sanitised GX documents (Data Docs) -----------------------------------------------------------------


def sanitised(
    suite: SuiteSpec, by_code: Mapping[str, Any], results: Sequence[ExpectationResult], version: str | None
) -> Any:
    """A GX validation result holding counts only, rebuilt from an allow-list: the configurations
    (declared kwargs, no data), success, count fields and our own error text."""
    from great_expectations.core.expectation_validation_result import (
        ExpectationSuiteValidationResult,
        ExpectationValidationResult,
    )

    clean = []
    for result in results:
        original = by_code.get(result.code)
        raw = (original.result or {}) if original is not None else {}
        kept = {k: raw[k] for k in _COUNT_FIELDS if isinstance(raw.get(k), int | float)}
        if result.observed is not None:
            kept["observed_value"] = result.observed
        clean.append(
            ExpectationValidationResult(
                success=result.success,
                expectation_config=original.expectation_config if original is not None else None,
                result=kept,
                meta={},
                exception_info={
                    "raised_exception": result.error is not None,
                    "exception_message": result.error,
                    # Data Docs show this text when an expectation could not be evaluated: ours, not
                    # GX's traceback (which may quote values).
                    "exception_traceback": result.error,
                },
            )
        )
    evaluated = len(clean)
    passed = sum(1 for r in results if r.success)
    return ExpectationSuiteValidationResult(
        success=all(r.success for r in results),
        results=[r for r in clean if r.expectation_config is not None],
        suite_name=suite.name,
        statistics={
            "evaluated_expectations": evaluated,
            "successful_expectations": passed,
            "unsuccessful_expectations": evaluated - passed,
            "success_percent": 100.0 * passed / evaluated if evaluated else None,
        },
        meta={"great_expectations_version": version},
    )


__all__ = [
    "RESULT_FORMAT",
    "ColumnMetric",
    "ExpectationResult",
    "SuiteResult",
    "column_metrics",
    "run_suite",
    "runtime",
    "sanitised",
]
