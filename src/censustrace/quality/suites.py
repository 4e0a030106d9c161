"""Load the expectation suites from ``expectations/`` strictly, once per process.

The suites are GX Core 1.x JSON files in ``<expectations_dir>/suites/`` (the expectations store of the
file data context rooted at ``expectations_dir``; see docs/data-quality.md). GX itself logs and DROPS
an expectation it cannot build when it loads a suite; here every entry is checked and built one by one,
and any problem stops the load with a :class:`SuiteError` naming the file and the entry:

* the file is not JSON, or not a suite object (``CT-DQ-SUITE-JSON``);
* an entry names an expectation type GX does not know (``CT-DQ-SUITE-TYPE``);
* an entry's kwargs are not valid for its type (``CT-DQ-SUITE-ENTRY``);
* an entry lacks ``meta.severity`` (``critical`` | ``warning``) or a stable ``meta.code``
  (``CT-DQ-...``, unique over all suites), or its GX ``severity`` disagrees (``CT-DQ-SUITE-META``);
* a ``{"$PARAMETER": name}`` names neither a census code set (``codes_<NAME>``: the set
  ``censustrace.census.codes.<NAME>``) nor a value the run supplies (``rows_read``)
  (``CT-DQ-SUITE-PARAMETER``);
* the suite's ``meta.censustrace`` (table, row key, critical share) is missing or malformed.

Suites are read again only when a file under ``suites/`` changes (size or mtime).
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from censustrace.census import codes
from censustrace.errors import CensustraceError

SUITES_FOLDER: Final = "suites"
CRITICAL: Final = "critical"
WARNING: Final = "warning"
SEVERITIES: Final = (CRITICAL, WARNING)
#: Share of a suite's rows that may fail critical expectations before the whole extract is quarantined.
DEFAULT_MAX_CRITICAL_SHARE: Final = 0.05
#: Values a validation run supplies as suite parameters.
RUN_PARAMETERS: Final = frozenset({"rows_read"})
CODE_SET_PREFIX: Final = "codes_"
#: The column of every frame that says whether the parse rule already rejected the record.
PARSE_REJECTED: Final = "parse_rejected"
_CODE: Final = re.compile(r"^CT-DQ-[A-Z0-9]+(?:-[A-Z0-9]+)*(?::[a-z_]+)?$")
_TABLES: Final = ("staged_pupil", "staged_pupil_address", "staged_fsm_period")


class SuiteError(CensustraceError):
    """A suite file is unusable. Raised at load time, before any data is validated."""

    code = "CT-DQ-SUITE"


@dataclass(frozen=True, slots=True)
class ExpectationSpec:
    """One expectation of a suite, as declared (no data)."""

    index: int  # position in the file, from 1
    type: str
    kwargs: Mapping[str, Any]
    severity: str
    code: str
    description: str
    fault: str | None  # the generator fault it is meant to catch, if any

    @property
    def columns(self) -> tuple[str, ...]:
        """Columns the expectation reads (empty for a table-level expectation)."""
        kwargs = self.kwargs
        if "column" in kwargs:
            return (str(kwargs["column"]),)
        if "column_A" in kwargs:
            return (str(kwargs["column_A"]), str(kwargs["column_B"]))
        if "column_list" in kwargs:
            return tuple(str(c) for c in kwargs["column_list"])
        return ()

    @property
    def column(self) -> str | None:
        """The column the expectation is about: the judged one (``column_B`` of a pair, whose
        ``column_A`` is the bound; the first of a column list)."""
        kwargs = self.kwargs
        if "column" in kwargs:
            return str(kwargs["column"])
        if "column_B" in kwargs:
            return str(kwargs["column_B"] if kwargs.get("column_A") in _BOUNDS else kwargs["column_A"])
        if "column_list" in kwargs:
            return str(kwargs["column_list"][0])
        return None

    @property
    def table_level(self) -> bool:
        return not self.columns

    @property
    def name(self) -> str:
        """``type(columns)``: readable and unique within a suite (codes are unique too)."""
        return f"{self.type}({', '.join(self.columns)})"


# Pair expectations whose column_A is a fixed bound (the census day), not the judged value.
_BOUNDS: Final = frozenset({"reference_date"})


@dataclass(frozen=True, slots=True)
class SuiteSpec:
    """One suite: its name (the canonical table), the staging table it reads, the row key reported for
    failed rows, the critical share above which the extract is quarantined, and its expectations."""

    name: str
    path: Path
    table: str
    row_key: tuple[str, ...]
    max_critical_share: float
    expectations: tuple[ExpectationSpec, ...]
    gx_suite: Any = field(compare=False, repr=False)  # great_expectations.ExpectationSuite

    def columns(self) -> tuple[str, ...]:
        """Every column the suite reads, row key first, in first-use order."""
        seen = dict.fromkeys(self.row_key)
        for spec in self.expectations:
            seen.update(dict.fromkeys(spec.columns))
            seen.update(dict.fromkeys(_condition_columns(spec.kwargs.get("row_condition"))))
        return tuple(seen)

    def parameters(self) -> tuple[str, ...]:
        names: set[str] = set()
        for spec in self.expectations:
            names.update(_parameter_names(spec.kwargs))
        return tuple(sorted(names))

    def by_code(self, code: str) -> ExpectationSpec:
        return next(e for e in self.expectations if e.code == code)


@dataclass(frozen=True, slots=True)
class Suites:
    folder: Path
    suites: tuple[SuiteSpec, ...]

    def __iter__(self) -> Iterator[SuiteSpec]:
        return iter(self.suites)

    def __getitem__(self, name: str) -> SuiteSpec:
        for suite in self.suites:
            if suite.name == name:
                return suite
        raise KeyError(name)

    def code_set_parameters(self) -> dict[str, list[str]]:
        """The census code sets the suites refer to, as suite parameter values."""
        wanted = {p for s in self.suites for p in s.parameters() if p.startswith(CODE_SET_PREFIX)}
        return {name: sorted(_code_set(name)) for name in sorted(wanted)}


def suite_files(folder: Path) -> list[Path]:
    return sorted((folder / SUITES_FOLDER).glob("*.json"))


_cache: dict[Path, tuple[tuple[tuple[str, int, int], ...], Suites]] = {}
_lock = threading.Lock()


def load_suites(folder: Path) -> Suites:
    """Every suite in ``folder/suites``, checked and built; cached until a file changes."""
    folder = folder.resolve()
    files = suite_files(folder)
    stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in files)
    with _lock:
        cached = _cache.get(folder)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if not files:
            raise SuiteError(f"{folder / SUITES_FOLDER}: no suite files (*.json)", code="CT-DQ-SUITE-JSON")
        import censustrace.quality.expectations  # noqa: F401  (registers the custom expectation types)

        # Canonical table order (pupil first: its Data Docs page is the one a task links to).
        suites = tuple(
            sorted((_load_suite(path) for path in files), key=lambda s: (_TABLES.index(s.table), s.name))
        )
        _check_unique_codes(suites)
        loaded = Suites(folder, suites)
        _cache[folder] = (stamp, loaded)
        return loaded


def _load_suite(path: Path) -> SuiteSpec:
    import great_expectations as gx

    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise SuiteError(f"{path}: not UTF-8 text ({exc.reason})", code="CT-DQ-SUITE-JSON") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            code="CT-DQ-SUITE-JSON",
        ) from None
    if not isinstance(document, dict) or not isinstance(document.get("expectations"), list):
        raise SuiteError(
            f"{path}: not a suite (an object with an 'expectations' list)", code="CT-DQ-SUITE-JSON"
        )
    name = document.get("name")
    if name != path.stem:
        raise SuiteError(
            f"{path}: suite name {name!r} must be the file name {path.stem!r}", code="CT-DQ-SUITE-JSON"
        )
    settings = _suite_settings(path, document.get("meta"))
    specs, built = [], []
    for index, entry in enumerate(document["expectations"], start=1):
        spec, expectation = _load_entry(path, index, entry)
        specs.append(spec)
        built.append(expectation)
    gx_suite = gx.ExpectationSuite(name=name, expectations=built, meta=document.get("meta"))
    if len(gx_suite.expectations) != len(built):  # GX drops what it cannot add: never silently
        raise SuiteError(
            f"{path}: GX dropped expectations while building the suite", code="CT-DQ-SUITE-ENTRY"
        )
    return SuiteSpec(
        name=name,
        path=path,
        table=settings["table"],
        row_key=tuple(settings["row_key"]),
        max_critical_share=float(settings["max_critical_share"]),
        expectations=tuple(specs),
        gx_suite=gx_suite,
    )


def _suite_settings(path: Path, meta: object) -> dict[str, Any]:
    ours = meta.get("censustrace") if isinstance(meta, dict) else None
    where = f"{path}: meta.censustrace"
    if not isinstance(ours, dict):
        raise SuiteError(f"{where} is missing (table, row_key, max_critical_share)", code="CT-DQ-SUITE-META")
    table = ours.get("table")
    if table not in _TABLES:
        raise SuiteError(f"{where}.table must be one of {', '.join(_TABLES)}", code="CT-DQ-SUITE-META")
    row_key = ours.get("row_key", ["record_number"])
    if not (isinstance(row_key, list) and row_key and row_key[0] == "record_number"):
        raise SuiteError(
            f"{where}.row_key must be a list starting with record_number", code="CT-DQ-SUITE-META"
        )
    share = ours.get("max_critical_share", DEFAULT_MAX_CRITICAL_SHARE)
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        raise SuiteError(f"{where}.max_critical_share must be a number from 0 to 1", code="CT-DQ-SUITE-META")
    return {"table": table, "row_key": row_key, "max_critical_share": share}


def _load_entry(path: Path, index: int, entry: object) -> tuple[ExpectationSpec, Any]:
    from great_expectations.exceptions.exceptions import (
        ExpectationNotFoundError,
        InvalidExpectationConfigurationError,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.expectations.registry import get_expectation_impl

    where = f"{path}: expectation {index}"
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise SuiteError(f"{where}: not an object with a 'type'", code="CT-DQ-SUITE-ENTRY")
    type_ = entry["type"]
    where = f"{where} ({type_})"
    try:
        get_expectation_impl(type_)
    except ExpectationNotFoundError:
        raise SuiteError(f"{where}: unknown expectation type", code="CT-DQ-SUITE-TYPE") from None
    kwargs = entry.get("kwargs", {})
    meta = entry.get("meta")
    if not isinstance(kwargs, dict):
        raise SuiteError(f"{where}: kwargs must be an object", code="CT-DQ-SUITE-ENTRY")
    if not isinstance(meta, dict):
        raise SuiteError(f"{where}: meta (severity, code) is missing", code="CT-DQ-SUITE-META")
    severity, code = meta.get("severity"), meta.get("code")
    if severity not in SEVERITIES:
        raise SuiteError(f"{where}: meta.severity must be critical or warning", code="CT-DQ-SUITE-META")
    if entry.get("severity", severity) != severity:
        raise SuiteError(f"{where}: severity and meta.severity disagree", code="CT-DQ-SUITE-META")
    if not isinstance(code, str) or not _CODE.match(code):
        raise SuiteError(
            f"{where}: meta.code must be a stable code like CT-DQ-UPN-CHECK or CT-DQ-MISSING:dob",
            code="CT-DQ-SUITE-META",
        )
    fault = meta.get("fault")
    if fault is not None and not isinstance(fault, str):
        raise SuiteError(f"{where}: meta.fault must be a generator fault name", code="CT-DQ-SUITE-META")
    description = entry.get("description") or meta.get("description")
    if not isinstance(description, str) or not description:
        raise SuiteError(f"{where}: a description is required", code="CT-DQ-SUITE-META")
    for name in _parameter_names(kwargs):
        if name not in RUN_PARAMETERS and not (name.startswith(CODE_SET_PREFIX) and _is_code_set(name)):
            raise SuiteError(
                f"{where}: unknown suite parameter {name!r} (census code sets are codes_<NAME>; run values: "
                f"{', '.join(sorted(RUN_PARAMETERS))})",
                code="CT-DQ-SUITE-PARAMETER",
            )
    try:
        configuration = ExpectationConfiguration(
            type=type_,
            kwargs=dict(kwargs),
            meta=dict(meta),
            description=description,
            severity=severity,
            id=entry.get("id"),
        )
        expectation = configuration.to_domain_obj()
    except (InvalidExpectationConfigurationError, ValueError, TypeError) as exc:
        message = " ".join(str(getattr(exc, "message", exc)).split())[:500]
        raise SuiteError(f"{where}: invalid configuration: {message}", code="CT-DQ-SUITE-ENTRY") from None
    spec = ExpectationSpec(
        index=index,
        type=type_,
        kwargs=dict(kwargs),
        severity=severity,
        code=code,
        description=description,
        fault=fault,
    )
    return spec, expectation


def _check_unique_codes(suites: tuple[SuiteSpec, ...]) -> None:
    seen: dict[str, Path] = {}
    for suite in suites:
        for spec in suite.expectations:
            if spec.code in seen:
                raise SuiteError(
                    f"{suite.path}: expectation {spec.index} ({spec.type}): code {spec.code} is also used in "
                    f"{seen[spec.code].name}; codes must be unique",
                    code="CT-DQ-SUITE-META",
                )
            seen[spec.code] = suite.path


def _parameter_names(value: object) -> Iterator[str]:
    if isinstance(value, dict):
        if set(value) == {"$PARAMETER"} and isinstance(value["$PARAMETER"], str):
            yield value["$PARAMETER"]
            return
        for item in value.values():
            yield from _parameter_names(item)
    elif isinstance(value, list):
        for item in value:
            yield from _parameter_names(item)


def _condition_columns(condition: object) -> Iterator[str]:
    """Columns named by a GX row condition in its JSON form."""
    if isinstance(condition, dict):
        column = condition.get("column")
        if isinstance(column, dict) and isinstance(column.get("name"), str):
            yield column["name"]
        for item in condition.get("conditions") or []:  # and / or groups
            yield from _condition_columns(item)


def _is_code_set(name: str) -> bool:
    value = getattr(codes, name.removeprefix(CODE_SET_PREFIX), None)
    return isinstance(value, frozenset | dict)


def _code_set(name: str) -> frozenset[str]:
    value = getattr(codes, name.removeprefix(CODE_SET_PREFIX))
    return frozenset(value)


__all__ = [
    "CRITICAL",
    "DEFAULT_MAX_CRITICAL_SHARE",
    "PARSE_REJECTED",
    "SEVERITIES",
    "WARNING",
    "ExpectationSpec",
    "SuiteError",
    "SuiteSpec",
    "Suites",
    "load_suites",
    "suite_files",
]
