"""Data quality validation: the full pupil suite at 100,000 and 1,000,000 pupils, and the fixed cost per
school file, for censustrace's GX set-up against the alternatives, measured in the same run.

Run: ``.venv/bin/python bench/bench_quality.py [--pupils 100000,1000000] [--files 20] [--quick]
[--json out.json] [--keep DIR]``

The data: the project's generator, one LA's census as LA CSV tables (5,000 pupils per school, no faults),
received, registered and staged into a SQLite warehouse by the real ``stage`` (reused with ``--keep``).
For the large sets the staged pupils of every school are read as ONE frame (records renumbered 1..N), so
a suite runs over 100,000 or 1,000,000 rows at once; dual registrations make about 1.3 % of UPNs repeat
across schools, so the duplicate check has real failures to list. The per-file set is ``--files``
schools of 450 pupils (a national census is about 9 million pupils in about 20,000 files).

Each measurement runs in a fresh subprocess; it reports CPU seconds of the step (``time.process_time``),
wall seconds, and the process's peak RSS (``VmHWM``) and its RSS before the step (after imports), so the
growth is visible. Paths:

* reading the frame: the staged rows through SQLAlchemy (dates as ISO text parsed by pandas in one call,
  rows turned into plain tuples before ``DataFrame.from_records``), reported apart (``read_cpu_s``,
  and the RSS it adds, ``frame_mib``).
* ``ours``: what ``validate_extract`` runs: ``censustrace.quality.engine.run_suite``: GX Core 1.24 pandas
  engine, one ephemeral context per process, a counts-only (BASIC) pass over every expectation, then a
  COMPLETE pass (record numbers, no values) for the row-level expectations that failed; the
  expectations' ``configuration`` memoised for the duration of a validation; custom expectations
  (``censustrace.quality.expectations``), mandatory items as ``expect_item_to_be_present``.
* ``plain``: the same suite as a GX user would first write it: one COMPLETE pass with
  ``unexpected_index_column_names`` and ``exclude_unexpected_values``, no memo, mandatory items as GX's
  ``expect_column_values_to_not_be_null`` with a ``row_condition`` (``parse_rejected == False``).
* ``sql``: GX's SQL engine (``SqlAlchemyExecutionEngine``) on the SQLite staging table, for the suite's
  expectations that GX can run in SQL (row counts, not-null, code sets, entry date; not the custom
  ones), one COMPLETE pass as in ``plain``; beside it ``ours-builtin``: our pandas path on the same
  expectations, so the engines are compared like for like.
* per file (``--files`` schools of 450 pupils): ``validate_extract`` called on each staged extract in
  turn in one process (read the staged rows, GX, Data Docs pages, results, registry): the first call
  (cold: imports GX, builds the context, loads the suites) and the median of the warm ones; for ``ours``
  and ``plain``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PER_SCHOOL = 5000
SECRET = "bench-pupil-key-secret"


def _vm(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


# --- data --------------------------------------------------------------------------------------------------


def _settings(home: Path) -> Any:
    from pydantic import SecretStr

    from censustrace.config import Settings

    return Settings(
        home=home, warehouse_url=f"sqlite:///{home / 'warehouse.db'}", pupil_key_secret=SecretStr(SECRET)
    )


def prepare(folder: Path, schools: int, per_school: int) -> Path:
    """Generate and stage ``schools`` CSV schools into ``folder/home`` (once: reused when present)."""
    from censustrace.census.generator import GeneratorOptions, generate
    from censustrace.intake.receive import receive
    from censustrace.intake.registry import register
    from censustrace.intake.stage import stage

    home = folder / "home"
    done = folder / "staged.ok"
    if done.exists():
        return home
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    manifest = generate(
        GeneratorOptions(
            out=folder / "census", schools=schools, pupils_per_school=per_school, fmt="csv", seed=1
        )
    )
    settings = _settings(home)
    settings.ensure_dirs()
    for entry in manifest["files"]:
        landed = settings.landing_dir / entry["file"]
        shutil.copyfile(folder / "census" / entry["file"], landed)
        receipt = receive(landed, settings)
        ready = register(receipt.archived, receipt.received_at, settings).ready
        if ready is not None:
            assert stage(ready, settings).status == "staged"
    done.write_text("ok\n")
    return home


# --- the measured steps (in a subprocess) -----------------------------------------------------------------


def _plain_suite(suite: Any) -> Any:
    """Our pupil suite as a plain GX suite: built-in not-null with a row condition for mandatory items."""
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    not_rejected = {
        "type": "comparison",
        "column": {"name": "parse_rejected"},
        "operator": "==",
        "parameter": False,
    }
    expectations = []
    for e in suite.gx_suite.expectations:
        config = e.configuration
        if config.type == "expect_item_to_be_present":
            column = config.kwargs["column_list"][0]
            config = ExpectationConfiguration(
                type="expect_column_values_to_not_be_null",
                kwargs={"column": column, "row_condition": not_rejected},
                meta=config.meta,
                severity=config.severity,
                description=config.description,
            )
        expectations.append(config.to_domain_obj())
    return gx.ExpectationSuite(name=suite.name, expectations=expectations)


_SQL_TYPES = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_table_row_count_to_equal",
        "expect_column_values_to_be_in_set",
        "expect_column_pair_values_a_to_be_greater_than_b",
    }
)


def _sql_subset(suite: Any) -> tuple[Any, Any]:
    """The expectations GX can run in SQL (mandatory items as plain not-null), as a GX suite and as a
    SuiteSpec-like object for our pandas path."""
    import dataclasses

    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    gx_expectations, specs = [], []
    for spec, e in zip(suite.expectations, suite.gx_suite.expectations, strict=True):
        config = e.configuration
        if config.type == "expect_item_to_be_present":
            config = ExpectationConfiguration(
                type="expect_column_values_to_not_be_null",
                kwargs={"column": config.kwargs["column_list"][0]},
                meta=config.meta,
                severity=config.severity,
                description=config.description,
            )
            spec = dataclasses.replace(spec, type=config.type, kwargs=config.kwargs)
        elif config.type not in _SQL_TYPES:
            continue
        gx_expectations.append(config.to_domain_obj())
        specs.append(spec)
    gx_suite = gx.ExpectationSuite(name=suite.name, expectations=gx_expectations)
    return gx_suite, dataclasses.replace(suite, expectations=tuple(specs), gx_suite=gx_suite)


def _whole_frame(settings: Any, suite: Any) -> Any:
    """Every staged pupil of the warehouse as one frame, renumbered 1..N."""
    import pandas as pd
    from sqlalchemy import Date, select

    from censustrace.quality.frames import _readable, _source
    from censustrace.warehouse.db import warehouse_engine
    from censustrace.warehouse.tables import staged_pupil

    columns = [(c, _source(staged_pupil, c)) for c in suite.columns()]
    selected = [(n, c) for n, c in columns if c is not None]
    query = select(*(_readable(c).label(n) for n, c in selected))
    query = query.order_by(staged_pupil.c.extract_id, staged_pupil.c.record_number)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = [tuple(r) for r in conn.execute(query)]
        frame = pd.DataFrame.from_records(rows, columns=[n for n, _ in selected])
    for name, column in selected:
        if isinstance(column.type, Date):
            frame[name] = pd.to_datetime(frame[name], format="%Y-%m-%d")
    frame["record_number"] = range(1, len(frame) + 1)
    frame["parse_rejected"] = False
    return frame


def run_large(case: str, home: Path) -> dict[str, Any]:
    from censustrace.quality import engine
    from censustrace.quality.suites import load_suites

    settings = _settings(home)
    suites = load_suites(settings.expectations_dir)
    pupil = suites["pupil"]
    engine.runtime()  # GX imported and the context built first, as in a warm process
    before_read = _vm("VmRSS")
    start = time.process_time()
    frame = _whole_frame(settings, pupil)
    read_cpu = time.process_time() - start
    frame_mib = round((_vm("VmRSS") - before_read) / 2**20)
    rows = len(frame)
    parameters = {"rows_read": rows, **suites.code_set_parameters()}
    base_rss = _vm("VmRSS")
    if case == "ours":
        spec = pupil
    elif case == "plain":
        import dataclasses

        spec = dataclasses.replace(pupil, gx_suite=_plain_suite(pupil))
        engine.MEMOISE_CONFIGURATIONS = False
        engine.COUNTS_FORMAT = engine.RESULT_FORMAT  # type: ignore[misc]
    elif case in ("ours-builtin", "sql"):
        gx_suite, spec = _sql_subset(pupil)
    else:
        raise SystemExit(f"unknown case {case}")
    wall, cpu = time.perf_counter(), time.process_time()
    if case == "sql":
        failed = _run_sql(settings, gx_suite, parameters)
        expectations = len(gx_suite.expectations)
    else:
        result = engine.run_suite(spec, frame, parameters)
        failed = {r.code: r.unexpected_count for r in result.results if not r.success}
        expectations = len(result.results)
    return {
        "case": case,
        "rows": rows,
        "expectations": expectations,
        "read_cpu_s": round(read_cpu, 3),
        "frame_mib": frame_mib,
        "cpu_s": round(time.process_time() - cpu, 3),
        "wall_s": round(time.perf_counter() - wall, 3),
        "rss_before_mib": round(base_rss / 2**20),
        "peak_mib": round(_vm("VmHWM") / 2**20),
        "failed": failed,
    }


def _run_sql(settings: Any, gx_suite: Any, parameters: dict[str, Any]) -> dict[str, Any]:
    from censustrace.quality import engine

    context = engine.runtime().context
    datasource = context.data_sources.add_sqlite("bench_sql", connection_string=settings.warehouse_db_url)
    asset = datasource.add_table_asset("staged_pupil", table_name="staged_pupil")
    batch = asset.add_batch_definition_whole_table("all").get_batch()
    result_format = {**engine.RESULT_FORMAT, "unexpected_index_column_names": ["extract_id", "record_number"]}
    validation = batch.validate(gx_suite, result_format=result_format, expectation_parameters=parameters)
    return {
        r.expectation_config.meta["code"]: r.result.get("unexpected_count")
        for r in validation.results
        if not r.success
    }


def run_per_file(case: str, home: Path) -> dict[str, Any]:
    start = time.perf_counter()
    cpu0 = time.process_time()
    from sqlalchemy import select

    from censustrace.warehouse.db import warehouse_engine
    from censustrace.warehouse.tables import STAGED, extracts

    settings = _settings(home)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        ids = (
            conn.execute(
                select(extracts.c.extract_id)
                .where(extracts.c.status == STAGED, extracts.c.part_of.is_(None))
                .order_by(extracts.c.id)
            )
            .scalars()
            .all()
        )
    from censustrace.quality import engine

    if case == "plain":
        import dataclasses

        import censustrace.quality.run as run_module

        loaded = run_module.load_suites(settings.expectations_dir)
        plain = dataclasses.replace(
            loaded, suites=tuple(dataclasses.replace(s, gx_suite=_plain_suite(s)) for s in loaded.suites)
        )
        run_module.load_suites = lambda folder: plain  # type: ignore[assignment]
        engine.MEMOISE_CONFIGURATIONS = False
        engine.COUNTS_FORMAT = engine.RESULT_FORMAT  # type: ignore[misc]
    from censustrace.quality.run import validate_extract

    times, cpus = [], []
    for n, extract_id in enumerate(ids):
        wall, cpu = time.perf_counter(), time.process_time()
        outcome = validate_extract(extract_id, settings)
        assert outcome.status in ("passed", "warnings", "rows_rejected"), outcome.as_dict()
        if n == 0:
            cold_wall, cold_cpu = time.perf_counter() - start, time.process_time() - cpu0
        else:
            times.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    return {
        "case": case,
        "files": len(ids),
        "cold_wall_s": round(cold_wall, 2),
        "cold_cpu_s": round(cold_cpu, 2),
        "warm_wall_ms_median": round(1000 * statistics.median(times), 1),
        "warm_cpu_ms_median": round(1000 * statistics.median(cpus), 1),
        "warm_cpu_ms_min": round(1000 * min(cpus), 1),
        "peak_mib": round(_vm("VmHWM") / 2**20),
    }


# --- driver ------------------------------------------------------------------------------------------------


def _subprocess(kind: str, case: str, home: Path) -> dict[str, Any]:
    env = {**os.environ, "CENSUSTRACE_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, __file__, "--run", kind, "--case", case, "--home", str(home)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def machine() -> dict[str, Any]:
    from importlib import metadata

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "great_expectations": metadata.version("great_expectations"),
        "pandas": metadata.version("pandas"),
        "numpy": metadata.version("numpy"),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pupils", default="100000,1000000", help="sizes of the large sets")
    parser.add_argument(
        "--files", type=int, default=20, help="school files of 450 pupils for the per-file cost"
    )
    parser.add_argument("--cases", default="ours,plain,ours-builtin,sql")
    parser.add_argument("--quick", action="store_true", help="10,000 pupils and 5 files")
    parser.add_argument("--keep", type=Path, help="keep (and reuse) the generated and staged data here")
    parser.add_argument("--json", type=Path, help="write the results here too")
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        runner = run_large if args.run == "large" else run_per_file
        print(json.dumps(runner(args.case, args.home)))
        return
    sizes = [10_000] if args.quick else [int(s) for s in args.pupils.split(",")]
    files = 5 if args.quick else args.files
    cases = args.cases.split(",")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-quality-"))
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(sys.argv),
        "large": [],
        "per_file": [],
    }
    try:
        for size in sizes:
            home = prepare(root / f"pupils-{size}", size // PER_SCHOOL, PER_SCHOOL)
            for case in cases:
                row = _subprocess("large", case, home)
                row["cpu_s_per_100k"] = round(row["cpu_s"] * 100_000 / row["rows"], 3)
                results["large"].append(row)
                print(json.dumps(row), flush=True)
        home = prepare(root / f"files-{files}x450", files, 450)
        for case in [c for c in cases if c in ("ours", "plain")]:
            row = _subprocess("per_file", case, home)
            results["per_file"].append(row)
            print(json.dumps(row), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
