"""Viewer benchmarks on PostgreSQL: the subject access lookup on a large disclosure log and the share
detail page on a large lineage store, each against a naive baseline measured in the same run.

Run: ``.venv/bin/python bench/bench_viewer.py [--quick] [--parts subject,share] [--json out.json]``

1. **Subject access** (target: p95 under 20 ms of server time). A throwaway warehouse, migrated with
   ``censustrace.warehouse.db.upgrade``, holds ``--shares`` share rows (the repository's agreements, made
   with ``agreement_values``; 98 % delivered, 2 % built but not delivered; delivered ones carry their
   release event made by the real ``release_lineage`` + ``run_event``), one ``extracts`` row per school
   (AUT 2026) for the foreign keys, ``--disclosures`` disclosure rows over about ``--pupils`` distinct pupil
   keys (64 hex digits of HMAC-SHA256; a share's pupils come from its 1-``n`` source extracts, 1 row in 10
   is a pupil already in an earlier share, 2 % carry a blank field) and consent decisions for 5 % of the
   pupils. Disclosures are COPY'd (psycopg2 ``copy_expert``, rows made on the fly) with the table's primary
   key, index and foreign keys dropped first and re-created afterwards under the same names (the schema is
   compared before and after); then ``VACUUM ANALYZE``. ``--lookups`` UPNs are timed, 3 in 4 planted in
   1-12 random shares each (every row of theirs made with the real ``pupil_key``), the rest absent:
   - *ours*: ``censustrace.compliance.subject.subject_access([upn], settings)``, the function behind
     ``POST /subject-access`` and ``POST /api/v1/disclosures/search``: wall and CPU of the call, the time
     its SQL statements spent in the driver, and PostgreSQL's own execution time for the same statements
     (replayed with ``EXPLAIN (ANALYZE)``);
   - *API*: ``POST /api/v1/disclosures/search`` through the real app (``create_viewer_app``, starlette
     ``TestClient``, an ``api`` token of a compliance user; includes auth and the access-log row), and
     ``GET /api/v1/health`` on the same client as the floor of HTTP in process;
   - *naive*: the same disclosure query replayed with ``ix_disclosures_pupil_key`` dropped inside a
     transaction that is rolled back (PostgreSQL then probes the primary key ``(share_id, pupil_key)``
     once per delivered share), for ``--naive-lookups`` of the UPNs.
   Every answer is checked: a planted pupil must come back with exactly its delivered shares.

2. **Share detail page** (target: under 200 ms). A throwaway lineage store, migrated with
   ``censustrace.lineage.store.db.upgrade``, holds ``--schools`` x ``--terms`` census extracts. The event
   shapes are real: one generated school file is ingested by the real ``ingest_file`` into the warehouse,
   and the COMPLETE event of each of its steps (receive, register, stage, validate, publish; made by
   ``run_event``) is the template. ``--schools`` copies of that file (new sha256, extract id, file name,
   LAESTAB, URN, run ids) go through ``store_events`` (batches of 50 events), then one share of the
   ``la330-statutory-return-2026`` agreement reading the ``pupil`` and ``pupil_address`` versions of every
   one of those extracts, its release event made by ``release_lineage`` + ``run_event`` and committed with
   ``commit_event`` (the share row is in the warehouse); likewise shares of the first ``--smaller``
   extracts. Storing all ``--terms`` rounds through ``store_events`` would take about 50 minutes at the
   seed rate, and ``bench_lineage.replicate`` copies rows through Python at about 4,000 rows/s (over 10
   minutes here), so the store is filled with ``--terms - 1`` renamed copies of every row made in SQL
   (``INSERT ... SELECT``) with ``replicate``'s renaming: new run ids, versions (a sha256 version becomes
   the sha256 of ``version/n``) and archive names; raw events and column lineage rows are not copied; the
   per-row foreign key triggers are skipped for the copy and every reference is checked afterwards. Each
   copy is another census round of every school, with its own shares. ``VACUUM ANALYZE`` follows. Timed:
   ``GET /shares/{id}`` of the first share through the real app, logged in as a compliance user
   (``TestClient``), ``--requests`` times after 3 warm-ups (the smaller shares ``--requests / 2`` times):
   wall, CPU of this process (client and app) and CPU of the PostgreSQL backends; a breakdown by direct
   calls (``find_share``, ``trace_upstream``, ``trace_view`` with a trivial link maker, ``column_view``);
   the page handler called directly, once under cProfile; and *naive*: ``bench_lineage.naive_trace``
   (one query per edge, version and run) on the same share, which must find the same sources.

PostgreSQL: throwaway databases ``censustrace_bench_<random>`` on ``--postgres-url`` (dropped at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib
import io
import json
import math
import os
import platform
import random
import re
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from datetime import UTC, date, datetime, timedelta
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, insert, select, text
from sqlalchemy.engine import Connection

from censustrace.config import Settings
from censustrace.consent.tables import APPLIED, consent_files
from censustrace.intake.stage import pupil_key
from censustrace.lineage.emit import run_event
from censustrace.lineage.store import db as store_db
from censustrace.lineage.store.tables import dataset_versions, facets, raw_events, run_dataset_versions, runs
from censustrace.shares.tables import BUILT, DELIVERED, shares
from censustrace.warehouse import db as warehouse_db
from censustrace.warehouse.tables import extracts

# The sibling script is loaded untyped (it is not held to strict mypy): Databases makes and drops the
# throwaway PostgreSQL databases, naive_trace is the per-edge trace baseline.
_bench_lineage: Any = importlib.import_module("bench_lineage")
Databases = _bench_lineage.Databases
naive_trace = _bench_lineage.naive_trace
DEFAULT_POSTGRES_URL: str = _bench_lineage.DEFAULT_POSTGRES_URL

Json = dict[str, Any]
LA = "330"
SECRET = "bench-viewer-pupil-key-secret"
POOL_SECRET = b"bench-viewer-pool"  # keys of pupils nobody looks up: HMAC output of an index
PASSWORD = "a long bench password 1"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
TRACED_AGREEMENT = "la330-statutory-return-2026"
BLOCKED_AGREEMENTS = ("home-office-immigration-2026", "tutoring-marketing-2026")
BASE_TIME = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
STORE_BATCH = 50
RUN_NS = uuid.UUID("5b0e5a3c-6f53-4c1b-9f0e-62656e636876")


# Small helpers -----------------------------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): the ceil(q/100 * n)-th smallest value."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def summary(values: Sequence[float], scale: float = 1e3) -> Json:
    """p50/p95/p99/max in ms (``scale`` from seconds)."""
    return {
        "n": len(values),
        "p50": percentile(values, 50) * scale,
        "p95": percentile(values, 95) * scale,
        "p99": percentile(values, 99) * scale,
        "max": max(values) * scale,
        "mean": statistics.fmean(values) * scale,
    }


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


CLK_TCK = os.sysconf("SC_CLK_TCK")


def backend_cpu(databases: Sequence[str]) -> float:
    """CPU seconds used so far by the PostgreSQL backends connected to ``databases`` (from /proc)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if not cmdline.startswith("postgres:") or not any(f" {db} " in cmdline for db in databases):
                continue
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


class Clock:
    """Wall, CPU of this process, and CPU of our PostgreSQL backends around a block."""

    def __init__(self, databases: Sequence[str]) -> None:
        self.databases = databases

    def __enter__(self) -> Clock:
        self.t0, self.c0, self.s0 = time.perf_counter(), time.process_time(), backend_cpu(self.databases)
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self.server_cpu = backend_cpu(self.databases) - self.s0

    def as_dict(self) -> Json:
        return {"wall_s": self.wall, "cpu_s": self.cpu, "postgres_cpu_s": self.server_cpu}


def machine(postgres: str) -> Json:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines() if ln.startswith("model name")), "?"
    )
    meminfo = Path("/proc/meminfo").read_text().split()
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": postgres,
        "packages": {
            name: importlib_metadata.version(name)
            for name in ("SQLAlchemy", "psycopg2-binary", "fastapi", "starlette", "jinja2", "httpx")
        },
    }


def db_name(url: str) -> str:
    from sqlalchemy.engine import make_url

    return str(make_url(url).database)


def db_size_mib(engine: Engine) -> float:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()) / 2**20


# Schools and their extracts ------------------------------------------------------------------------------
def school_estab(school: int) -> str:
    return f"{2000 + school:04d}"


def extract_sha(school: int, term: str = "AUT", year: int = 2026) -> str:
    return hashlib.sha256(f"bench-viewer/{LA}{school_estab(school)}/{term}/{year}".encode()).hexdigest()


def extract_id_of(sha: str) -> str:
    return "ext_" + sha[:20]  # as registry.extract_id_for names a first receipt


def file_name_of(school: int, term: str = "AUT", year: int = 2026) -> str:
    return f"SC_{LA}_{school_estab(school)}_{term}_{year}.xml"


def insert_extracts(engine: Engine, schools: int) -> list[str]:
    """One loaded ``extracts`` row per school (AUT 2026): the source extracts of shares and disclosures."""
    rng = random.Random(11)
    rows: list[Json] = []
    for school in range(schools):
        sha = extract_sha(school)
        received = BASE_TIME + timedelta(minutes=school)
        pupils = rng.randint(150, 1500)
        rows.append(
            {
                "extract_id": extract_id_of(sha),
                "sha256": sha,
                "size": pupils * 2400,
                "original_name": file_name_of(school),
                "received_at": received,
                "format": "school_census_xml",
                "la": LA,
                "estab": school_estab(school),
                "laestab": LA + school_estab(school),
                "urn": f"{100000 + school:06d}",
                "term": "AUT",
                "year": 2026,
                "reference_date": date(2026, 10, 1),
                "status": "loaded",
                "reasons": [],
                "rows_read": pupils,
                "rows_rejected": 0,
                "pupil_count": pupils,
                "staged_at": received + timedelta(seconds=20),
                "loaded_at": received + timedelta(seconds=40),
            }
        )
    with warehouse_db.write_transaction(engine) as conn:
        conn.execute(insert(extracts), rows)
    return [row["extract_id"] for row in rows]


# Share rows made by the real code -----------------------------------------------------------------------
def share_values(
    settings: Settings,
    agreement: Any,
    share_id: str,
    *,
    status: str,
    pupils: int,
    source_extracts: list[str],
    as_of: date,
    rng: random.Random,
) -> Json:
    """A share row as check/build/release leave it, with its release event made by the real code."""
    from censustrace.shares.check import agreement_values
    from censustrace.shares.lineage import release_job_name, release_run_id
    from censustrace.shares.register import ShareRow
    from censustrace.shares.release import outbox_path, relative_file_path, release_lineage

    created = datetime(as_of.year, as_of.month, as_of.day, 6, 0, tzinfo=UTC)
    excluded = {"objection": rng.randint(0, max(1, pupils // 50)), "out_of_scope": rng.randint(0, 40)}
    row: Json = {
        "id": 0,
        "share_id": share_id,
        "agreement_id": agreement.id,
        "run_key": f"scheduled__{as_of.isoformat()}T06:00:00+00:00",
        "status": status,
        "as_of": as_of,
        **agreement_values(agreement),
        "policy_version": hashlib.sha256(b"policy").hexdigest(),
        "flags": ["high_risk"] if "dob" in agreement.fields and "address_lines" in agreement.fields else [],
        "reasons": [],
        "pupils": pupils,
        "excluded": excluded,
        "suppressed": {"ethnicity": pupils // 100} if "ethnicity" in agreement.fields else {},
        "source_extracts": sorted(source_extracts),
        "consent_files": [],
        "consent_check": {"covering": [agreement.purpose], "consent_required": False, "decisions_applied": 0},
        "file_name": f"{agreement.id}_{as_of.isoformat()}_{share_id[4:12]}.csv",
        "sha256": hashlib.sha256(f"file/{share_id}".encode()).hexdigest(),
        "size": pupils * 180,
        "manifest_sha256": hashlib.sha256(f"manifest/{share_id}".encode()).hexdigest(),
        "file_path": None,
        "lineage_run_id": None,
        "lineage_event": None,
        "created_at": created,
        "built_at": created + timedelta(minutes=3),
        "recorded_at": None,
        "delivered_at": None,
    }
    if status == DELIVERED:
        share = ShareRow(**row)
        target = outbox_path(settings, share)
        run_id = release_run_id(share_id)
        row["lineage_event"] = run_event(
            settings,
            release_job_name(agreement.id),
            release_lineage(settings, share),
            run_id=run_id,
            at=created + timedelta(minutes=4),
        )
        row["lineage_run_id"] = run_id
        row["file_path"] = relative_file_path(settings, target)
        row["recorded_at"] = created + timedelta(minutes=4)
        row["delivered_at"] = created + timedelta(minutes=5)
    del row["id"]
    return row


# 1. Subject access -----------------------------------------------------------------------------------------
class CopySource(io.RawIOBase):
    """A file-like object over an iterator of byte chunks, for ``copy_expert`` (no temporary file)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""
        self._pos = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while self._pos >= len(self._buffer):
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self._buffer, self._pos = chunk, 0
        end = len(self._buffer) if size is None or size < 0 else self._pos + size
        out = self._buffer[self._pos : end]
        self._pos += len(out)
        return out


def pool_key(index: int) -> str:
    return hmac.digest(POOL_SECRET, index.to_bytes(4, "big"), "sha256").hex()


class Disclosures:
    """The disclosure log's rows, made on the fly: share by share, each pupil once per share."""

    def __init__(
        self,
        share_ids: list[str],
        sizes: list[int],
        sources: list[list[str]],
        planted: dict[int, list[str]],
        repeat: float,
        seed: int,
    ) -> None:
        self.share_ids, self.sizes, self.sources, self.planted = share_ids, sizes, sources, planted
        self.repeat, self.seed = repeat, seed
        self.rows = 0
        self.fresh = 0  # distinct pool pupils used so far

    def chunks(self) -> Iterator[bytes]:
        rng = random.Random(self.seed)
        for index, share_id in enumerate(self.share_ids):
            extracts_of = self.sources[index]
            used: set[int] = set()
            lines = []
            for j in range(self.sizes[index]):
                # A pupil already in an earlier share, or (if that one is in this share already) a new one.
                pupil = rng.randrange(self.fresh) if self.fresh and rng.random() < self.repeat else -1
                if pupil < 0 or pupil in used:
                    pupil = self.fresh
                    self.fresh += 1
                used.add(pupil)
                blank = '["ethnicity"]' if rng.random() < 0.02 else "\\N"
                extract = extracts_of[j % len(extracts_of)]
                lines.append(
                    f"{share_id}\t{pool_key(pupil)}\t{extract}\t{j // len(extracts_of) + 1}\t{blank}\n"
                )
            for key in self.planted.get(index, ()):
                lines.append(f"{share_id}\t{key}\t{extracts_of[0]}\t{rng.randint(1, 1500)}\t\\N\n")
            self.rows += len(lines)
            yield "".join(lines).encode()


def _table_ddl(conn: Connection, table: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(constraints: name, definition) and (other indexes: name, CREATE INDEX ...) of a table."""
    constraints = [
        (str(name), str(definition))
        for name, definition in conn.execute(
            text(
                "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = CAST(:t AS regclass) AND contype IN ('p', 'f', 'u') "
                "ORDER BY contype DESC, conname"
            ),
            {"t": table},
        )
    ]
    names = {name for name, _ in constraints}
    indexes = [
        (str(name), str(definition))
        for name, definition in conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = :t ORDER BY indexname"),
            {"t": table},
        )
        if name not in names
    ]
    return constraints, indexes


def bulk_copy(engine: Engine, table: str, columns: str, chunks: Iterator[bytes]) -> Json:
    """COPY rows into ``table`` with its keys, indexes and foreign keys dropped, then re-create them
    under the same names; returns the timings."""
    timings: Json = {}
    with engine.begin() as conn:
        constraints, indexes = _table_ddl(conn, table)
        for name, _ in constraints:
            conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'))
        for name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{name}"'))
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", CopySource(chunks), size=1 << 20)
        raw.commit()
        timings["copy_s"] = time.perf_counter() - started
        cursor.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        for name, definition in constraints:
            if not definition.startswith("FOREIGN"):
                cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        raw.commit()
        timings["keys_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        raw.commit()
        timings["indexes_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for name, definition in constraints:
            if definition.startswith("FOREIGN"):
                cursor.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
        raw.commit()
        timings["foreign_keys_s"] = time.perf_counter() - started
    finally:
        raw.close()
    with engine.connect() as conn:
        if _table_ddl(conn, table) != (constraints, indexes):
            raise RuntimeError(f"{table}: keys and indexes differ after the bulk load")
    return timings


def plant_lookups(
    secret: bytes, count: int, found_share: float, disclosing: list[int], rng: random.Random
) -> tuple[list[Json], dict[int, list[str]]]:
    """``count`` valid UPNs (real check letters), ``found_share`` of them planted in 1-12 shares."""
    from censustrace.census.identifiers import make_upn

    lookups: list[Json] = []
    planted: dict[int, list[str]] = {}
    serials = rng.sample(range(1000 * 100), count)
    for n, serial in enumerate(serials):
        upn = make_upn(LA, f"{9000 + serial // 1000:04d}", 12, serial % 1000)
        key = pupil_key(secret, upn)
        in_shares = (
            sorted(rng.sample(disclosing, rng.randint(1, 12))) if n < round(count * found_share) else []
        )
        for index in in_shares:
            planted.setdefault(index, []).append(key)
        lookups.append({"upn": upn, "key": key, "shares": in_shares})
    rng.shuffle(lookups)
    return lookups, planted


def consent_chunks(pupils: int, lookups: list[Json], file_ids: list[str], seed: int) -> Iterator[bytes]:
    """Decisions (mostly objections to research) for 5 % of the pool and a quarter of the planted pupils."""
    rng = random.Random(seed)
    chosen = rng.sample(range(pupils), pupils // 20)
    keys = [pool_key(i) for i in chosen] + [item["key"] for item in lookups[::4] if item["shares"]]
    row_of = dict.fromkeys(file_ids, 0)
    lines = []
    for key in keys:
        file_id = rng.choice(file_ids)
        row_of[file_id] += 1
        purpose = "research.approved" if rng.random() < 0.9 else "health.school_nursing"
        decision = "objected" if rng.random() < 0.85 else "consented"
        recorded = date(2022, 1, 1) + timedelta(days=rng.randrange(5 * 365))
        lines.append(f"{file_id}\t{row_of[file_id]}\t{key}\t{purpose}\t{decision}\t{recorded}\tparent\n")
        if len(lines) == 20_000:
            yield "".join(lines).encode()
            lines = []
    yield "".join(lines).encode()


class StatementTimer:
    """Records each SQL statement an engine runs (text, parameters, seconds in the driver)."""

    def __init__(self, engine: Engine) -> None:
        self.calls: list[tuple[str, Any, float]] = []
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Connection, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    def _after(self, conn: Connection, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        self.calls.append((statement, parameters, time.perf_counter() - conn.info.pop("bench_t0")))

    def take(self) -> list[tuple[str, Any, float]]:
        calls, self.calls = self.calls, []
        return calls


def explain(cursor: Any, statement: str, parameters: Any) -> Json:
    cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + statement, parameters)
    plan = cursor.fetchone()[0][0]
    nodes: list[str] = []

    def walk(node: Json) -> None:
        nodes.append(node["Node Type"] + (f" on {node['Relation Name']}" if "Relation Name" in node else ""))
        for child in node.get("Plans", ()):
            walk(child)

    walk(plan["Plan"])
    return {
        "execution_ms": float(plan["Execution Time"]),
        "planning_ms": float(plan["Planning Time"]),
        "nodes": nodes,
        "shared_hit": int(plan["Plan"].get("Shared Hit Blocks", 0)),
        "shared_read": int(plan["Plan"].get("Shared Read Blocks", 0)),
    }


def bench_subject_access(
    args: argparse.Namespace, settings: Settings, schools: list[str], dbs: list[str]
) -> Json:
    from censustrace.compliance.subject import subject_access
    from censustrace.consent.policies import load_policy
    from censustrace.shares.check import share_id_for

    rng = random.Random(args.seed)
    engine = warehouse_db.warehouse_engine(settings.warehouse_db_url)
    policy = load_policy(settings.policies_dir)
    agreements = [a for a in policy.agreements.values() if a.id not in BLOCKED_AGREEMENTS]
    secret = settings.pupil_key_secret_value()

    # Shares: sizes log-normal around the mean, summing to the rows wanted.
    count = args.shares
    weights = [rng.lognormvariate(0, 0.7) for _ in range(count)]
    statuses = [BUILT if rng.random() < 0.02 else DELIVERED for _ in range(count)]
    share_ids = [share_id_for("bench", f"share-{i}") for i in range(count)]
    lookups, planted = plant_lookups(secret, args.lookups, 0.75, list(range(count)), rng)
    lookups_planted_rows = sum(len(v) for v in planted.values())
    total = args.disclosures - lookups_planted_rows
    sizes = [max(1, int(w / sum(weights) * total)) for w in weights]
    sizes[sizes.index(max(sizes))] += total - sum(sizes)
    sources = [sorted(rng.sample(schools, min(len(schools), max(1, n // 250)))) for n in sizes]
    log(f"subject access: {count} share rows (release events made by the real code)")
    started = time.perf_counter()
    rows = []
    for i in range(count):
        agreement = agreements[i % len(agreements)]
        as_of = date(2022, 1, 10) + timedelta(days=i * 5 * 365 // count)
        rows.append(
            share_values(
                settings,
                agreement,
                share_ids[i],
                status=statuses[i],
                pupils=sizes[i] + len(planted.get(i, ())),
                source_extracts=sources[i],
                as_of=as_of,
                rng=rng,
            )
        )
    with warehouse_db.write_transaction(engine) as conn:
        for start in range(0, len(rows), 200):
            conn.execute(insert(shares), rows[start : start + 200])
    shares_s = time.perf_counter() - started
    event_bytes = [len(r["lineage_event"]) for r in rows if r["lineage_event"]]
    del rows

    log(f"subject access: COPY {args.disclosures:,} disclosure rows")
    repeat = max(0.0, 1 - args.pupils / max(1, total))
    disclosures = Disclosures(share_ids, sizes, sources, planted, repeat, args.seed)
    with Clock(dbs) as clock:
        load = bulk_copy(
            engine,
            "disclosures",
            "share_id, pupil_key, extract_id, record_number, blank_fields",
            disclosures.chunks(),
        )
    load.update(clock.as_dict())
    log(f"  loaded in {clock.wall:.0f} s: {load}")

    file_ids = [f"cns_{hashlib.sha256(f'consent/{i}'.encode()).hexdigest()[:20]}" for i in range(200)]
    with warehouse_db.write_transaction(engine) as conn:
        conn.execute(
            insert(consent_files),
            [
                {
                    "consent_file_id": file_id,
                    "sha256": hashlib.sha256(file_id.encode()).hexdigest(),
                    "size": 10_000,
                    "original_name": f"consents_{LA}_{school_estab(i)}_AUT_2026.csv",
                    "received_at": BASE_TIME,
                    "laestab": LA + school_estab(i),
                    "term": "AUT",
                    "year": 2026,
                    "status": APPLIED,
                    "rows_read": 0,
                    "rows_applied": 0,
                    "rows_rejected": 0,
                    "reasons": [],
                }
                for i, file_id in enumerate(file_ids)
            ],
        )
    started = time.perf_counter()
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.copy_expert(
            "COPY consent_decisions (consent_file_id, row_number, pupil_key, purpose, decision, recorded_on, "
            "source) FROM STDIN",
            CopySource(consent_chunks(disclosures.fresh, lookups, file_ids, args.seed)),
            size=1 << 20,
        )
        raw.commit()
    finally:
        raw.close()
    consent_s = time.perf_counter() - started
    started = time.perf_counter()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
        counts = {
            name: int(conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one())
            for name in ("shares", "disclosures", "extracts", "consent_decisions")
        }
        counts["distinct_pupil_keys"] = int(
            conn.execute(text("SELECT count(DISTINCT pupil_key) FROM disclosures")).scalar_one()
        )
        sizes_mib = {
            name: int(conn.execute(text(f"SELECT pg_total_relation_size('{name}')")).scalar_one()) / 2**20
            for name in ("disclosures", "ix_disclosures_pupil_key", "pk_disclosures", "shares")
        }
    analyze_s = time.perf_counter() - started
    log(f"  counts {counts}")

    delivered = {i for i in range(count) if statuses[i] == DELIVERED}

    def expected(item: Json) -> int:
        return sum(1 for i in item["shares"] if i in delivered)

    # ours: the real function, in process --------------------------------------------------------------
    timer = StatementTimer(engine)
    # Valid UPNs outside the measured set warm the engine, its migration check and the statement caches.
    for n in range(10):
        subject_access([make_extra_upn(n)], settings)
    timer.take()
    ours: list[Json] = []
    for item in lookups:
        c0, t0 = time.process_time(), time.perf_counter()
        answer = subject_access([item["upn"]], settings)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        calls = timer.take()
        found = len(answer["requests"][0]["shares"])
        if found != expected(item):
            raise RuntimeError(f"subject access found {found} shares, expected {expected(item)}")
        ours.append(
            {"wall": wall, "cpu": cpu, "sql": sum(c[2] for c in calls), "found": found, "calls": calls}
        )
    log(
        "  ours subject_access(): p50 {p50:.2f} ms p95 {p95:.2f} ms p99 {p99:.2f} ms".format(
            **summary([o["wall"] for o in ours])
        )
    )

    # PostgreSQL's own time for the same statements (EXPLAIN ANALYZE of what was sent) --------------------
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for item in ours:
            plans = [explain(cursor, statement, parameters) for statement, parameters, _ in item["calls"]]
            item["server_ms"] = sum(p["execution_ms"] + p["planning_ms"] for p in plans)
            item["main"] = next(
                p for (s, _, _), p in zip(item["calls"], plans, strict=True) if "disclosures" in s
            )
        raw.rollback()
        # naive: the same disclosure query without the pupil_key index (dropped, then rolled back)
        naive: list[Json] = []
        cursor.execute("DROP INDEX ix_disclosures_pupil_key")
        for item in ours[: args.naive_lookups]:
            statement, parameters, _ = next(c for c in item["calls"] if "disclosures" in c[0])
            t0 = time.perf_counter()
            plan = explain(cursor, statement, parameters)
            plan["wall_s"] = time.perf_counter() - t0
            naive.append(plan)
            log(
                f"  naive (no pupil_key index): {plan['execution_ms']:.0f} ms "
                f"({' / '.join(plan['nodes'][:4])})"
            )
        raw.rollback()
    finally:
        raw.close()
    main_plan = ours[0]["main"]["nodes"]
    statements = len(ours[0]["calls"])

    # API: POST /api/v1/disclosures/search through the app ---------------------------------------------------
    api = bench_api(settings, lookups, expected)

    result = {
        "setup": {
            "shares_s": shares_s,
            "release_event_bytes_mean": statistics.fmean(event_bytes),
            "release_event_bytes_max": max(event_bytes),
            "disclosures_load": load,
            "consent_copy_s": consent_s,
            "vacuum_analyze_s": analyze_s,
            "counts": counts,
            "sizes_mib": sizes_mib,
            "pupils_in_several_shares_share_of_rows": repeat,
        },
        "lookups": len(lookups),
        "found": sum(1 for item in lookups if expected(item)),
        "absent": sum(1 for item in lookups if not expected(item)),
        "shares_per_found_pupil_mean": statistics.fmean(o["found"] for o in ours if o["found"]),
        "statements_per_lookup": statements,
        "main_plan": main_plan,
        "ours_wall_ms": summary([o["wall"] for o in ours]),
        "ours_cpu_ms": summary([o["cpu"] for o in ours]),
        "ours_sql_ms": summary([o["sql"] for o in ours]),
        "ours_server_ms": summary([o["server_ms"] for o in ours], scale=1),
        "ours_main_execution_ms": summary([o["main"]["execution_ms"] for o in ours], scale=1),
        "ours_found_wall_ms": summary([o["wall"] for o in ours if o["found"]]),
        "ours_absent_wall_ms": summary([o["wall"] for o in ours if not o["found"]]),
        "api": api,
        "naive_lookups": len(naive),
        "naive_execution_ms": summary([p["execution_ms"] for p in naive], scale=1),
        "naive_plan": naive[0]["nodes"] if naive else [],
    }
    result["speedup_execution_median"] = (
        result["naive_execution_ms"]["p50"] / result["ours_main_execution_ms"]["p50"]
    )
    return result


def make_extra_upn(n: int) -> str:
    from censustrace.census.identifiers import make_upn

    return make_upn(LA, "8999", 11, n)


def log_in(client: Any, name: str) -> None:
    page = client.get("/login")
    found = CSRF.search(page.text)
    if not found:
        raise RuntimeError("no CSRF token on the login page")
    response = client.post(
        "/login",
        data={"username": name, "password": PASSWORD, "csrf_token": found.group(1), "next": "/"},
        follow_redirects=False,
    )
    if response.status_code != 303:
        raise RuntimeError(f"login failed: {response.status_code}")


def viewer_client(settings: Settings) -> tuple[Any, Any, str]:
    """The real app with a compliance user; the client is logged in, and an API token is returned."""
    from fastapi.testclient import TestClient

    from censustrace.viewer import auth
    from censustrace.viewer.app import create_viewer_app

    app = create_viewer_app(settings)
    engine = app.state.viewer.engine()
    if not any(user["name"] == "clara" for user in auth.list_users(engine)):
        auth.add_user(engine, "clara", "compliance", PASSWORD)
    token = auth.add_token(engine, "clara", "api")
    client = TestClient(app)
    log_in(client, "clara")
    return app, client, token


def bench_api(settings: Settings, lookups: list[Json], expected: Callable[[Json], int]) -> Json:
    app, client, token = viewer_client(settings)
    headers = {"Authorization": f"Bearer {token}"}
    lineage_sql = StatementTimer(app.state.viewer.engine())  # token check and access log
    with client:
        for n in range(10):
            client.post("/api/v1/disclosures/search", json={"upn": make_extra_upn(n)}, headers=headers)
        lineage_sql.take()
        health = []  # the same client and app on the cheapest route: what HTTP in process costs
        for _ in range(len(lookups)):
            t0 = time.perf_counter()
            client.get("/api/v1/health")
            health.append(time.perf_counter() - t0)
        walls, cpus, store_walls, store_statements = [], [], [], []
        for item in lookups:
            c0, t0 = time.process_time(), time.perf_counter()
            response = client.post("/api/v1/disclosures/search", json={"upn": item["upn"]}, headers=headers)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
            calls = lineage_sql.take()
            store_walls.append(sum(c[2] for c in calls))
            store_statements.append(len(calls))
            if response.status_code != 200 or len(response.json()["shares"]) != expected(item):
                raise RuntimeError(f"API answered {response.status_code} with the wrong shares")
    log("  API POST /api/v1/disclosures/search: p50 {p50:.2f} ms p95 {p95:.2f} ms".format(**summary(walls)))
    return {
        "wall_ms": summary(walls),
        "cpu_ms": summary(cpus),
        "lineage_store_sql_ms": summary(store_walls),
        "lineage_store_statements": statistics.median(store_statements),
        "health_wall_ms": summary(health),
    }


# 2. Share detail page ---------------------------------------------------------------------------------------
class Template:
    """The COMPLETE events of one real ingest, and the values in them that differ per file."""

    def __init__(self, settings: Settings, work: Path) -> None:
        from censustrace.census.generator import GeneratorOptions, generate
        from censustrace.intake.archive import copy_into
        from censustrace.intake.ingest import ingest_file

        out = work / "sample"
        manifest = generate(GeneratorOptions(out=out, schools=1, pupils_per_school=300, seed=7))
        entry = manifest["files"][0]
        started = time.perf_counter()
        outcome = ingest_file(copy_into(out / entry["file"], settings.landing_dir), settings)
        self.ingest_s = time.perf_counter() - started
        if outcome.status != "loaded" or outcome.extract_id is None:
            raise RuntimeError(f"the template file was not loaded: {outcome.status}")
        self.sha, self.extract_id, self.file_name = (
            outcome.sha256,
            outcome.extract_id,
            Path(entry["file"]).name,
        )
        self.events = [
            (step, run_event(settings, f"census_ingest.ingest.{step}", lineage, run_id=str(uuid.uuid4())))
            for step, lineage in outcome.steps
        ]
        self.event_bytes = {step: len(payload) for step, payload in self.events}

    def school(self, school: int) -> list[str]:
        """The events of ``school``'s AUT 2026 file, as the pipeline would have sent them."""
        sha = extract_sha(school)
        received = BASE_TIME + timedelta(minutes=school)
        out = []
        for step_no, (step, payload) in enumerate(self.events):
            body = (
                payload.replace(f"/{self.sha[:2]}/{self.sha}", f"/{sha[:2]}/{sha}")
                .replace(self.sha, sha)
                .replace(self.extract_id, extract_id_of(sha))
                .replace(self.file_name, file_name_of(school))
            )
            data = json.loads(body)
            data["run"]["runId"] = str(uuid.uuid5(RUN_NS, f"{sha}/{step}"))
            data["eventTime"] = (received + timedelta(seconds=10 * step_no + 5)).isoformat()
            for dataset in [*data.get("inputs", ()), *data.get("outputs", ())]:
                facet = (dataset.get("facets") or {}).get("censusExtract")
                if facet is None:
                    continue
                facet["receivedAt"] = received.isoformat()
                for key, value in (("laestab", LA + school_estab(school)), ("urn", f"{100000 + school:06d}")):
                    if key in facet:
                        facet[key] = value
            out.append(json.dumps(data))
        return out


#: The references between the copied tables, checked after the copy.
FOREIGN_KEYS = (
    ("job_datasets", "dataset_id", "datasets"),
    ("dataset_versions", "dataset_id", "datasets"),
    ("dataset_versions", "created_by_run_id", "runs"),
    ("run_dataset_versions", "run_id", "runs"),
    ("run_dataset_versions", "dataset_version_id", "dataset_versions"),
    ("facets", "run_id", "runs"),
    ("facets", "dataset_id", "datasets"),
    ("facets", "dataset_version_id", "dataset_versions"),
)


def _sha_version(value: str) -> str:
    """SQL for ``bench_lineage.Copier.version``: sha256 of ``value/n`` for a sha256, else ``value.n``."""
    return (
        f"CASE WHEN {value} ~ '^[0-9a-f]{{64}}$' "
        f"THEN encode(sha256(convert_to({value} || '/' || n, 'UTF8')), 'hex') ELSE {value} || '.' || n END"
    )


def copy_store(engine: Engine, copies: int) -> Json:
    """Add ``copies - 1`` renamed copies of the store's rows, in SQL: what ``bench_lineage.replicate`` does
    (new run ids, versions and archive names; other datasets keep their name and get new versions; raw
    events and column lineage rows are not copied), at server speed. Returns rows and seconds per table."""
    from censustrace.lineage.store.tables import metadata

    tables = (
        "datasets",
        "job_datasets",
        "runs",
        "dataset_versions",
        "run_dataset_versions",
        "facets",
    )
    mapped = "CASE WHEN {c} IN (SELECT id FROM bench_archive) THEN {c} + n * {top} ELSE {c} END"
    inserted: Json = {}
    with engine.begin() as conn:
        # The copies are consistent by construction: skip the per-row foreign key triggers (checked below).
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        top = {
            t: int(conn.execute(text(f"SELECT coalesce(max(id), 0) FROM {t}")).scalar_one()) for t in tables
        }
        conn.execute(
            text(
                "CREATE TEMP TABLE bench_archive ON COMMIT DROP AS SELECT id FROM datasets WHERE name LIKE :p"
            ),
            {"p": "%/archive/%"},
        )
        ds, dv, rn = top["datasets"], top["dataset_versions"], top["runs"]
        name_sha = "regexp_replace(s.name, '^.*/', '')"
        new_sha = _sha_version(name_sha)
        overrides: dict[str, dict[str, str]] = {
            "datasets": {
                "id": f"s.id + n * {ds}",
                "name": f"regexp_replace(s.name, '/[^/]+/[^/]+$', '') || '/' "
                f"|| left({new_sha}, 2) || '/' || {new_sha}",
            },
            "job_datasets": {
                "id": f"s.id + n * {top['job_datasets']}",
                "dataset_id": f"s.dataset_id + n * {ds}",
            },
            "runs": {
                "id": f"s.id + n * {rn}",
                "run_uuid": "CAST(CAST(md5(s.run_uuid || '/' || n) AS uuid) AS text)",
                "parent_run_uuid": "CAST(CAST(md5(s.parent_run_uuid || '/' || n) AS uuid) AS text)",
            },
            "dataset_versions": {
                "id": f"s.id + n * {dv}",
                "dataset_id": mapped.format(c="s.dataset_id", top=ds),
                "version": _sha_version("s.version"),
                "created_by_run_id": f"s.created_by_run_id + n * {rn}",
            },
            "run_dataset_versions": {
                "id": f"s.id + n * {top['run_dataset_versions']}",
                "run_id": f"s.run_id + n * {rn}",
                "dataset_version_id": f"s.dataset_version_id + n * {dv}",
            },
            "facets": {
                "id": f"s.id + n * {top['facets']}",
                "run_id": f"s.run_id + n * {rn}",
                "dataset_id": mapped.format(c="s.dataset_id", top=ds),
                "dataset_version_id": f"s.dataset_version_id + n * {dv}",
                "body": "CASE WHEN v.version IS NULL THEN s.body ELSE CAST(replace(CAST(s.body AS text), "
                f"v.version, {_sha_version('v.version')}) AS json) END",
            },
        }
        archive_only = "s.{c} IN (SELECT id FROM bench_archive) AND "
        joins = {"facets": "LEFT JOIN dataset_versions v ON v.id = s.dataset_version_id"}
        where = {"datasets": archive_only.format(c="id"), "job_datasets": archive_only.format(c="dataset_id")}
        for table in tables:
            columns = [c.name for c in metadata.tables[table].columns]
            values = ", ".join(overrides[table].get(c, f"s.{c}") for c in columns)
            started = time.perf_counter()
            result = conn.execute(
                text(
                    f"INSERT INTO {table} ({', '.join(columns)}) SELECT {values} FROM {table} s "
                    f"CROSS JOIN generate_series(1, {copies - 1}) n {joins.get(table, '')} "
                    f"WHERE {where.get(table, '')}s.id <= {top[table]}"
                )
            )
            inserted[table] = {"rows": result.rowcount, "s": time.perf_counter() - started}
        for table in tables:
            conn.execute(
                text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        started = time.perf_counter()
        conn.execute(text("VACUUM ANALYZE"))
        inserted["vacuum_analyze_s"] = time.perf_counter() - started
        started = time.perf_counter()
        for child, column, parent in FOREIGN_KEYS:
            broken = conn.execute(
                text(
                    f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON p.id = c.{column} "
                    f"WHERE c.{column} IS NOT NULL AND p.id IS NULL"
                )
            ).scalar_one()
            if broken:
                raise RuntimeError(f"copied {child}.{column}: {broken} rows point to no {parent}")
        inserted["foreign_key_check_s"] = time.perf_counter() - started
    return inserted


def bench_wide_share_lookups(
    settings: Settings, wide: Json, narrow_id: str, extract_id: str, rounds: int
) -> Json:
    """``subject_access`` for pupils in shares with a large release event: the traced share (its event
    names two tables of every school's extract) and ``rounds - 1`` more rows like it (one statutory
    return per census round), against pupils in one narrow share; 20 pupils each."""
    from censustrace.compliance.subject import subject_access
    from censustrace.shares.check import share_id_for
    from censustrace.shares.tables import disclosures

    engine = warehouse_db.warehouse_engine(settings.warehouse_db_url)
    secret = settings.pupil_key_secret_value()
    wide_ids = [wide["share_id"]]
    wide_ids += [share_id_for(TRACED_AGREEMENT, f"bench-traced-round-{n}") for n in range(1, rounds)]
    groups = {"1 narrow share": [narrow_id], "1 wide share": wide_ids[:1], f"{rounds} wide shares": wide_ids}
    upns = {label: [make_extra_upn(100 + 20 * g + i) for i in range(20)] for g, label in enumerate(groups)}
    with warehouse_db.write_transaction(engine) as conn:
        conn.execute(
            insert(shares),
            [{**wide, "share_id": share_id, "run_key": f"round-{n}"} for n, share_id in enumerate(wide_ids)][
                1:
            ],
        )
        conn.execute(
            insert(disclosures),
            [
                {
                    "share_id": share_id,
                    "pupil_key": pupil_key(secret, upn),
                    "extract_id": extract_id,
                    "record_number": 1,
                    "blank_fields": None,
                }
                for label, ids in groups.items()
                for upn in upns[label]
                for share_id in ids
            ],
        )
    found: Json = {}
    for label, ids in groups.items():
        with engine.connect() as conn:
            event_bytes = conn.execute(
                select(func.sum(func.length(shares.c.lineage_event))).where(shares.c.share_id.in_(ids))
            ).scalar_one()
        subject_access([make_extra_upn(0)], settings)
        walls = []
        for upn in upns[label]:
            t0 = time.perf_counter()
            answer = subject_access([upn], settings)
            walls.append(time.perf_counter() - t0)
            if len(answer["requests"][0]["shares"]) != len(ids):
                raise RuntimeError("subject access missed a planted share")
        found[label] = {"shares": len(ids), "event_bytes": int(event_bytes), "wall_ms": summary(walls)}
        log(
            f"  subject_access() of pupils in {label} ({int(event_bytes):,} bytes of release events): "
            f"p50 {found[label]['wall_ms']['p50']:.1f} ms, p95 {found[label]['wall_ms']['p95']:.1f} ms"
        )
    return found


def store_counts(engine: Engine) -> Json:
    with engine.connect() as conn:
        return {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (runs, dataset_versions, run_dataset_versions, facets, raw_events)
        }


def bench_share_page(
    args: argparse.Namespace, settings: Settings, schools: list[str], dbs: list[str]
) -> Json:
    from censustrace.consent.policies import load_policy
    from censustrace.lineage.store.ingest import store_events
    from censustrace.lineage.store.trace import trace_upstream
    from censustrace.shares.check import share_id_for
    from censustrace.shares.lineage import commit_event
    from censustrace.shares.register import find_share
    from censustrace.viewer.lineage_views import trace_view
    from censustrace.viewer.shares_views import column_view

    work = settings.home.parent
    url = settings.lineage_db_url
    store_db.upgrade(url)
    engine = store_db.make_engine(url)
    log("share page: template events from a real ingest of one generated school file")
    template = Template(settings, work)
    log(f"  template ingested in {template.ingest_s:.1f} s; COMPLETE event bytes {template.event_bytes}")

    seed_schools = len(schools)
    log(f"share page: {seed_schools} schools' events through store_events (batches of {STORE_BATCH})")
    with Clock(dbs) as seed_clock:
        batch: list[str] = []
        stored = 0
        for index in range(seed_schools):
            batch.extend(template.school(index))
            if len(batch) >= STORE_BATCH or index == seed_schools - 1:
                store_events(engine, batch)
                stored += len(batch)
                batch = []
    log(f"  {stored} events in {seed_clock.wall:.0f} s ({stored / seed_clock.wall:.0f} events/s)")

    policy = load_policy(settings.policies_dir)
    agreement = policy.agreement(TRACED_AGREEMENT)
    share_id = share_id_for(TRACED_AGREEMENT, "bench-traced")
    row = share_values(
        settings,
        agreement,
        share_id,
        status=DELIVERED,
        pupils=sum(random.Random(3).randint(150, 1500) for _ in schools),
        source_extracts=schools,
        as_of=date(2026, 10, 15),
        rng=random.Random(5),
    )
    with warehouse_db.write_transaction(warehouse_db.warehouse_engine(settings.warehouse_db_url)) as conn:
        conn.execute(insert(shares), [row])
    payload = row["lineage_event"]
    row_of_traced = row
    started = time.perf_counter()
    commit_event(settings, payload)
    share_event_s = time.perf_counter() - started
    log(f"  share release event ({len(payload):,} bytes) committed in {share_event_s:.1f} s")

    smaller_shares = []
    for size in sorted(int(k) for k in args.smaller.split(",") if k and int(k) < len(schools)):
        smaller_id = share_id_for(TRACED_AGREEMENT, f"bench-traced-{size}")
        row = share_values(
            settings,
            agreement,
            smaller_id,
            status=DELIVERED,
            pupils=size * 800,
            source_extracts=schools[:size],
            as_of=date(2026, 10, 15),
            rng=random.Random(size),
        )
        with warehouse_db.write_transaction(warehouse_db.warehouse_engine(settings.warehouse_db_url)) as conn:
            conn.execute(insert(shares), [row])
        commit_event(settings, row["lineage_event"])
        smaller_shares.append((size, smaller_id))
    wide_lookups = bench_wide_share_lookups(
        settings, row_of_traced, smaller_shares[0][1] if smaller_shares else share_id, schools[0], args.terms
    )

    copies = args.terms
    with engine.connect() as conn:
        versions_before_copy = int(conn.execute(text("SELECT max(id) FROM dataset_versions")).scalar_one())
    log(f"share page: {copies - 1} renamed copies of every row of the store (SQL)")
    with Clock(dbs) as copy_clock:
        copied = copy_store(engine, copies)
    copied_rows = sum(v["rows"] for v in copied.values() if isinstance(v, dict))
    counts = store_counts(engine)
    log(f"  {copied_rows:,} rows in {copy_clock.wall:.0f} s; store {counts}")

    wide_rounds = min(args.wide_rounds, copies)
    wide_id = make_wide_share(engine, settings, row_of_traced, wide_rounds, versions_before_copy)
    log(
        f"  wide share: the traced share's release reading {wide_rounds} rounds "
        f"({wide_rounds * seed_schools} extracts)"
    )

    # Breakdown by direct calls -----------------------------------------------------------------------------
    share = find_share(settings, share_id)
    if not share.file_path or not share.sha256:
        raise RuntimeError("the traced share has no released file")
    ours_direct, ours_kept = [], []
    for _ in range(args.breakdown):
        forget_kept(engine)  # worked out from the store, as on the first view after a release
        t0 = time.perf_counter()
        ours_model = share_lineage_direct(engine, share)
        ours_direct.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        share_lineage_direct(engine, share)  # the kept summary read back
        ours_kept.append(time.perf_counter() - t0)
    log(
        f"  ours, share_lineage() direct: median {statistics.median(ours_direct) * 1e3:.0f} ms worked out, "
        f"{statistics.median(ours_kept) * 1e3:.0f} ms kept, "
        f"{ours_model['source_count']} sources, {len(ours_model['nodes'])} graph nodes"
    )
    parts: dict[str, list[float]] = {
        "find_share": [],
        "trace_upstream": [],
        "trace_view": [],
        "column_view": [],
    }
    trace_cpu: list[float] = []
    for _ in range(args.breakdown):
        t0 = time.perf_counter()
        share = find_share(settings, share_id)
        t1 = time.perf_counter()
        with engine.connect() as conn:
            c0 = time.process_time()
            result = trace_upstream(conn, "file", share.file_path or "", share.sha256)
            trace_cpu.append(time.process_time() - c0)
            t2 = time.perf_counter()
            view = trace_view(result, lambda kind, **params: f"/{kind}", conn)
            t3 = time.perf_counter()
        column_view(share)
        t4 = time.perf_counter()
        for key, value in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            parts[key].append(value)
    sources = len(view["sources"])
    graph_nodes = len(result.graph["nodes"])
    log(
        f"  trace: {sources} sources, {graph_nodes} graph nodes; medians "
        + ", ".join(f"{k} {statistics.median(v) * 1e3:.0f} ms" for k, v in parts.items())
    )

    # The page through the app ---------------------------------------------------------------------------
    app, client, _ = viewer_client(settings)
    forget_kept(engine)  # each share's first GET below works its summary out (reported as ``first_ms``)
    with client:
        page = time_page(client, share_id, args.requests, sources, dbs)
        log(
            "  GET /shares/{{id}}: first {first:.0f} ms, then median {p50:.0f} ms, p95 {p95:.0f} ms".format(
                first=page["first_ms"], **page["wall_ms"]
            )
        )
        wide_sources = wide_rounds * seed_schools
        wide_page = time_page(client, wide_id, args.requests, wide_sources, dbs)
        log(
            "  GET /shares/{{id}} of the wide share ({count} sources): "
            "first {first:.0f} ms, then median {p50:.0f} ms, p95 {p95:.0f} ms".format(
                count=wide_sources, first=wide_page["first_ms"], **wide_page["wall_ms"]
            )
        )
        by_school = time_page(client, share_id, args.requests, sources, dbs, query="?by=school")
        paged = time_page(client, share_id, args.requests, sources, dbs, query="?page=20")
        scaling = []
        for size, smaller in smaller_shares:
            timed = time_page(client, smaller, args.requests // 2, size, dbs)
            scaling.append({"sources": size, **timed})
            log(
                f"  GET /shares/{{id}} of a share of {size} extracts: median {timed['wall_ms']['p50']:.0f} ms"
            )
    profile = profile_page(app, share_id)
    log(f"  page handler called directly: {profile['handler_ms']:.0f} ms; profile {profile['cumulative_ms']}")
    # The page's old path on the wide share (trace_upstream walk level by level, then the old page model).
    wide = find_share(settings, wide_id)
    wide_old = []
    for _ in range(max(1, args.breakdown - 1)):
        t0 = time.perf_counter()
        with engine.connect() as conn:
            wide_result = trace_upstream(conn, "file", wide.file_path or "", wide.sha256 or "")
            trace_view(wide_result, lambda kind, **params: f"/{kind}", conn)
        wide_old.append(time.perf_counter() - t0)
    if len(wide_result.sources) != wide_sources:
        raise RuntimeError(f"the wide share traces to {len(wide_result.sources)} sources, not {wide_sources}")
    log(f"  old path on the wide share: {statistics.median(wide_old):.1f} s")

    # naive: the per-edge walk -------------------------------------------------------------------------------
    ours_sources = sorted((s.namespace, s.name, s.version) for s in result.sources)
    naive_walls = []
    statements = StatementTimer(engine)
    for _ in range(args.naive_traces):
        t0 = time.perf_counter()
        naive_sources = naive_trace(engine, "file", share.file_path or "", share.sha256 or "")
        naive_walls.append(time.perf_counter() - t0)
        if naive_sources != ours_sources:
            raise RuntimeError("ours and naive trace disagree on the sources")
    naive_statements = len(statements.take()) // max(1, args.naive_traces)
    with engine.connect() as conn:
        trace_upstream(conn, "file", share.file_path or "", share.sha256)
    ours_statements = len(statements.take())
    log(f"  naive trace: {statistics.median(naive_walls):.1f} s ({naive_statements} statements)")
    result_json = {
        "seed_schools": seed_schools,
        "terms": copies,
        "extracts": seed_schools * copies,
        "template_event_bytes": template.event_bytes,
        "seed": {"events": stored, **seed_clock.as_dict(), "events_per_s": stored / seed_clock.wall},
        "share_event_bytes": len(payload),
        "share_event_commit_s": share_event_s,
        "copy": {"rows": copied_rows, "tables": copied, **copy_clock.as_dict()},
        "store_counts": counts,
        "store_mib": db_size_mib(engine),
        "sources": sources,
        "graph_nodes": graph_nodes,
        "graph_runs": view["run_count"],
        "svg_drawn": view["svg"] is not None,
        "breakdown_ms": {k: statistics.median(v) * 1e3 for k, v in parts.items()},
        "trace_upstream_cpu_ms": statistics.median(trace_cpu) * 1e3,
        "page": page,
        "ours_direct_ms": summary(ours_direct),
        "ours_direct_kept_ms": summary(ours_kept),
        "old_path_ms": {k: statistics.median(v) * 1e3 for k, v in parts.items()},
        "page_by_school": by_school,
        "page_20": paged,
        "wide": {"sources": wide_sources, "page": wide_page, "old_path_s": wide_old},
        "smaller_shares": scaling,
        "wide_share_lookups": wide_lookups,
        "profile": profile,
        "trace_statements": ours_statements,
        "naive_trace_s": naive_walls,
        "naive_statements": naive_statements,
        "speedup_trace_median": statistics.median(naive_walls) / statistics.median(parts["trace_upstream"]),
    }
    engine.dispose()
    return result_json


def time_page(
    client: Any, share_id: str, requests: int, sources: int, dbs: Sequence[str], query: str = ""
) -> Json:
    """``GET /shares/{id}`` ``requests`` times after 3 warm-ups; every answer must count every source and
    list one page of them. The first warm-up's wall time is reported too: with no kept summary it is the
    page that works the lineage out."""
    from censustrace.viewer.share_graph import PAGE_SIZE

    walls, cpus, server_cpus, sizes = [], [], [], []
    for n in range(3 + requests):
        with Clock(dbs) as clock:
            response = client.get(f"/shares/{share_id}{query}")
        if response.status_code != 200:
            raise RuntimeError(f"GET /shares/{share_id}{query}: {response.status_code}")
        if f"Received census files behind this share: {sources}" not in response.text:
            raise RuntimeError("the share page does not count every source file")
        if "page=" not in query and response.text.count('<td class="mono sha">') != min(sources, PAGE_SIZE):
            raise RuntimeError("the share page does not list a full page of source files")
        if n == 0:
            first = clock.wall
        if n >= 3:
            walls.append(clock.wall)
            cpus.append(clock.cpu)
            server_cpus.append(clock.server_cpu)
            sizes.append(len(response.content))
    return {
        "first_ms": first * 1e3,
        "wall_ms": summary(walls),
        "cpu_ms": summary(cpus),
        "postgres_cpu_ms": summary(server_cpus),
        "bytes": statistics.median(sizes),
    }


def forget_kept(engine: Engine) -> None:
    """Drop every kept upstream summary (``censustrace.lineage.store.upstream``)."""
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM upstream_sources"))
        conn.execute(text("DELETE FROM upstream_summaries"))


def share_lineage_direct(engine: Engine, share: Any) -> Json:
    """What the page computes for "Where it came from", called directly (no HTTP, template)."""
    from censustrace.lineage.store.queries import find_dataset, find_dataset_version
    from censustrace.viewer.share_graph import share_lineage

    with engine.connect() as conn:
        dataset_id = find_dataset(conn, "file", share.file_path)
        start = find_dataset_version(conn, dataset_id or -1, share.sha256)
        if start is None:
            raise RuntimeError("no lineage for the share file")
        return share_lineage(
            conn, start, share_id=share.share_id, start_label="to x", by="", page=1, href=lambda *a, **k: "/"
        )


def make_wide_share(
    engine: Engine, settings: Settings, traced_row: Json, rounds: int, top_version: int
) -> str:
    """A share whose release read the same tables as the traced share in ``rounds`` census rounds (the
    original and ``rounds - 1`` copies made by :func:`copy_store`, whose version ids are the original's
    plus ``n * top_version``): its lineage is made in SQL, its register row copied from the traced one."""
    from censustrace.shares.check import share_id_for

    share_id = share_id_for(TRACED_AGREEMENT, f"bench-wide-{rounds}")
    # The register keeps the outbox-relative path; the lineage store names the file by its full path.
    traced_path = str(settings.share_outbox_dir.expanduser().resolve() / traced_row["file_path"])
    file_path = f"{traced_path}.wide{rounds}"
    sha = hashlib.sha256(file_path.encode()).hexdigest()
    with engine.begin() as conn:
        start = conn.execute(
            text(
                "SELECT dv.id, d.namespace_id FROM dataset_versions dv "
                "JOIN datasets d ON d.id = dv.dataset_id "
                "WHERE d.name = :name AND dv.version = :version"
            ),
            {"name": traced_path, "version": traced_row["sha256"]},
        ).one()
        release = conn.execute(
            text(
                "SELECT run_id FROM run_dataset_versions "
                "WHERE dataset_version_id = :v AND direction = 'output'"
            ),
            {"v": start[0]},
        ).scalar_one()
        now = "2026-10-15T06:00:00.000000000Z"
        run_id = conn.execute(
            text(
                "INSERT INTO runs (run_uuid, job_id, parent_run_uuid, state, state_time, started_at, "
                "ended_at, created_at, updated_at) SELECT :uuid, job_id, NULL, state, state_time, "
                "started_at, ended_at, "
                "created_at, updated_at FROM runs WHERE id = :run RETURNING id"
            ),
            {"uuid": str(uuid.uuid4()), "run": release},
        ).scalar_one()
        dataset_id = conn.execute(
            text(
                "INSERT INTO datasets (namespace_id, name, created_at) VALUES (:ns, :name, :at) RETURNING id"
            ),
            {"ns": start[1], "name": file_path, "at": now},
        ).scalar_one()
        version_id = conn.execute(
            text(
                "INSERT INTO dataset_versions (dataset_id, version, version_source, created_by_run_id, "
                "created_at, produced_at) VALUES (:d, :v, 'facet', :r, :at, :at) RETURNING id"
            ),
            {"d": dataset_id, "v": sha, "r": run_id, "at": now},
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO run_dataset_versions (run_id, dataset_version_id, direction, created_at) "
                "VALUES (:r, :v, 'output', :at)"
            ),
            {"r": run_id, "v": version_id, "at": now},
        )
        conn.execute(
            text(
                "INSERT INTO run_dataset_versions (run_id, dataset_version_id, direction, created_at) "
                "SELECT :r, i.dataset_version_id + n * :top, 'input', :at FROM run_dataset_versions i "
                "CROSS JOIN generate_series(0, :last) n WHERE i.run_id = :release AND i.direction = 'input'"
            ),
            {"r": run_id, "top": top_version, "last": rounds - 1, "at": now, "release": release},
        )
        conn.execute(text("ANALYZE run_dataset_versions"))
    row = {
        **traced_row,
        "share_id": share_id,
        "file_path": f"{traced_row['file_path']}.wide{rounds}",
        "sha256": sha,
    }
    row.pop("id", None)
    with warehouse_db.write_transaction(warehouse_db.warehouse_engine(settings.warehouse_db_url)) as conn:
        conn.execute(insert(shares), [row])
    return share_id


PROFILED = (
    "shares.share_page",
    "register.find_share",
    "trace.trace_upstream",
    "trace._walk",
    "trace._quality",
    "queries.merged_facets",
    "queries.version_refs",
    "queries.run_summaries",
    "trace.to_dict",
    "lineage_views.trace_view",
    "lineage_views.census_facets_by_sha",
    "deps.href",
    "shares._render",
    "environment.render",
)


def profile_page(app: Any, share_id: str) -> Json:
    """The page handler called directly (no HTTP, session check or middleware): its time unprofiled
    (median of 3), then one run under cProfile, with the cumulative time of the functions that matter."""
    import cProfile
    import pstats

    from starlette.requests import Request

    from censustrace.viewer import auth
    from censustrace.viewer.routes.shares import share_page

    scope = {
        "type": "http",
        "app": app,
        "method": "GET",
        "path": f"/shares/{share_id}",
        "root_path": "",
        "query_string": b"",
        "headers": [],
        "router": app.router,
    }
    user = auth.Principal(name="clara", role="compliance", via="session", csrf_token="x")
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        share_page(Request(scope), user, share_id)
        walls.append(time.perf_counter() - t0)
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.runcall(share_page, Request(scope), user, share_id)
    profiled = time.perf_counter() - t0
    stats = pstats.Stats(profiler)
    cumulative: dict[str, float] = {}
    calls: dict[str, int] = {}
    rows = stats.stats  # type: ignore[attr-defined]
    for (file, _, name), (_, ncalls, _, cumtime, _) in rows.items():
        key = f"{Path(file).stem}.{name}"
        if key in PROFILED:
            cumulative[key] = cumulative.get(key, 0.0) + cumtime * 1e3
            calls[key] = calls.get(key, 0) + ncalls
    top = sorted(rows.items(), key=lambda item: -item[1][2])[:12]
    return {
        "handler_ms": statistics.median(walls) * 1e3,
        "profiled_ms": profiled * 1e3,
        "cumulative_ms": {k: round(cumulative[k], 1) for k in PROFILED if k in cumulative},
        "calls": {k: calls[k] for k in PROFILED if k in calls},
        "top_self_ms": [
            {
                "function": f"{Path(file).stem}.{name}:{line}",
                "calls": value[1],
                "self_ms": round(value[2] * 1e3, 1),
            }
            for (file, line, name), value in top
        ],
    }


# Report -----------------------------------------------------------------------------------------------------
# 3. The share register -----------------------------------------------------------------------------------
REGISTER_QUERIES: tuple[tuple[str, dict[str, str]], ...] = (
    ("newest first, page 1", {}),
    ("status = blocked", {"status": "blocked"}),
    ("recipient contains 'council'", {"recipient": "council"}),
    ("any text 'immigration'", {"q": "immigration"}),
    ("sorted by pupils, ascending", {"sort": "pupils", "order": "asc"}),
    ("page 50", {"page": "50"}),
)


def naive_register(settings: Settings, params: dict[str, str], limit: int) -> tuple[list[str], int]:
    """The register as the viewer made it before: every share row (every column, release events too) read
    by ``list_shares``, filtered and sorted in Python, then one page cut out."""
    from censustrace.shares.register import list_shares
    from censustrace.viewer.shares_views import _register_row, _sensitive_fields

    sensitive = _sensitive_fields(settings)
    rows = [_register_row(share, sensitive) for share in list_shares(settings)]
    status, recipient = params.get("status", ""), params.get("recipient", "").lower()
    purpose, needle = params.get("purpose", "").lower(), params.get("q", "").strip().lower()
    rows = [
        r
        for r in rows
        if (not status or r["status"] == status)
        and (not recipient or recipient in str(r["recipient"]).lower())
        and (not purpose or purpose in str(r["purpose"]).lower())
        and (not needle or any(needle in str(v).lower() for v in r.values()))
    ]
    key = params.get("sort", "date")
    descending = params.get("order") != "asc"
    rows.sort(key=lambda r: (r[key] if r[key] is not None else -1, r["share_id"]), reverse=descending)
    offset = (int(params.get("page", "1")) - 1) * limit
    return [r["share_id"] for r in rows[offset : offset + limit]], len(rows)


def bench_register(args: argparse.Namespace, settings: Settings, schools: list[str], dbs: list[str]) -> Json:
    """``--register-shares`` rows in the register (clones of real rows of every agreement, delivered and
    blocked, over five years), then ``GET /shares`` with each filter of REGISTER_QUERIES through the app
    (ours: filtered, sorted and paged in SQL) against :func:`naive_register`, in the same run."""
    from urllib.parse import urlencode

    from censustrace.consent.policies import load_policy
    from censustrace.shares.check import share_id_for
    from censustrace.viewer.routes.shares import REGISTER_PAGE_SIZE

    policy = load_policy(settings.policies_dir)
    rng = random.Random(args.seed + 16)
    bases: list[Json] = []
    for agreement in sorted(policy.agreements.values(), key=lambda a: a.id):
        delivered = share_values(
            settings,
            agreement,
            share_id_for(agreement.id, "register-base"),
            status=DELIVERED,
            pupils=500,
            source_extracts=schools[:3],
            as_of=date(2026, 10, 15),
            rng=rng,
        )
        reason = {"code": "CT-POLICY-NO-APPROVAL", "message": f"{agreement.id}: no approval", "field": None}
        blocked = {
            **delivered,
            "status": "blocked",
            "reasons": [reason],
            "file_path": None,
            "lineage_event": None,
            "delivered_at": None,
            "recorded_at": None,
        }
        bases += [delivered, blocked]
    log(f"register: {args.register_shares} shares cloned from {len(bases)} real rows")
    rows = []
    for n in range(args.register_shares):
        base = rng.choice(bases)
        created = BASE_TIME - timedelta(days=rng.randint(0, 5 * 365), minutes=rng.randint(0, 1440))
        share_id = share_id_for(base["agreement_id"], f"register-{n}")
        rows.append(
            {
                **base,
                "share_id": share_id,
                "pupils": rng.randint(10, 60_000),
                "created_at": created,
                "built_at": created,
                "delivered_at": created + timedelta(minutes=5) if base["status"] == DELIVERED else None,
                "file_name": f"{share_id}.csv",
                "file_path": f"{base['file_path']}.{n}" if base["file_path"] else None,
            }
        )
    engine = warehouse_db.warehouse_engine(settings.warehouse_db_url)
    with Clock(dbs) as insert_clock:
        for start in range(0, len(rows), 1000):
            with warehouse_db.write_transaction(engine) as conn:
                conn.execute(insert(shares), rows[start : start + 1000])
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE shares"))
            total = int(conn.execute(text("SELECT count(*) FROM shares")).scalar_one())
            mib = float(conn.execute(text("SELECT pg_total_relation_size('shares')")).scalar_one()) / 2**20
    log(f"  {len(rows)} rows in {insert_clock.wall:.0f} s; register holds {total} shares, {mib:.0f} MiB")
    _, client, _ = viewer_client(settings)
    results = []
    with client:
        for label, params in REGISTER_QUERIES:
            url = "/shares" + ("?" + urlencode(params) if params else "")
            walls = []
            for n in range(2 + args.requests):
                t0 = time.perf_counter()
                response = client.get(url)
                if n >= 2:
                    walls.append(time.perf_counter() - t0)
                if response.status_code != 200:
                    raise RuntimeError(f"GET {url}: {response.status_code}")
            matched = re.search(r"(\d+) match", response.text)
            ours_total = int(matched.group(1)) if matched else -1
            naive_walls = []
            for _ in range(args.naive_register):
                t0 = time.perf_counter()
                _, naive_total = naive_register(settings, params, REGISTER_PAGE_SIZE)
                naive_walls.append(time.perf_counter() - t0)
            if naive_total != ours_total:
                raise RuntimeError(f"{label}: ours counts {ours_total} shares, naive {naive_total}")
            ours, naive = summary(walls), summary(naive_walls)
            results.append(
                {"query": label, "url": url, "matches": ours_total, "ours_ms": ours, "naive_ms": naive}
            )
            log(
                f"  {label}: {ours_total} match; ours p50 {ours['p50']:.0f} ms, p95 {ours['p95']:.0f} ms; "
                f"naive p50 {naive['p50']:.0f} ms"
            )
    return {"shares": total, "table_mib": mib, "insert": insert_clock.as_dict(), "queries": results}


def markdown(report: Json) -> str:
    out = []
    sa = report.get("subject_access")
    if sa:
        out.append("| measure | lookups | p50 ms | p95 ms | p99 ms | max ms |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, key in (
            ("`subject_access()` wall", "ours_wall_ms"),
            ("`subject_access()` CPU of this process", "ours_cpu_ms"),
            ("its SQL statements in the driver", "ours_sql_ms"),
            ("PostgreSQL execution + planning (EXPLAIN ANALYZE)", "ours_server_ms"),
            ("found pupils, wall", "ours_found_wall_ms"),
            ("absent pupils, wall", "ours_absent_wall_ms"),
        ):
            s = sa[key]
            out.append(
                f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |"
            )
        for label, s in (
            ("API `POST /api/v1/disclosures/search` wall", sa["api"]["wall_ms"]),
            ("API CPU of this process (client + app)", sa["api"]["cpu_ms"]),
            ("naive: disclosure query without the index (execution)", sa["naive_execution_ms"]),
            ("ours: disclosure query (execution)", sa["ours_main_execution_ms"]),
        ):
            out.append(
                f"| {label} | {s['n']} | {s['p50']:.2f} | {s['p95']:.2f} | {s['p99']:.2f} | {s['max']:.2f} |"
            )
    sp = report.get("share_page")
    if sp:
        out.append("")
        out.append("| measure | n | median ms | p95 ms | max ms |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        for label, s in (
            ("`GET /shares/{id}` wall", sp["page"]["wall_ms"]),
            ("CPU of this process (client + app)", sp["page"]["cpu_ms"]),
            ("CPU of the PostgreSQL backends", sp["page"]["postgres_cpu_ms"]),
        ):
            out.append(f"| {label} | {s['n']} | {s['p50']:.0f} | {s['p95']:.0f} | {s['max']:.0f} |")
        for label, s in (
            (
                f"wide share ({sp['wide']['sources']} sources) `GET /shares/{{id}}` wall",
                sp["wide"]["page"]["wall_ms"],
            ),
            ("`GET /shares/{id}?by=school` wall", sp["page_by_school"]["wall_ms"]),
            ("`GET /shares/{id}?page=20` wall", sp["page_20"]["wall_ms"]),
            ("`share_lineage()` called directly, worked out", sp["ours_direct_ms"]),
            ("`share_lineage()` called directly, kept summary", sp["ours_direct_kept_ms"]),
        ):
            out.append(f"| {label} | {s['n']} | {s['p50']:.0f} | {s['p95']:.0f} | {s['max']:.0f} |")
        for label, first in (
            ("first `GET /shares/{id}` (works the summary out)", sp["page"]["first_ms"]),
            ("first `GET /shares/{id}` of the wide share", sp["wide"]["page"]["first_ms"]),
        ):
            out.append(f"| {label} | 1 | {first:.0f} | | |")
        old = sp["old_path_ms"]
        out.append(
            "| old path (find_share + trace_upstream + trace_view), the traced share | - "
            f"| {sum(old.values()):.0f} | | |"
        )
        out.append(
            f"| old path, wide share | - | {statistics.median(sp['wide']['old_path_s']) * 1e3:.0f} | | |"
        )
    rg = report.get("register")
    if rg:
        out.append("")
        out.append(f"Register of {rg['shares']:,} shares:")
        out.append("")
        out.append("| query | matches | ours p50 ms | ours p95 ms | naive p50 ms | naive p95 ms |")
        out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
        for q in rg["queries"]:
            o, n = q["ours_ms"], q["naive_ms"]
            cells = f"{o['p50']:.0f} | {o['p95']:.0f} | {n['p50']:.0f} | {n['p95']:.0f}"
            out.append(f"| {q['query']} | {q['matches']:,} | {cells} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--parts", default="subject,share,register", help="comma-separated: subject, share, register"
    )
    parser.add_argument("--disclosures", type=int, default=10_000_000)
    parser.add_argument("--pupils", type=int, default=9_000_000, help="distinct pupils in the disclosure log")
    parser.add_argument("--shares", type=int, default=2000)
    parser.add_argument("--lookups", type=int, default=200)
    parser.add_argument("--naive-lookups", type=int, default=10)
    parser.add_argument("--schools", type=int, default=2000)
    parser.add_argument("--terms", type=int, default=15, help="census rounds per school (5 years x 3 terms)")
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--breakdown", type=int, default=3)
    parser.add_argument("--smaller", default="25,100,500", help="also time shares of this many extracts")
    parser.add_argument("--naive-traces", type=int, default=1)
    parser.add_argument(
        "--wide-rounds", type=int, default=10, help="rounds behind the wide share (x schools)"
    )
    parser.add_argument("--register-shares", type=int, default=10_000)
    parser.add_argument("--naive-register", type=int, default=3, help="naive register calls per query")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a minute or two")
    args = parser.parse_args()
    # A plain kill unwinds the ExitStack, so the throwaway databases are dropped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.quick:
        args.disclosures, args.pupils, args.shares, args.lookups = 200_000, 180_000, 200, 60
        args.naive_lookups, args.schools, args.terms, args.requests = 3, 100, 3, 5
        args.smaller, args.wide_rounds, args.register_shares = "10,50", 2, 1000
    parts = set(args.parts.split(","))
    report: Json = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "args": {k: str(v) for k, v in vars(args).items()},
        "load_average_start": os.getloadavg(),
    }
    run_clock = Clock([])
    with ExitStack() as stack, run_clock:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-viewer-")))
        databases = Databases("postgres", work, args.postgres_url, stack)
        report["machine"] = machine(databases.server_version() or "?")
        warehouse_url, lineage_url = databases.new("warehouse"), databases.new("lineage")
        dbs = [db_name(warehouse_url), db_name(lineage_url)]
        settings = Settings(
            home=work / "home",
            warehouse_url=warehouse_url,
            lineage_url=lineage_url,
            pupil_key_secret=SECRET,  # type: ignore[arg-type]
        )
        settings.ensure_dirs()
        warehouse_db.upgrade(warehouse_url)
        schools = insert_extracts(warehouse_db.warehouse_engine(warehouse_url), args.schools)
        if "subject" in parts:
            with Clock(dbs) as clock:
                report["subject_access"] = bench_subject_access(args, settings, schools, dbs)
            report["subject_access"]["part"] = clock.as_dict()
            report["warehouse_mib"] = db_size_mib(warehouse_db.warehouse_engine(warehouse_url))
        if "share" in parts:
            with Clock(dbs) as clock:
                report["share_page"] = bench_share_page(args, settings, schools, dbs)
            report["share_page"]["part"] = clock.as_dict()
        if "register" in parts:
            with Clock(dbs) as clock:
                report["register"] = bench_register(args, settings, schools, dbs)
            report["register"]["part"] = clock.as_dict()
        warehouse_db.dispose_engines()
    report["total"] = run_clock.as_dict()
    report["load_average_end"] = os.getloadavg()
    print(markdown(report))
    print(f"total: {run_clock.wall:.0f} s wall, {run_clock.cpu:.0f} s CPU of this process")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
