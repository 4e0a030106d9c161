"""Custom Great Expectations for the census: identifiers, duplicates, dates of birth and FSM periods.

Importing this module registers the expectations with GX (by class name: ``ExpectColumnValuesToBeValidUpn``
is ``expect_column_values_to_be_valid_upn`` in a suite file). Suites are loaded by
``censustrace.quality.suites``, which imports this module first. Heavy (imports GX and pandas): import it
only where validation runs.

Every metric is vectorised over a pandas column (numpy), the UPN and ULN check-digit rules too; a test
checks them against ``censustrace.census.identifiers`` (the reference implementation) value by value.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from great_expectations.compatibility import pydantic
from great_expectations.execution_engine.pandas_execution_engine import PandasExecutionEngine
from great_expectations.expectations.expectation import ColumnMapExpectation, MulticolumnMapExpectation
from great_expectations.expectations.metrics.map_metric_provider.column_condition_partial import (
    column_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.column_map_metric_provider import (
    ColumnMapMetricProvider,
)
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_condition_partial import (
    multicolumn_condition_partial,
)
from great_expectations.expectations.metrics.map_metric_provider.multicolumn_map_metric_provider import (
    MulticolumnMapMetricProvider,
)

from censustrace.census.codes import NC_YEAR_AGE
from censustrace.census.identifiers import UPN_CHECK_TABLE

#: Row index of a batch frame: extract ordinal << EXTRACT_SHIFT_BITS | row position within the extract.
EXTRACT_SHIFT_BITS: Final = 32
EXTRACT_SHIFT: Final = 1 << EXTRACT_SHIFT_BITS

_MULTICOLUMN_DOMAIN_KEYS: tuple[str, ...] = (
    "batch_id",
    "table",
    "column_list",
    "row_condition",
    "condition_parser",
    "ignore_row_if",
)


# Character values of the identifier rules (``censustrace.census.identifiers``), by code point (ASCII).
_DIGIT = np.full(128, -1, dtype=np.int64)
_DIGIT[48:58] = np.arange(10)
_TABLE_LETTER = np.full(128, -1, dtype=np.int64)
for _value, _letter in enumerate(UPN_CHECK_TABLE):
    _TABLE_LETTER[ord(_letter)] = _value
_UPN_WEIGHTS = np.arange(2, 14, dtype=np.int64)
_ULN_WEIGHTS = np.arange(10, 0, -1, dtype=np.int64)


def _code_points(column: pd.Series, width: int) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(values of exactly ``width`` characters, all ASCII) as an int array (n, width), and where they are."""
    text = column.astype(str)
    fits = text.str.len().eq(width).to_numpy()
    chosen = text[fits].tolist()
    codes = np.frombuffer("".join(chosen).encode("utf-32-le"), dtype=np.uint32).astype(np.int64)
    codes = codes.reshape(len(chosen), width)
    ascii_ = (codes < 128).all(axis=1)
    where = np.flatnonzero(fits)[ascii_]
    return codes[ascii_], where


def valid_upns(column: pd.Series) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Vectorised ``is_valid_upn`` (and, second, ``is_temporary_upn``) over a column of text."""
    valid = np.zeros(len(column), dtype=bool)
    temporary = np.zeros(len(column), dtype=bool)
    codes, where = _code_points(column, 13)
    if len(codes):
        digits, letters = _DIGIT[codes], _TABLE_LETTER[codes]
        last = np.where(digits[:, 12] >= 0, digits[:, 12], letters[:, 12])
        values = np.concatenate([digits[:, 1:12], last[:, None]], axis=1)
        total = (values * _UPN_WEIGHTS).sum(axis=1)
        ok = (digits[:, 1:12] >= 0).all(axis=1) & (last >= 0) & (letters[:, 0] == total % 23)
        valid[where] = ok
        temporary[where] = ok & (letters[:, 12] >= 0)
    return valid, temporary


def valid_ulns(column: pd.Series) -> np.ndarray[Any, Any]:
    """Vectorised ``is_valid_uln`` over a column of text."""
    valid = np.zeros(len(column), dtype=bool)
    codes, where = _code_points(column, 10)
    if len(codes):
        digits = _DIGIT[codes]
        ok = (digits >= 0).all(axis=1) & (digits[:, 0] > 0)
        valid[where] = ok & ((np.where(digits >= 0, digits, 0) * _ULN_WEIGHTS).sum(axis=1) % 11 == 10)
    return valid


# --- UPN and ULN ------------------------------------------------------------------------------------------


class ColumnValuesValidUpn(ColumnMapMetricProvider):
    condition_metric_name = "column_values.censustrace_valid_upn"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return pd.Series(valid_upns(column)[0], index=column.index)


class ExpectColumnValuesToBeValidUpn(ColumnMapExpectation):
    """Each value is a well-formed UPN, permanent or temporary, with the right check letter
    (``censustrace.census.identifiers.is_valid_upn``). Missing values are not judged here."""

    map_metric = "column_values.censustrace_valid_upn"
    success_keys = ("mostly",)


class ColumnValuesPermanentUpn(ColumnMapMetricProvider):
    condition_metric_name = "column_values.censustrace_permanent_upn"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return pd.Series(~valid_upns(column)[1], index=column.index)


class ExpectColumnValuesToBePermanentUpn(ColumnMapExpectation):
    """Each value is not a (valid) temporary UPN, one whose last character is a letter. With
    ``mostly: 0`` it never fails and its unexpected count is the number of temporary UPNs."""

    map_metric = "column_values.censustrace_permanent_upn"
    success_keys = ("mostly",)


class ColumnValuesValidUln(ColumnMapMetricProvider):
    condition_metric_name = "column_values.censustrace_valid_uln"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        return pd.Series(valid_ulns(column), index=column.index)


class ExpectColumnValuesToBeValidUln(ColumnMapExpectation):
    """Each value is a ULN: 10 digits, the first non-zero, weighted sum 10 mod 11
    (``censustrace.census.identifiers.is_valid_uln``)."""

    map_metric = "column_values.censustrace_valid_uln"
    success_keys = ("mostly",)


# --- duplicates --------------------------------------------------------------------------------------------


class ColumnValuesFirstOccurrence(ColumnMapMetricProvider):
    condition_metric_name = "column_values.censustrace_first_occurrence"

    @column_condition_partial(engine=PandasExecutionEngine)
    def _pandas(cls, column: pd.Series, **kwargs: Any) -> pd.Series:
        # A batch of extracts is validated as one frame whose row index carries the extract in its high
        # bits (``censustrace.quality.batch.EXTRACT_SHIFT``): a UPN repeats only within its own extract
        # (a dual-registered pupil is in two schools' files). A one-extract frame's index is 0..n-1.
        index = column.index
        one_extract = isinstance(index, pd.RangeIndex) and index.start >= 0 and index.step > 0
        if not len(index) or (one_extract and index[-1] < EXTRACT_SHIFT):
            return ~column.duplicated(keep="first")
        groups = np.asarray(index, dtype="int64") >> EXTRACT_SHIFT_BITS
        keyed = pd.DataFrame({"extract": groups, "value": column.to_numpy()}, index=index)
        return ~keyed.duplicated(keep="first")


class ExpectColumnValuesToBeFirstOccurrences(ColumnMapExpectation):
    """No value repeats one of an EARLIER row (rows in batch order, which is record order): the first
    row with a value passes, every later row with it fails. GX's own
    ``expect_column_values_to_be_unique`` fails every copy, so the first, good record would be
    rejected too."""

    map_metric = "column_values.censustrace_first_occurrence"
    success_keys = ("mostly",)


# --- mandatory items ----------------------------------------------------------------------------------------


class ItemPresent(MulticolumnMapMetricProvider):
    condition_metric_name = "multicolumn_values.censustrace_item_present"
    condition_domain_keys = _MULTICOLUMN_DOMAIN_KEYS

    @multicolumn_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
    def _pandas(cls, column_list: pd.DataFrame, **kwargs: Any) -> pd.Series:
        item, parse_rejected = column_list.iloc[:, 0], column_list.iloc[:, 1]
        return item.notna() | parse_rejected.astype(bool)


class ExpectItemToBePresent(MulticolumnMapExpectation):
    """``column_list`` is ``[item, parse_rejected]``: the item has a value, unless the parser already
    rejected the record (then an empty item is a value that could not be read, not a missing one, and
    the record's reason is the parser's ``CT-PARSE-VALUE:<item>``). A GX ``row_condition`` on
    ``expect_column_values_to_not_be_null`` says the same but costs a ``DataFrame.query`` per
    expectation, which is most of its time on a school-sized file."""

    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = "never"

    map_metric = "multicolumn_values.censustrace_item_present"
    success_keys = ("mostly",)
    args_keys = ("column_list",)

    @pydantic.validator("column_list")
    def _two_columns(cls, value: list[str]) -> list[str]:
        if len(value) != 2:
            raise ValueError("column_list must be [item, parse_rejected]")
        return value


# --- dates of birth ----------------------------------------------------------------------------------------

_NC_YEAR_AGE = pd.Series(NC_YEAR_AGE, dtype="float64")


def plausible_dob(
    dob: pd.Series, nc_year: pd.Series, reference_date: pd.Series, tolerance_years: int, max_age: int
) -> pd.Series:
    """True where a date of birth is plausible for the pupil's NC year on the census day; missing DOBs
    pass (they are judged by the mandatory-item check)."""
    dob = pd.to_datetime(dob)
    ref = pd.to_datetime(reference_date)
    # The age on 31 August before the academic year of the census day (codes.NC_YEAR_AGE's rule).
    academic_year = ref.dt.year - (ref.dt.month < 9)
    age = academic_year - dob.dt.year - (dob.dt.month >= 9)
    expected = nc_year.map(_NC_YEAR_AGE).astype("float64")
    in_year_group = (age >= expected - tolerance_years) & (age <= expected + tolerance_years)
    any_age = (age >= 0) & (age <= max_age)
    ok = (dob <= ref) & np.where(expected.notna(), in_year_group, any_age)
    return pd.Series(np.asarray(ok | dob.isna(), dtype=bool), index=dob.index)


class DobPlausibleForNcYear(MulticolumnMapMetricProvider):
    condition_metric_name = "multicolumn_values.censustrace_plausible_dob"
    condition_domain_keys = _MULTICOLUMN_DOMAIN_KEYS
    condition_value_keys = ("tolerance_years", "max_age")

    @multicolumn_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
    def _pandas(cls, column_list: pd.DataFrame, **kwargs: Any) -> pd.Series:
        dob, nc_year, reference_date = (column_list.iloc[:, i] for i in range(3))
        return plausible_dob(dob, nc_year, reference_date, kwargs["tolerance_years"], kwargs["max_age"])


class ExpectDobToBePlausibleForNcYear(MulticolumnMapExpectation):
    """``column_list`` is ``[dob, nc_year, reference_date]``. The DOB must be on or before the census day,
    and the age on 31 August before the academic year must be within ``tolerance_years`` of the NC
    year's age (``codes.NC_YEAR_AGE``: reception 4, year 1 5, ...); for ``M``, ``X``, an unknown or no NC
    year, between 0 and ``max_age``."""

    tolerance_years: int = pydantic.Field(default=2, ge=0)
    max_age: int = pydantic.Field(default=25, ge=0)
    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = (
        "never"  # a missing NC year still bounds the age; a missing DOB passes
    )

    map_metric = "multicolumn_values.censustrace_plausible_dob"
    success_keys = ("mostly", "tolerance_years", "max_age")
    args_keys = ("column_list",)

    @pydantic.validator("column_list")
    def _three_columns(cls, value: list[str]) -> list[str]:
        if len(value) != 3:
            raise ValueError("column_list must be [dob, nc_year, reference_date]")
        return value


# --- FSM periods -------------------------------------------------------------------------------------------


def periods_in_order(frame: pd.DataFrame) -> pd.Series:
    """True where a period starts after the previous period of the same record ended (the first period
    of a record always passes). ``frame`` columns: record, period number, start, end."""
    record, number, start, end = (frame.iloc[:, i] for i in range(4))
    order = np.lexsort((number.to_numpy(), record.to_numpy()))
    sorted_record = record.to_numpy()[order]
    starts = pd.to_datetime(start).to_numpy()[order]
    ends = pd.to_datetime(end).to_numpy()[order]
    ok = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        same = sorted_record[1:] == sorted_record[:-1]
        previous_end = ends[:-1]
        # A later period needs the one before to have ended (NaT never compares true) before it starts.
        ok[1:] = ~same | (previous_end < starts[1:])
    result = np.empty(len(order), dtype=bool)
    result[order] = ok
    return pd.Series(result, index=frame.index)


class PeriodsInOrder(MulticolumnMapMetricProvider):
    condition_metric_name = "multicolumn_values.censustrace_periods_in_order"
    condition_domain_keys = _MULTICOLUMN_DOMAIN_KEYS

    @multicolumn_condition_partial(engine=PandasExecutionEngine)  # type: ignore[untyped-decorator]
    def _pandas(cls, column_list: pd.DataFrame, **kwargs: Any) -> pd.Series:
        return periods_in_order(column_list)


class ExpectPeriodsToBeInOrder(MulticolumnMapExpectation):
    """``column_list`` is ``[record, period number, start, end]``: the periods of one record, in number
    order, do not overlap: each starts after the one before ended."""

    ignore_row_if: Literal["all_values_are_missing", "any_value_is_missing", "never"] = "never"

    map_metric = "multicolumn_values.censustrace_periods_in_order"
    success_keys = ("mostly",)
    args_keys = ("column_list",)

    @pydantic.validator("column_list")
    def _four_columns(cls, value: list[str]) -> list[str]:
        if len(value) != 4:
            raise ValueError("column_list must be [record, period number, start, end]")
        return value


#: Suite type name -> class, for the suite loader (GX registers them by the same names).
CUSTOM_EXPECTATIONS: Final[dict[str, type]] = {
    "expect_column_values_to_be_valid_upn": ExpectColumnValuesToBeValidUpn,
    "expect_column_values_to_be_permanent_upn": ExpectColumnValuesToBePermanentUpn,
    "expect_column_values_to_be_valid_uln": ExpectColumnValuesToBeValidUln,
    "expect_column_values_to_be_first_occurrences": ExpectColumnValuesToBeFirstOccurrences,
    "expect_item_to_be_present": ExpectItemToBePresent,
    "expect_dob_to_be_plausible_for_nc_year": ExpectDobToBePlausibleForNcYear,
    "expect_periods_to_be_in_order": ExpectPeriodsToBeInOrder,
}
