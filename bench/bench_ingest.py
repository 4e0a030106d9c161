"""Census ingest throughput, end to end, against a naive baseline measured in the same run.

Run: ``.venv/bin/python bench/bench_ingest.py [--pupils 10000,100000,1000000] [--backends sqlite,postgres]
[--workers 1,2] [--quick] [--json out.json] [--keep DIR]``

The data: ``--pupils`` pupils of one LA's School Census XML from the project's generator, 5,000 pupils per
school file (20 files for 100,000), no faults. The ``--one-file`` set is also read as one file holding all
its pupils (memory must not grow with the file), and the ``--national-shape`` set also as files of 450
pupils (a national census is about 9 million pupils in about 20,000 files, so per-file costs count).

Each measurement runs in a fresh subprocess (so peak memory is its own), with ``--workers`` worker
processes (``multiprocessing``, fork, one file per task: files are independent, as the Airflow DAG maps
one task per file and LocalExecutor runs two at a time). The clock starts once the workers have imported
everything and opened their engine, so it measures steady throughput, not interpreter start-up (an
Airflow task process pays that once per file on top).

* ``parse``: ``parse_extract(file).rows()`` read to the end (the streaming reader, as ``stage`` uses it).
* ``ingest``: ``censustrace.intake.ingest.ingest_file`` per landed file: receive (copy into the archive,
  sha256, fsync, receipt), register (header, registry row), stage (parse, pupil keys, staging tables),
  publish (copy into ``pupil``/``pupil_address``/``fsm_period``, supersession, empty staging), with the
  lineage each step builds. Validation is not built yet and is not in it. Each run starts from an empty
  warehouse (a new SQLite file, or a new PostgreSQL database) with the files already in the landing
  folder; afterwards the loaded row counts are checked.
* ``naive``: the baseline, one process: for each file, copy it into an archive folder and sha256 it,
  ``pandas.read_xml`` with one XPath per section of ``PupilOnRoll`` (identifiers, characteristics,
  status, SEN, address, UPRN; sections matched up by position), FSM periods with an lxml loop (``read_xml``
  cannot tie a repeated group to its pupil), then SQLAlchemy ORM objects for the extract, pupils, addresses
  and FSM periods (same HMAC pupil key), all in one session, committed at the end. It writes the same
  final tables (no staging, no registry bookkeeping, no lineage) and skips the nested lists (nationality,
  SEN needs).

Reported per run: wall time and pupils/s; the CPU seconds of our processes (client: the run's own process
tree) and, on PostgreSQL, of the server backends of the run's database, both over the timed window;
the CPU used meanwhile by everything else on the machine (other users' jobs); peak RSS of the run's
largest process (``VmHWM``, the whole interpreter with its imports, not only the growth; ``ru_maxrss``
would also count the benchmark's own memory from before ``exec``).

PostgreSQL: throwaway databases ``censustrace_bench_<random>`` on ``--postgres-url`` (dropped at the end).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from importlib import metadata
from pathlib import Path
from typing import Any

Json = dict[str, Any]
PER_FILE = 5000
NATIONAL_PER_FILE = 450  # a national census: about 9 million pupils in about 20,000 school files
PUPIL_KEY_SECRET = "bench-pupil-key-secret"
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- data ---------------------------------------------------------------------------------------------


def dataset(work: Path, pupils: int, per_file: int = PER_FILE) -> tuple[list[Path], int]:
    """``pupils`` pupils as School Census XML files of ``per_file`` (generated once, kept in ``work``)."""
    from censustrace.census.generator import GeneratorOptions, generate

    folder = work / (f"xml-{pupils}" if per_file == PER_FILE else f"xml-{pupils}-by-{per_file}")
    manifest = folder / "manifest.json"
    if not manifest.exists():
        schools = max(1, pupils // per_file)
        started = time.perf_counter()
        options = GeneratorOptions(
            out=folder, schools=schools, pupils_per_school=min(pupils, per_file), fmt="xml", seed=11
        )
        generate(options)
        print(f"  generated {pupils:,} pupils in {time.perf_counter() - started:.0f} s", flush=True)
    files = json.loads(manifest.read_text())["files"]
    return [folder / f["file"] for f in files], sum(f["pupils"] for f in files)


def stitch(files: list[Path], target: Path) -> Path:
    """One census XML with every pupil of ``files`` under the first file's header (as bench_parsers)."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as fh:
        for n, path in enumerate(files):
            text = path.read_text(encoding="utf-8")
            start, end = text.index("<Pupils>\n") + len("<Pupils>\n"), text.index("  </Pupils>")
            if n == 0:
                fh.write(text[:start])
            fh.write(text[start:end])
        fh.write("  </Pupils>\n</Message>\n")
    return target


# --- inside a measurement's subprocess -------------------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _parse_one(path: str) -> tuple[int, str, int]:
    from censustrace.census.formats import parse_extract

    extract = parse_extract(Path(path))
    # rows() is what stage reads; records() on a checkout from before rows() existed.
    pupils = sum(1 for _ in (extract.rows() if hasattr(extract, "rows") else extract.records()))
    return pupils, "parsed", _status_kib("VmHWM")


def _ingest_one(path: str) -> tuple[int, str, int]:
    from censustrace.config import get_settings
    from censustrace.intake.ingest import ingest_file

    outcome = ingest_file(Path(path), get_settings())
    return outcome.rows.loaded, outcome.status, _status_kib("VmHWM")


def _warm(kind: str) -> None:
    """Import what a task needs and open the warehouse engine, before the clock starts."""
    import censustrace.census.formats  # noqa: F401

    if kind == "ingest":
        from censustrace.config import get_settings
        from censustrace.warehouse.db import warehouse_engine

        with warehouse_engine(get_settings().warehouse_db_url).connect():
            pass


def _ready(_: int) -> int:
    time.sleep(0.2)  # long enough that every worker takes one
    return os.getpid()


def _mark(name: str) -> None:
    """Tell the parent (which then reads the CPU counters of our processes) and wait until it has."""
    print(name, flush=True)
    sys.stdin.readline()


def _timed(kind: str, files: list[str], workers: int) -> tuple[float, list[tuple[int, str, int]]]:
    ctx = multiprocessing.get_context("fork")
    task = _parse_one if kind == "parse" else _ingest_one
    with ctx.Pool(workers, initializer=_warm, initargs=(kind,)) as pool:
        pool.map(_ready, range(workers), chunksize=1)
        _mark("START")
        started = time.perf_counter()
        results = pool.map(task, files, chunksize=1)
        seconds = time.perf_counter() - started
        _mark("END")
        pool.close()
        pool.join()
    return seconds, results


def _peak_mib(results: list[tuple[int, str, int]]) -> float:
    """The largest resident high-water mark of this process and its workers (VmHWM: since exec)."""
    return max([_status_kib("VmHWM"), *(hwm for _, _, hwm in results)]) / 1024


def child_parse(spec: Json) -> Json:
    seconds, results = _timed("parse", spec["files"], spec["workers"])
    pupils = sum(n for n, _, _ in results)
    assert pupils == spec["expect"], (pupils, spec["expect"])
    return {"pupils": pupils, "seconds": seconds, "peak_mib": _peak_mib(results)}


def child_ingest(spec: Json) -> Json:
    from sqlalchemy import func, select

    from censustrace.config import get_settings
    from censustrace.warehouse.db import dispose_engines, warehouse_engine
    from censustrace.warehouse.tables import LOADED, extracts, pupil

    settings = get_settings()
    settings.ensure_dirs()
    warehouse_engine(settings.warehouse_db_url)  # migrated before the clock starts
    dispose_engines()  # no connection crosses the fork
    landed = []
    for path in map(Path, spec["files"]):
        shutil.copyfile(path, settings.landing_dir / path.name)
        landed.append(str(settings.landing_dir / path.name))
    seconds, results = _timed("ingest", landed, spec["workers"])
    loaded = sum(n for n, _, _ in results)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        in_table = conn.execute(select(func.count()).select_from(pupil)).scalar_one()
        statuses = set(conn.execute(select(extracts.c.status)).scalars())
    dispose_engines()
    assert {status for _, status, _ in results} == {LOADED} == statuses, (statuses, results[:3])
    assert loaded == in_table == spec["expect"], (loaded, in_table, spec["expect"])
    return {"pupils": loaded, "seconds": seconds, "peak_mib": _peak_mib(results)}


def child_naive(spec: Json) -> Json:
    from sqlalchemy import create_engine

    engine = create_engine(spec["url"])
    _mark("START")
    started = time.perf_counter()
    pupils = naive_ingest([Path(f) for f in spec["files"]], engine, Path(spec["home"]))
    seconds = time.perf_counter() - started
    _mark("END")  # before the connection closes, so that its server process is still there to count
    engine.dispose()
    assert pupils == spec["expect"], (pupils, spec["expect"])
    return {"pupils": pupils, "seconds": seconds, "peak_mib": _status_kib("VmHWM") / 1024}


# --- the naive baseline ------------------------------------------------------------------------------

_PUPIL = "/Message/Pupils/PupilOnRoll/"
# section XPath -> {column in the frame: warehouse column}
_SECTIONS = {
    "PupilIdentifiers": {
        "UPN": "upn",
        "FormerUPN": "former_upn",
        "UniqueLearnerNumber": "uln",
        "Surname": "surname",
        "Forename": "forename",
        "MiddleNames": "middle_names",
        "PreferredSurname": "preferred_surname",
        "FormerSurname": "former_surname",
        "DOB": "dob",
        "Sex": "sex",
    },
    "PupilCharacteristics": {
        "Ethnicity": "ethnicity",
        "Language": "language",
        "ServiceChild": "service_child",
        "CountryOfBirth": "country_of_birth",
    },
    "PupilStatus": {
        "EntryDate": "entry_date",
        "EnrolStatus": "enrol_status",
        "NCyearActual": "nc_year",
        "Boarder": "boarder",
        "PartTime": "part_time",
        "YSSA": "yssa",
        "TopUpFunding": "top_up_funding",
    },
    "SpecialEducationalNeeds": {"SENprovision": "sen_provision"},
    "HomeInformation/Address/BS7666Address": {
        "SAON": "saon",
        "PAON": "paon",
        "Street": "street",
        "Locality": "locality",
        "Town": "town",
        "AdministrativeArea": "administrative_area",
        "PostTown": "post_town",
        "PostCode": "postcode",
    },
    "HomeInformation/Address": {"UniquePropertyReferenceNumber": "uprn"},
}
_DATES = ("dob", "entry_date")
_BOOLS = ("boarder", "part_time", "top_up_funding")
_ADDRESS = (
    "saon",
    "paon",
    "street",
    "locality",
    "town",
    "administrative_area",
    "post_town",
    "postcode",
    "uprn",
)


def naive_ingest(files: list[Path], engine: Any, home: Path) -> int:
    import pandas as pd
    from lxml import etree
    from sqlalchemy.orm import DeclarativeBase, Session, relationship

    from censustrace.intake.stage import pupil_key
    from censustrace.warehouse.tables import extracts, fsm_period, pupil, pupil_address

    class Base(DeclarativeBase):
        pass

    class Extract(Base):
        __table__ = extracts

    class Address(Base):
        __table__ = pupil_address

    class FsmPeriod(Base):
        __table__ = fsm_period

    class Pupil(Base):
        __table__ = pupil
        extract = relationship(Extract)
        address = relationship(Address, uselist=False)
        fsm_periods = relationship(FsmPeriod)

    def value(v: Any) -> Any:
        return None if v is None or (isinstance(v, float) and v != v) else v  # NaN: absent

    secret = PUPIL_KEY_SECRET.encode()
    archive = home / "naive-archive"
    archive.mkdir(parents=True, exist_ok=True)
    total = 0
    with Session(engine) as session:
        for path in files:
            copy = archive / path.name
            shutil.copyfile(path, copy)
            sha256 = hashlib.sha256(copy.read_bytes()).hexdigest()
            header = pd.read_xml(path, xpath="/Message/Header/*", dtype=str).iloc[:, :].to_dict("records")
            details, source = header[0], header[1]
            extract_id = f"ext_{sha256[:20]}"
            term, year = details["Term"], int(details["Year"])
            reference_date = dt.date.fromisoformat(details["ReferenceDate"])
            laestab = source["LEA"] + source["Estab"]
            extract = Extract(
                extract_id=extract_id,
                sha256=sha256,
                size=path.stat().st_size,
                original_name=path.name,
                received_at=dt.datetime.now(dt.UTC),
                format="school_census_xml",
                la=source["LEA"],
                estab=source["Estab"],
                laestab=laestab,
                urn=source["URN"],
                term=term,
                year=year,
                reference_date=reference_date,
                status="loaded",
                reasons=[],
            )
            session.add(extract)
            frames = [pd.read_xml(path, xpath=_PUPIL + section, dtype=str) for section in _SECTIONS]
            assert len({len(f) for f in frames}) == 1, "a section missing for some pupil"
            rows = [{} for _ in range(len(frames[0]))]
            for frame, names in zip(frames, _SECTIONS.values(), strict=True):
                for column, name in names.items():
                    if column in frame:
                        for row, v in zip(rows, frame[column].tolist(), strict=True):
                            row[name] = value(v)
            pupils = []
            for number, row in enumerate(rows, 1):
                address = {name: row.pop(name, None) for name in _ADDRESS}
                for name in _DATES:
                    row[name] = dt.date.fromisoformat(row[name]) if row.get(name) else None
                for name in _BOOLS:
                    row[name] = None if row.get(name) is None else row[name] == "true"
                one = Pupil(
                    extract=extract,
                    record_number=number,
                    pupil_key=pupil_key(secret, row["upn"]),
                    laestab=laestab,
                    urn=source["URN"],
                    census_term=term,
                    census_year=year,
                    reference_date=reference_date,
                    **row,
                )
                if any(address.values()):
                    one.address = Address(**address)
                pupils.append(one)
                session.add(one)
            tree = etree.parse(str(path))
            for one, element in zip(pupils, tree.iterfind("Pupils/PupilOnRoll"), strict=True):
                for period_number, period in enumerate(element.iterfind("FSMperiods/FSMperiod"), 1):
                    end = period.findtext("FSMendDate")
                    one.fsm_periods.append(
                        FsmPeriod(
                            period_number=period_number,
                            start_date=dt.date.fromisoformat(period.findtext("FSMstartDate") or ""),
                            end_date=dt.date.fromisoformat(end) if end else None,
                            uk_country=period.findtext("UKcountry"),
                        )
                    )
            total += len(rows)
        session.commit()
    return total


# --- the parent: one subprocess per measurement ------------------------------------------------------


def _proc_table() -> dict[int, tuple[int, str, float]]:
    """pid -> (parent pid, command line, CPU seconds so far) for every process we can read."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        table[int(entry.name)] = (int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return table


def _machine_busy() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / CLK_TCK


class _Window:
    """CPU of the run's processes, of its PostgreSQL backends and of the whole machine between the
    child's START and END lines."""

    def __init__(self, root: int, database: str | None) -> None:
        self.root, self.database = root, database
        self.marks: dict[str, tuple[float, dict[int, tuple[int, str, float]]]] = {}

    def mark(self, name: str) -> None:
        self.marks[name] = (_machine_busy(), _proc_table())

    def _ours(self, table: dict[int, tuple[int, str, float]]) -> tuple[dict[int, float], dict[int, float]]:
        client, server = {}, {}
        for pid, (_, cmdline, cpu) in table.items():
            chain, seen = pid, set()
            while chain in table and chain not in seen and chain != self.root:
                seen.add(chain)
                chain = table[chain][0]
            if chain == self.root:
                client[pid] = cpu
            elif self.database and cmdline.startswith("postgres:") and f" {self.database} " in cmdline:
                server[pid] = cpu
        return client, server

    def result(self) -> Json:
        (busy0, t0), (busy1, t1) = self.marks["START"], self.marks["END"]
        c0, s0 = self._ours(t0)
        c1, s1 = self._ours(t1)
        client = sum(cpu - c0.get(pid, 0.0) for pid, cpu in c1.items())
        server = sum(cpu - s0.get(pid, 0.0) for pid, cpu in s1.items())
        return {"client_cpu": client, "server_cpu": server, "machine_busy": busy1 - busy0}


def run_child(kind: str, spec: Json, env: dict[str, str], database: str | None = None) -> Json:
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, json.dumps(spec)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    window = _Window(child.pid, database)
    assert child.stdout is not None
    assert child.stdin is not None
    last = ""
    for line in child.stdout:
        line = line.strip()
        if line in ("START", "END"):
            window.mark(line)
            child.stdin.write("\n")
            child.stdin.flush()
        elif line:
            last = line
    child.stdin.close()
    if child.wait() != 0:
        raise RuntimeError(f"{kind} run failed ({child.returncode})")
    result = dict(json.loads(last))
    result.update(window.result())
    return result


class Postgres:
    """New empty databases on the server, dropped on close."""

    def __init__(self, url: str, stack: ExitStack) -> None:
        from sqlalchemy import create_engine

        self.admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
        stack.callback(self.admin.dispose)
        self.stack = stack

    def version(self) -> str:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def new(self) -> tuple[str, str]:
        from sqlalchemy import text

        name = f"censustrace_bench_{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.stack.callback(self.drop, name)
        return name, self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, name: str) -> None:
        from sqlalchemy import text

        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def machine(work: Path, postgres: str | None) -> Json:
    import lxml.etree

    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    mounts = [ln.split() for ln in Path("/proc/mounts").read_text().splitlines()]
    fs = max((m for m in mounts if str(work.resolve()).startswith(m[1])), key=lambda m: len(m[1]))[2]
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "os": platform.platform(),
        "work_filesystem": fs,
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgresql": postgres,
        "lxml": ".".join(map(str, lxml.etree.LXML_VERSION[:3])),
        "libxml2": ".".join(map(str, lxml.etree.LIBXML_VERSION)),
        "packages": {
            name: metadata.version(name) for name in ("SQLAlchemy", "psycopg2-binary", "pandas", "alembic")
        },
        "load_average_at_start": os.getloadavg(),
    }


def plan(args: argparse.Namespace) -> Iterator[tuple[int, str, str, int]]:
    """(pupils, backend or "-", method, workers) in the order they are run."""
    for pupils in args.pupils:
        for workers in args.workers:
            yield pupils, "-", "parse", workers
        for backend in args.backends:
            for workers in args.workers:
                yield pupils, backend, "ingest", workers
            if args.naive and pupils <= args.naive_max:
                yield pupils, backend, "naive", 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ints = lambda text: [int(v) for v in text.split(",")]  # noqa: E731
    parser.add_argument(
        "--pupils", type=ints, default=[10_000, 100_000, 1_000_000], help="set sizes, comma separated"
    )
    parser.add_argument(
        "--backends", type=lambda t: t.split(","), default=["sqlite", "postgres"], help="sqlite,postgres"
    )
    parser.add_argument("--workers", type=ints, default=[1, 2], help="worker processes to try, e.g. 1,2")
    parser.add_argument("--quick", action="store_true", help="10,000 pupils only (a smoke run)")
    parser.add_argument("--no-naive", dest="naive", action="store_false", help="skip the naive baseline")
    parser.add_argument(
        "--naive-max", type=int, default=100_000, help="largest set the naive baseline is run on"
    )
    parser.add_argument("--one-file", type=int, default=100_000, help="also ingest this set as one file")
    parser.add_argument(
        "--national-shape",
        type=int,
        default=100_000,
        help=f"also ingest this many pupils in files of {NATIONAL_PER_FILE} (9 million in 20,000 files)",
    )
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CENSUSTRACE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this folder")
    parser.add_argument("--json", type=Path, help="write every result here")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, spec = args.child[0], json.loads(args.child[1])
        print(json.dumps({"parse": child_parse, "ingest": child_ingest, "naive": child_naive}[kind](spec)))
        return
    if args.quick:
        args.pupils = [10_000]

    work = args.keep or Path(tempfile.mkdtemp(prefix="censustrace-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: list[Json] = []
    with ExitStack() as stack:
        if args.keep is None:
            stack.callback(shutil.rmtree, work, True)
        postgres = Postgres(args.postgres_url, stack) if "postgres" in args.backends else None
        report: Json = {
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": machine(work, postgres.version() if postgres else None),
            "results": results,
        }
        print(json.dumps(report["machine"]), flush=True)
        sets: dict[int, list[tuple[str, list[Path], int]]] = {}
        for pupils in args.pupils:
            files, total = dataset(work, pupils)
            sets[pupils] = [(f"{len(files)} × {total // len(files):,}", files, total)]
            if pupils == args.one_file and len(files) > 1:
                big = stitch(files, work / f"xml-{pupils}-one" / "SC_330_9999_AUT_2026.xml")
                sets[pupils].append((f"1 × {total:,}", [big], total))
            if pupils == args.national_shape:
                small, in_small = dataset(work, pupils, NATIONAL_PER_FILE)
                sets[pupils].append((f"{len(small)} × {NATIONAL_PER_FILE}", small, in_small))
        for pupils, backend, method, workers in plan(args):
            for n, (label, files, total) in enumerate(sets[pupils]):
                if n > 0 and (method == "naive" or (len(files) == 1 and workers != 1)):
                    continue  # the naive baseline on the main set only; one file keeps one worker busy
                run = measure(pupils, total, backend, method, workers, label, files, work, postgres)
                results.append(run)
                if args.json:
                    args.json.write_text(json.dumps(report, indent=2))
        report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        if args.json:
            args.json.write_text(json.dumps(report, indent=2))
    print()
    print(markdown(report))


def measure(
    pupils: int,
    total: int,
    backend: str,
    method: str,
    workers: int,
    label: str,
    files: list[Path],
    work: Path,
    postgres: Postgres | None,
) -> Json:
    spec: Json = {"files": [str(f) for f in files], "workers": workers, "expect": total}
    env: dict[str, str] = {}
    database = None
    home = Path(tempfile.mkdtemp(prefix="home-", dir=work))
    try:
        if method != "parse":
            if backend == "postgres":
                assert postgres is not None
                database, url = postgres.new()
            else:
                url = f"sqlite:///{home / 'warehouse.db'}"
            env = {
                "CENSUSTRACE_HOME": str(home),
                "CENSUSTRACE_WAREHOUSE_URL": url,
                "CENSUSTRACE_PUPIL_KEY_SECRET": PUPIL_KEY_SECRET,
            }
            spec.update(url=url, home=str(home))
            if method == "naive":
                from censustrace.warehouse.db import upgrade

                upgrade(url)  # the same (empty) schema; not timed
        started_load = os.getloadavg()[0]
        result = run_child(method, spec, env, database)
        if database and postgres:
            postgres.drop(database)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    result.update(
        pupils_set=pupils,
        backend=backend,
        method=method,
        workers=workers,
        files=label,
        load_average=started_load,
        rate=result["pupils"] / result["seconds"],
        other_cpus=max(0.0, result["machine_busy"] - result["client_cpu"] - result["server_cpu"])
        / result["seconds"],
    )
    print(
        f"{pupils:>9,} {backend:8} {method:6} w={workers} {label:9} {result['seconds']:8.2f} s "
        f"{result['rate']:>8,.0f} pupils/s  client {result['client_cpu']:6.1f} s  server "
        f"{result['server_cpu']:6.1f} s  others {result['other_cpus']:.2f} CPUs  "
        f"peak {result['peak_mib']:6.0f} MiB",
        flush=True,
    )
    return result


def markdown(report: Json) -> str:
    m = report["machine"]
    out = [
        f"Command: `{report['command']}`; {report['started']} to {report.get('finished', '?')}.",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['os']}, work folder on "
        f"{m['work_filesystem']}; Python {m['python']}, lxml {m['lxml']} (libxml2 {m['libxml2']}), SQLite "
        f"{m['sqlite']}, PostgreSQL {m['postgresql'] or '-'}; "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        "",
        "| pupils | files | backend | method | workers | wall s | pupils/s | vs naive | client CPU s | "
        "server CPU s | µs CPU/pupil | others' CPUs | peak RSS MiB |",
        "| ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    naive = {
        (r["pupils_set"], r["backend"], r["files"]): r["rate"]
        for r in report["results"]
        if r["method"] == "naive"
    }
    for r in report["results"]:
        base = naive.get((r["pupils_set"], r["backend"], r["files"]))  # on the same files only
        ratio = f"{r['rate'] / base:.1f}×" if base and r["method"] == "ingest" else "–"
        cpu_per_pupil = (r["client_cpu"] + r["server_cpu"]) / r["pupils"] * 1e6
        server = f"{r['server_cpu']:.1f}" if r["backend"] == "postgres" else "–"
        out.append(
            f"| {r['pupils']:,} | {r['files']} | {r['backend']} | {r['method']} | {r['workers']} | "
            f"{r['seconds']:.2f} | {r['rate']:,.0f} | {ratio} | {r['client_cpu']:.1f} | {server} | "
            f"{cpu_per_pupil:.0f} | {r['other_cpus']:.2f} | {r['peak_mib']:.0f} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
