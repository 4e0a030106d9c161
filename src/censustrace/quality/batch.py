"""Validate a batch of staged extracts: each suite runs ONCE, with GX Core, over all the batch's rows, and
its results are split back per extract exactly as if each extract had been validated alone.

GX's cost is mostly per expectation and per validation, not per row (about 5 ms an expectation, 256 ms
for one school file's three suites: docs/benchmarks.md). A batch of 100-200 files pays it once.

How one frame stays exact per extract:

* the batch frame holds the rows of every extract in (extract, record, period) order; its
  ``record_number`` column is a *batch key*, ``ordinal << 32 | record number``, so an expectation that
  groups by record (FSM periods in order) never mixes two extracts' records, and the failing rows'
  keys GX returns are split back to (extract, record number); the row index is ``ordinal << 32 |
  position``, from which the first-occurrence check takes the extract (a UPN repeats only within one
  file: a dual-registered pupil is in two schools' files);
* row-level (map) expectations run over the whole frame; per extract, the counts GX would have given
  (element, missing, unexpected, percentages, ``mostly`` success) are computed from the extract's rows
  and its share of the failing keys, with GX's own rules (``_format_map_output``, ``_mostly_success``);
* expectations that compare rows across the table or judge the table as a whole (row counts, the
  extract's ``rows_read``; GX's uniqueness checks) are evaluated per extract: the two row-count types
  directly, any other such type by GX on the extract's slice (correct, but not cheap).

``tests/quality/test_batch.py`` checks that the outcome of every extract equals ``validate_extract``'s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import Connection

from censustrace.config import Settings
from censustrace.intake.quarantine import quarantine
from censustrace.intake.registry import ExtractRow, get_extract
from censustrace.intake.reject_codes import StagedCodes, read_codes, set_codes
from censustrace.quality.frames import EXTRACT_COLUMN, read_staged
from censustrace.quality.run import (
    SKIPPED,
    ValidationOutcome,
    _decide,
    _store_results,
    _store_warnings,
    validation_outcome,
)
from censustrace.quality.suites import PARSE_REJECTED, RUN_PARAMETERS, Suites, SuiteSpec, load_suites
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import STAGED

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped]

    from censustrace.quality.engine import SuiteResult

SHIFT_BITS: Final = 32
#: Map expectations whose verdict on a row depends on OTHER rows: per extract, never over a batch.
CROSS_ROW_TYPES: Final = frozenset(
    {
        "expect_column_values_to_be_unique",
        "expect_compound_columns_to_be_unique",
        "expect_multicolumn_values_to_be_unique",
        "expect_select_column_values_to_be_unique_within_record",
    }
)
#: Map expectations without GX's missing-value filter (their nulls are the unexpected values).
_NO_MISSING: Final = frozenset({"expect_column_values_to_not_be_null", "expect_column_values_to_be_null"})
_ROW_COUNT_TYPES: Final = frozenset(
    {"expect_table_row_count_to_be_between", "expect_table_row_count_to_equal"}
)


@dataclass(slots=True)
class _Batch:
    """The extracts of a batch, in ordinal order, with their registry rows and staged codes."""

    ids: list[str]
    heads: dict[str, ExtractRow]
    codes: dict[str, StagedCodes] = field(default_factory=dict)


def validate_batch(extract_ids: Sequence[str], settings: Settings) -> dict[str, ValidationOutcome]:
    """Validate every staged extract of ``extract_ids`` (others are ``skipped``) with one GX run per
    suite; store each extract's results, codes and quarantine in ONE transaction. Extract id ->
    outcome, the same as ``validate_extract`` would give it."""
    from censustrace.quality.docs import write_pages

    suites = load_suites(settings.expectations_dir)  # a bad suite file fails here, loudly
    engine = warehouse_engine(settings.warehouse_db_url)
    outcomes: dict[str, ValidationOutcome] = {}
    with engine.connect() as conn:
        batch = _staged(conn, extract_ids)
        for extract_id in extract_ids:
            if extract_id not in batch.heads:
                outcomes[extract_id] = ValidationOutcome(extract_id=extract_id, status=SKIPPED)
        if not batch.ids:
            return outcomes
        batch.codes = {e: read_codes(conn, e) for e in batch.ids}
        results = evaluate_batch(conn, batch, suites)
    validated_at = dt.datetime.now(dt.UTC)
    decided = {}
    for extract_id in batch.ids:
        own = results[extract_id]
        decision = _decide(batch.heads[extract_id], suites, own, batch.codes[extract_id].parse_rejected())
        pages = write_pages(settings.data_docs_dir, suites, extract_id, own, validated_at.isoformat())
        decided[extract_id] = (decision, {r.suite: p for r, p in zip(own, pages, strict=True)}, pages)
    with write_transaction(engine) as conn:
        for extract_id in batch.ids:
            decision, page_of, pages = decided[extract_id]
            locked = get_extract(conn, extract_id, lock=True)
            if locked is None or locked.status != STAGED:  # done meanwhile by another process
                outcomes[extract_id] = ValidationOutcome(extract_id=extract_id, status=SKIPPED)
                continue
            own = results[extract_id]
            _store_results(conn, extract_id, own, page_of, validated_at)
            if decision.errors:
                quarantine(extract_id, decision.errors, settings, connection=conn)
            else:
                set_codes(conn, extract_id, batch.codes[extract_id], decision.rejected)
                _store_warnings(conn, locked, decision.warnings)
            outcomes[extract_id] = validation_outcome(settings, extract_id, own, decision, page_of, pages)
    return outcomes


def _staged(conn: Connection, extract_ids: Sequence[str]) -> _Batch:
    heads = {}
    for extract_id in extract_ids:
        head = get_extract(conn, extract_id)
        if head is not None and head.part_of is None and head.status == STAGED:
            heads[extract_id] = head
    ids = sorted(heads)  # the frames are read in extract id order: ordinal = position here
    return _Batch(ids=ids, heads=heads)


# --- evaluation ---------------------------------------------------------------------------------------


def evaluate_batch(conn: Connection, batch: _Batch, suites: Suites) -> dict[str, list[SuiteResult]]:
    """Extract id -> its suite results (suite order), from one GX run per suite over the batch."""
    out: dict[str, list[SuiteResult]] = {e: [] for e in batch.ids}
    shared = suites.code_set_parameters()
    for suite in suites:
        frame = read_batch_frame(conn, batch, suite)
        for extract_id, result in zip(batch.ids, _run_batch_suite(suite, frame, batch, shared), strict=True):
            out[extract_id].append(result)
        del frame
    return out


def read_batch_frame(conn: Connection, batch: _Batch, suite: SuiteSpec) -> pd.DataFrame:
    """The suite's rows of every extract of the batch, in (extract, record, period) order, with the
    batch key in ``record_number`` and ``ordinal << 32 | position`` as the row index."""
    import numpy as np
    import pandas as pd

    frame = read_staged(conn, suite, batch.ids)
    ordinal_of = {e: i for i, e in enumerate(batch.ids)}
    ordinals = frame[EXTRACT_COLUMN].map(ordinal_of).to_numpy(dtype="int64")
    frame = frame.drop(columns=EXTRACT_COLUMN)
    local = frame["record_number"].to_numpy(dtype="int64")
    batch_key = (ordinals << SHIFT_BITS) | local
    if PARSE_REJECTED in suite.columns():
        rejected = [
            (ordinal << SHIFT_BITS) | number
            for ordinal, extract_id in enumerate(batch.ids)
            for number in batch.codes[extract_id].parse_rejected()
        ]
        frame[PARSE_REJECTED] = np.isin(batch_key, rejected) if rejected else False
    frame["record_number"] = batch_key
    starts = np.searchsorted(ordinals, np.arange(len(batch.ids)))
    position = np.arange(len(frame), dtype="int64") - starts[ordinals] if len(frame) else ordinals
    frame.index = pd.Index((ordinals << SHIFT_BITS) | position)
    frame.attrs["ordinals"] = ordinals
    return frame


def _is_batch_map(spec: Any, gx_expectation: Any) -> bool:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    if spec.table_level or spec.type in CROSS_ROW_TYPES:
        return False
    if _run_parameters(spec.kwargs):
        return False  # a value of the extract's own (rows_read): per extract
    return isinstance(
        gx_expectation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    )


def _run_parameters(value: object) -> bool:
    if isinstance(value, Mapping):
        if value.get("$PARAMETER") in RUN_PARAMETERS:
            return True
        return any(_run_parameters(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_run_parameters(v) for v in value)
    return False


@dataclass(slots=True)
class _Fake:
    """What ``engine._result`` and ``engine.sanitised`` read of a GX result, for one extract."""

    success: bool
    result: dict[str, Any]
    exception_info: Any
    expectation_config: Any


def _run_batch_suite(
    suite: SuiteSpec, frame: pd.DataFrame, batch: _Batch, shared: Mapping[str, Any]
) -> list[SuiteResult]:
    import great_expectations as gx
    import numpy as np

    from censustrace.quality import engine
    from censustrace.quality.engine import (
        COUNTS_FORMAT,
        RESULT_FORMAT,
        SuiteResult,
        _part_of,
        _result,
        runtime,
    )

    version = gx.__version__
    ordinals: np.ndarray[Any, Any] = frame.attrs["ordinals"]
    n = len(batch.ids)
    rows_of = np.bincount(ordinals, minlength=n) if len(ordinals) else np.zeros(n, dtype="int64")
    gx_of = {e.meta["code"]: e for e in suite.gx_suite.expectations}
    mapped = tuple(s.code for s in suite.expectations if _is_batch_map(s, gx_of[s.code]))
    by_code: dict[str, Any] = {}
    keys_of: dict[str, np.ndarray[Any, Any]] = {}
    if mapped:
        gx_runtime = runtime()
        with gx_runtime.lock, engine.validation_memo():
            gx_batch = gx_runtime.batch_definition(suite.name).get_batch(
                batch_parameters={"dataframe": frame}
            )
            counts = gx_batch.validate(
                _part_of(suite, mapped), result_format=COUNTS_FORMAT, expectation_parameters=dict(shared)
            )
            by_code = {r.expectation_config.meta.get("code"): r for r in counts.results}
            # Every map expectation with unexpected rows, passed or not: its rows are shared out.
            with_rows = tuple(c for c in mapped if _unexpected(by_code.get(c)) > 0)
            if with_rows:
                listed = gx_batch.validate(
                    _part_of(suite, with_rows),
                    result_format={**RESULT_FORMAT, "unexpected_index_column_names": list(suite.row_key)},
                    expectation_parameters=dict(shared),
                )
                for r in listed.results:
                    code = r.expectation_config.meta.get("code")
                    keys_of[code] = _keys(r, suite.row_key)
    columns = set(frame.columns)
    per_extract: list[dict[str, Any]] = [{} for _ in range(n)]
    for spec in suite.expectations:
        if spec.code in mapped:
            gx_result = by_code.get(spec.code)
            masks = _missing_counts(spec, gx_of[spec.code], frame, ordinals, n)
            for ordinal in range(n):
                per_extract[ordinal][spec.code] = _split(
                    spec,
                    suite.row_key,
                    gx_result,
                    int(rows_of[ordinal]),
                    masks[ordinal],
                    keys_of.get(spec.code),
                    ordinal,
                )
        else:
            for ordinal, extract_id in enumerate(batch.ids):
                per_extract[ordinal][spec.code] = _per_extract(
                    suite, spec, gx_of[spec.code], frame, ordinals, ordinal, batch.heads[extract_id], shared
                )
    metrics = _metrics_by_extract(frame, ordinals, n, [c for c in suite.columns() if c in columns])
    out = []
    for ordinal in range(n):
        fakes = per_extract[ordinal]
        results = tuple(
            _result(suite, spec, fakes.get(spec.code), columns, int(rows_of[ordinal]))
            for spec in suite.expectations
        )
        out.append(
            SuiteResult(
                suite=suite.name,
                table=suite.table,
                row_count=int(rows_of[ordinal]),
                results=results,
                metrics=metrics[ordinal],
                document=engine.sanitised(suite, fakes, results, version),
            )
        )
    return out


def _unexpected(result: Any) -> int:
    if result is None:
        return 0
    count = (result.result or {}).get("unexpected_count")
    return int(count) if isinstance(count, int | float) and not isinstance(count, bool) else 0


def _keys(result: Any, row_key: Sequence[str]) -> Any:
    """The failing rows' keys as an int64 array of shape (rows, len(row_key)), batch keys first."""
    import numpy as np

    from censustrace.quality.engine import _failing

    _records, keys = _failing((result.result or {}).get("unexpected_index_list"), row_key)
    return np.asarray(keys, dtype="int64").reshape(-1, len(row_key))


def _missing_counts(
    spec: Any, gx_expectation: Any, frame: pd.DataFrame, ordinals: Any, n: int
) -> list[int | None]:
    """Per extract, the rows GX leaves out of the expectation (its missing values); None where GX
    reports no missing count (``expect_column_values_to_(not_)be_null``)."""
    import numpy as np
    from great_expectations.expectations.expectation import ColumnMapExpectation, ColumnPairMapExpectation

    if spec.type in _NO_MISSING:
        return [None] * n
    if any(c not in frame.columns for c in spec.columns):
        return [0] * n
    if isinstance(gx_expectation, ColumnMapExpectation):
        missing = frame[spec.columns[0]].isna().to_numpy()
    else:
        nulls = frame[list(spec.columns)].isna().to_numpy()
        rule = getattr(gx_expectation, "ignore_row_if", None)
        if isinstance(gx_expectation, ColumnPairMapExpectation):
            rule = rule or "both_values_are_missing"
            missing = (
                nulls.any(axis=1)
                if rule == "either_value_is_missing"
                else nulls.all(axis=1)
                if rule == "both_values_are_missing"
                else np.zeros(len(frame), dtype=bool)
            )
        else:
            rule = rule or "all_values_are_missing"
            missing = (
                nulls.any(axis=1)
                if rule == "any_value_is_missing"
                else nulls.all(axis=1)
                if rule == "all_values_are_missing"
                else np.zeros(len(frame), dtype=bool)
            )
    counts = np.bincount(ordinals[missing], minlength=n) if len(ordinals) else np.zeros(n, dtype="int64")
    return [int(c) for c in counts]


def _split(
    spec: Any,
    row_key: Sequence[str],
    gx_result: Any,
    rows: int,
    missing: int | None,
    keys: Any,
    ordinal: int,
) -> _Fake | None:
    """One extract's share of a batch-wide map result, counted by GX's rules."""
    from great_expectations.expectations.expectation import _mostly_success

    if gx_result is None:
        return None
    raw_batch = gx_result.result or {}
    if "unexpected_count" not in raw_batch:  # could not be evaluated: the same for every extract
        return _Fake(bool(gx_result.success), {}, gx_result.exception_info, gx_result.expectation_config)
    mine = None
    unexpected = 0
    if keys is not None and len(keys):
        mine = keys[(keys[:, 0] >> SHIFT_BITS) == ordinal]
        unexpected = len(mine)
    mostly = spec.kwargs.get("mostly", 1.0)
    nonnull = None if missing is None else rows - missing
    if missing is None:
        success = True if rows == 0 else (rows - unexpected) / rows >= mostly
    elif rows == 0 or nonnull == 0:
        success = True
    else:
        success = _mostly_success(int(nonnull or 0), unexpected, mostly)
    raw: dict[str, Any] = {"element_count": rows, "unexpected_count": unexpected}
    total = unexpected / rows * 100 if rows > 0 else None
    if missing is None:
        raw["unexpected_percent"] = total
    else:
        nonmissing = unexpected / nonnull * 100 if rows > 0 and nonnull else None
        raw["unexpected_percent"] = nonmissing
        raw["missing_count"] = missing
        raw["missing_percent"] = missing / rows * 100 if rows > 0 else None
        raw["unexpected_percent_total"] = total
        raw["unexpected_percent_nonmissing"] = nonmissing
    if not success and mine is not None and len(mine):
        local = mine.copy()
        local[:, 0] &= (1 << SHIFT_BITS) - 1
        raw["unexpected_index_list"] = [{name: local[:, i].tolist() for i, name in enumerate(row_key)}]
    return _Fake(success, raw, gx_result.exception_info, gx_result.expectation_config)


def _per_extract(
    suite: SuiteSpec,
    spec: Any,
    gx_expectation: Any,
    frame: pd.DataFrame,
    ordinals: Any,
    ordinal: int,
    head: ExtractRow,
    shared: Mapping[str, Any],
) -> _Fake:
    """A table-level or cross-row expectation judged on one extract's rows."""
    rows = int((ordinals == ordinal).sum())
    parameters = {"rows_read": head.rows_read or 0, **shared}
    config = gx_expectation.configuration
    if spec.type in _ROW_COUNT_TYPES:
        kwargs = _resolved(spec.kwargs, parameters)
        if spec.type == "expect_table_row_count_to_equal":
            success = rows == kwargs.get("value")
        else:
            low, high = kwargs.get("min_value"), kwargs.get("max_value")
            success = (low is None or rows >= low) and (high is None or rows <= high)
        return _Fake(bool(success), {"observed_value": rows}, {"raised_exception": False}, config)
    # Anything else: GX on the extract's own slice, its index and record numbers as if alone.
    from censustrace.quality.engine import COUNTS_FORMAT, RESULT_FORMAT, _part_of, runtime

    part = frame[ordinals == ordinal].copy()
    part.index = range(len(part))
    if "record_number" in part.columns:
        part["record_number"] = part["record_number"] & ((1 << SHIFT_BITS) - 1)
    gx_runtime = runtime()
    with gx_runtime.lock:
        gx_batch = gx_runtime.batch_definition(suite.name).get_batch(batch_parameters={"dataframe": part})
        result = gx_batch.validate(
            _part_of(suite, (spec.code,)), result_format=COUNTS_FORMAT, expectation_parameters=parameters
        ).results[0]
        if not spec.table_level and not result.success and _unexpected(result) > 0:
            result = gx_batch.validate(
                _part_of(suite, (spec.code,)),
                result_format={**RESULT_FORMAT, "unexpected_index_column_names": list(suite.row_key)},
                expectation_parameters=parameters,
            ).results[0]
    return _Fake(
        bool(result.success), dict(result.result or {}), result.exception_info, result.expectation_config
    )


def _resolved(kwargs: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in kwargs.items():
        if isinstance(value, Mapping) and "$PARAMETER" in value:
            value = parameters.get(str(value["$PARAMETER"]))
        out[key] = value
    return out


def _metrics_by_extract(
    frame: pd.DataFrame, ordinals: Any, n: int, columns: Sequence[str]
) -> list[dict[str, Any]]:
    """Nulls and distinct values per column, per extract (``engine.column_metrics`` for each)."""
    from censustrace.quality.engine import ColumnMetric

    wanted = [c for c in columns if c != PARSE_REJECTED]
    out: list[dict[str, Any]] = [{} for _ in range(n)]
    if not wanted:
        return out
    values = frame[wanted].copy()
    if "record_number" in values.columns:
        values["record_number"] = values["record_number"] & ((1 << SHIFT_BITS) - 1)
    values.index = ordinals
    grouped = values.groupby(level=0, sort=True)
    nulls = values.isna().groupby(level=0, sort=True).sum()
    distinct = grouped.nunique(dropna=True)
    for ordinal in range(n):
        if ordinal not in nulls.index:
            out[ordinal] = {c: ColumnMetric(0, 0) for c in wanted}
            continue
        null_row, distinct_row = nulls.loc[ordinal], distinct.loc[ordinal]
        out[ordinal] = {c: ColumnMetric(int(null_row[c]), int(distinct_row[c])) for c in wanted}
    return out


__all__ = ["CROSS_ROW_TYPES", "evaluate_batch", "read_batch_frame", "validate_batch"]
