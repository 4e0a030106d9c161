"""Lineage store benchmarks: ingest throughput, trace-back latency and emission overhead, each against a
naive baseline measured in the same run.

Run: ``.venv/bin/python bench/bench_lineage.py [--quick] [--backends sqlite,postgres] [--json out.json]``

1. **Events stored per second**, START+COMPLETE pairs of one task that reads a versioned archived census
   file (version and ``censusExtract`` custom facets) and writes a versioned warehouse table (at COMPLETE:
   version, 30-field schema, outputStatistics), with parent and nominal-time run facets; 2.4-4.9 KB,
   ~3.7 KB on average. One client emits sequentially, through:
   ``http``: ``OpenLineageClient`` + ``HttpTransport`` (requests, keep-alive session) POSTing to the lineage
   API served by a real uvicorn in its own process on 127.0.0.1; ``transport``: ``OpenLineageClient`` +
   ``CensustraceTransport`` with only ``store_url``; ``store_event``: the store function called directly;
   ``naive``: a textbook SQLAlchemy ORM store (below), one session and commit per event, in its own
   database. Every path starts from the same typed events, so all include ``Serde.to_json``.
2. **Trace-back latency** (``trace_upstream``) from random dataset versions, and from share versions
   (the longest chains), on a store of ``--runs`` runs and ``--versions`` dataset versions shaped like
   the pipeline: landing file -> archived file -> extract (one table per census module) -> warehouse
   tables -> share. Ingesting all of it through ``store_events`` would take ~1 (SQLite) and ~2
   (PostgreSQL) minutes on 2 cores, so ``--seed-chains`` chains (one school each) are ingested through
   ``store_events`` (batches of 50 events) and the store is then filled with renamed copies of those rows
   (new run ids, dataset versions and archive names), inserted in bulk: each copy is a resubmission of
   every seed school's file. ``--seed-chains`` = ``--runs``/4 ingests everything. The naive baseline walks
   the same store recursively, one query per edge, version and run.
3. **Emission overhead**: ``censustrace.intake.receive.receive`` on a fresh 1 MiB file (copy, sha256,
   fsync), alone or with a START and a COMPLETE event emitted through ``CensustraceTransport``.

PostgreSQL: throwaway databases ``censustrace_bench_<random>`` on ``--postgres-url`` (dropped at the end).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import httpx
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.generated import parent_run
from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet
from openlineage.client.generated.job_type_job import JobTypeJobFacet
from openlineage.client.generated.nominal_time_run import NominalTimeRunFacet
from openlineage.client.generated.output_statistics_output_dataset import (
    OutputStatisticsOutputDatasetFacet,
)
from openlineage.client.generated.schema_dataset import SchemaDatasetFacet, SchemaDatasetFacetFields
from openlineage.client.serde import Serde
from openlineage.client.transport.http import HttpConfig, HttpTransport
from sqlalchemy import (
    JSON,
    Engine,
    ForeignKey,
    Index,
    String,
    Text,
    create_engine,
    func,
    insert,
    select,
    text,
)
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from censustrace.config import Settings
from censustrace.intake.receive import receive
from censustrace.lineage.facets import CensusExtractDatasetFacet
from censustrace.lineage.model import StepLineage
from censustrace.lineage.store import (
    make_engine,
    parse_event,
    store_event,
    store_events,
    trace_upstream,
    upgrade,
)
from censustrace.lineage.store.tables import (
    dataset_versions,
    datasets,
    facets,
    job_datasets,
    namespaces,
    raw_events,
    run_dataset_versions,
    runs,
)
from censustrace.lineage.transport import CensustraceTransport, CensustraceTransportConfig

DEFAULT_POSTGRES_URL = os.environ.get(
    "CENSUSTRACE_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)
PRODUCER = "https://github.com/censustrace/censustrace/tree/main/bench"
JOB_NAMESPACE = "censustrace"
WAREHOUSE = "postgres://127.0.0.1:5432"
ROOT = "/srv/censustrace"
BASE_TIME = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
WARMUP_EVENTS = 10
STORE_BATCH = 50
INSERT_BATCH = 5000
CENSUS_MODULES = (
    "pupil_on_roll", "pupil_address", "fsm_period", "sen_need", "sen_provision", "exclusion",
    "attendance_term", "attendance_session", "learner_support", "home_information", "top_up_funding",
    "early_years", "class", "pupil_ethnicity", "pupil_language", "youth_support", "school_characteristics",
    "pupil_characteristics", "enrolment", "funded_hours", "disability_access", "post_looked_after",
    "service_child", "boarder",
)  # fmt: skip
SCHEMA_FIELDS = (
    "pupil_key", "laestab", "urn", "term", "year", "reference_date", "enrol_status", "entry_date",
    "ncyear_actual", "ncyear_group", "gender", "birth_year_month", "ethnicity", "language", "fsm_eligible",
    "fsm_ever6", "sen_provision", "sen_need_1", "sen_need_2", "part_time", "boarder", "service_child",
    "learner_support_code", "funded_hours", "extended_hours", "top_up_funding", "attendance_sessions",
    "absence_authorised", "absence_unauthorised", "postcode_district",
)  # fmt: skip
Json = dict[str, Any]


# Small helpers -----------------------------------------------------------------------------------------
def stamp(seconds: float) -> str:
    return (BASE_TIME + timedelta(seconds=seconds)).isoformat(timespec="microseconds").replace("+00:00", "Z")


def median_p95(values: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def rng_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def rng_sha(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


# Machine ---------------------------------------------------------------------------------------------
def _filesystem(path: Path) -> str:
    best, kind = "", "?"
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mount, fstype, *_ = line.split()
        if str(path.resolve()).startswith(mount) and len(mount) > len(best):
            best, kind = mount, fstype
    return kind


def machine(workdir: Path) -> Json:
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
        "sqlite": sqlite3.sqlite_version,
        "postgresql": None,
        "workdir_filesystem": _filesystem(workdir),
        "packages": {
            name: importlib_metadata.version(name)
            for name in (
                "SQLAlchemy",
                "psycopg2-binary",
                "openlineage-python",
                "uvicorn",
                "fastapi",
                "requests",
            )
        },
    }


# Databases -------------------------------------------------------------------------------------------
class Databases:
    """New empty databases on demand: SQLite files in the work folder, or PostgreSQL databases created on
    the server (AUTOCOMMIT, ``CREATE DATABASE censustrace_bench_<random>``) and dropped on close."""

    def __init__(self, backend: str, workdir: Path, postgres_url: str, stack: ExitStack) -> None:
        self.backend = backend
        self.workdir = workdir
        self.admin: Engine | None = None
        if backend == "postgres":
            self.admin = create_engine(
                postgres_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
            )
            stack.callback(self.admin.dispose)
        self.stack = stack

    def server_version(self) -> str | None:
        if self.admin is None:
            return None
        with self.admin.connect() as conn:
            return str(conn.execute(text("SHOW server_version")).scalar_one())

    def new(self, purpose: str) -> str:
        if self.admin is None:
            return f"sqlite:///{self.workdir / f'{purpose}.db'}"
        name = f"censustrace_bench_{secrets.token_hex(6)}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.stack.callback(self._drop, name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def _drop(self, name: str) -> None:
        assert self.admin is not None
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def count_rows(url: str, table: Any) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


# Realistic task events ---------------------------------------------------------------------------------
def run_facets(rng: random.Random, nominal: str) -> Json:
    """What the Airflow provider puts on every task run: its DAG run and nominal time."""
    return {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=rng_uuid(rng)),
            job=parent_run.Job(namespace=JOB_NAMESPACE, name="warehouse_load"),
        ),
        "nominalTime": NominalTimeRunFacet(nominalStartTime=nominal),
    }


JOB_FACETS = {"jobType": JobTypeJobFacet(processingType="BATCH", integration="AIRFLOW", jobType="TASK")}
SCHEMA = SchemaDatasetFacet(
    fields=[
        SchemaDatasetFacetFields(name=name, type="VARCHAR" if i % 3 else "INTEGER", description=None)
        for i, name in enumerate(SCHEMA_FIELDS)
    ]
)


def census_file(rng: random.Random, index: int, sha: str) -> Json:
    estab = 4000 + index % 300
    return {
        "version": DatasetVersionDatasetFacet(datasetVersion=sha),
        "censusExtract": CensusExtractDatasetFacet(
            sha256=sha,
            size=rng.randint(200_000, 3_000_000),
            originalName=f"SC_330_{estab}_AUT_2026.xml",
            receivedAt=stamp(index * 60 - 3600),
            format="school_census_xml",
            laestab=f"330{estab}",
            urn=f"{100000 + estab}",
            term="AUT",
            year=2026,
            referenceDate="2026-10-01",
            pupilCount=rng.randint(100, 1500),
        ),
    }


def task_run(rng: random.Random, index: int) -> list[RunEvent]:
    """START and COMPLETE of one load task: the output's version, schema and statistics are known at
    COMPLETE only, as the task writes them."""
    run_id, sha, table_version = rng_uuid(rng), rng_sha(rng), f"load-{index:07d}-{rng.getrandbits(32):08x}"
    nominal = stamp(index * 60)
    facets_of_run = run_facets(rng, nominal)
    file_facets = census_file(rng, index, sha)
    source = InputDataset(namespace="file", name=f"{ROOT}/archive/{sha[:2]}/{sha}", facets=file_facets)
    started = OutputDataset(namespace=WAREHOUSE, name="census.warehouse.pupil_on_roll")
    written = OutputDataset(
        namespace=WAREHOUSE,
        name="census.warehouse.pupil_on_roll",
        facets={"schema": SCHEMA, "version": DatasetVersionDatasetFacet(datasetVersion=table_version)},
        outputFacets={
            "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=rng.randint(100, 1500), size=None)
        },
    )
    job = Job(namespace=JOB_NAMESPACE, name="warehouse_load.load_pupil_on_roll", facets=JOB_FACETS)
    return [
        RunEvent(
            eventType=state,
            eventTime=stamp(index * 60 + offset),
            run=Run(runId=run_id, facets=facets_of_run),
            job=job,
            inputs=[source],
            outputs=[output],
            producer=PRODUCER,
        )
        for state, offset, output in ((RunState.START, 0, started), (RunState.COMPLETE, 7.5, written))
    ]


def task_events(seed: int, count: int, start: int = 0) -> list[RunEvent]:
    rng = random.Random(seed)
    return [event for i in range(start, start + (count + 1) // 2) for event in task_run(rng, i)][:count]


# Naive ingest baseline -----------------------------------------------------------------------------------
class NaiveBase(DeclarativeBase):
    """What one writes first: an ORM model per thing, a look-up query before each insert, one commit per
    event. Indexed look-up columns (a fair baseline); no JSON Schema validation, no out-of-order merge, no
    derived-version bookkeeping."""


class NaiveEvent(NaiveBase):
    __tablename__ = "naive_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_hash: Mapped[str] = mapped_column(String(64), index=True)
    event_type: Mapped[str | None] = mapped_column(String(16))
    event_time: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)


class NaiveJob(NaiveBase):
    __tablename__ = "naive_jobs"
    __table_args__ = (Index("ix_naive_jobs_name", "namespace", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)


class NaiveRun(NaiveBase):
    __tablename__ = "naive_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_uuid: Mapped[str] = mapped_column(String(36), index=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("naive_jobs.id"))
    job: Mapped[NaiveJob] = relationship()
    state: Mapped[str | None] = mapped_column(String(16))
    started_at: Mapped[str | None] = mapped_column(String(40))
    ended_at: Mapped[str | None] = mapped_column(String(40))


class NaiveDataset(NaiveBase):
    __tablename__ = "naive_datasets"
    __table_args__ = (Index("ix_naive_datasets_name", "namespace", "name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    namespace: Mapped[str] = mapped_column(String)
    name: Mapped[str] = mapped_column(String)


class NaiveVersion(NaiveBase):
    __tablename__ = "naive_versions"
    __table_args__ = (Index("ix_naive_versions_version", "dataset_id", "version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("naive_datasets.id"))
    dataset: Mapped[NaiveDataset] = relationship()
    version: Mapped[str] = mapped_column(String)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("naive_runs.id"))
    created_by: Mapped[NaiveRun | None] = relationship()


class NaiveRunVersion(NaiveBase):
    __tablename__ = "naive_run_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("naive_runs.id"), index=True)
    run: Mapped[NaiveRun] = relationship()
    version_id: Mapped[int] = mapped_column(ForeignKey("naive_versions.id"), index=True)
    version: Mapped[NaiveVersion] = relationship()
    direction: Mapped[str] = mapped_column(String(6))


class NaiveFacet(NaiveBase):
    __tablename__ = "naive_facets"
    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[int] = mapped_column(ForeignKey("naive_events.id"))
    event: Mapped[NaiveEvent] = relationship()
    owner: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int | None] = mapped_column(ForeignKey("naive_runs.id"))
    run: Mapped[NaiveRun | None] = relationship()
    version_id: Mapped[int | None] = mapped_column(ForeignKey("naive_versions.id"))
    version: Mapped[NaiveVersion | None] = relationship()
    name: Mapped[str] = mapped_column(String)
    body: Mapped[Json] = mapped_column(JSON)


def _get_or_add(session: Session, model: Any, **key: Any) -> Any:
    found = session.scalars(select(model).filter_by(**key)).first()
    if found is None:
        found = model(**key)
        session.add(found)
    return found


def naive_store(engine: Engine, payload: str) -> None:
    event = json.loads(payload)
    digest = hashlib.sha256(payload.encode()).hexdigest()
    with Session(engine) as session:
        if session.scalars(select(NaiveEvent.id).filter_by(event_hash=digest)).first() is not None:
            return
        stored = NaiveEvent(
            event_hash=digest, event_type=event.get("eventType"), event_time=event["eventTime"], body=payload
        )
        session.add(stored)
        job = _get_or_add(session, NaiveJob, namespace=event["job"]["namespace"], name=event["job"]["name"])
        run = _get_or_add(session, NaiveRun, run_uuid=event["run"]["runId"], job=job)
        run.state = event.get("eventType")
        if run.state == "START":
            run.started_at = event["eventTime"]
        elif run.state in ("COMPLETE", "FAIL", "ABORT"):
            run.ended_at = event["eventTime"]
        for name, body in (event["run"].get("facets") or {}).items():
            session.add(NaiveFacet(event=stored, owner="run", run=run, name=name, body=body))
        for direction, key, io_key in (
            ("input", "inputs", "inputFacets"),
            ("output", "outputs", "outputFacets"),
        ):
            for ref in event.get(key) or []:
                dataset = _get_or_add(session, NaiveDataset, namespace=ref["namespace"], name=ref["name"])
                ref_facets = ref.get("facets") or {}
                label = (ref_facets.get("version") or {}).get(
                    "datasetVersion"
                ) or f"{run.run_uuid}:{direction}"
                version = _get_or_add(session, NaiveVersion, dataset=dataset, version=label)
                if direction == "output" and version.created_by is None:
                    version.created_by = run
                _get_or_add(session, NaiveRunVersion, run=run, version=version, direction=direction)
                for name, body in {**ref_facets, **(ref.get(io_key) or {})}.items():
                    session.add(
                        NaiveFacet(event=stored, owner=direction, version=version, name=name, body=body)
                    )
        session.commit()


# 1. Throughput -------------------------------------------------------------------------------------------
@contextmanager
def api_server(url: str, home: Path) -> Iterator[str]:
    """The lineage API over ``url``, served by uvicorn in its own process (as deployed: the client does
    not share its interpreter) on a free 127.0.0.1 port."""
    port = _free_port()
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CENSUSTRACE_LINEAGE_URL": url, "CENSUSTRACE_HOME": str(home)}
    command = [sys.executable, "-m", "uvicorn", "--factory", "censustrace.viewer.lineage_api:create_app"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
    with served(command, env, port, home) as base:
        yield base


# 1b. Concurrent clients ---------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(command: list[str], env: dict[str, str], port: int, cwd: Path) -> Iterator[str]:
    """A server process (its own session, stopped with its workers) answering /api/v1/health."""
    server = subprocess.Popen(command, env=env, cwd=cwd, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} on {base} did not start")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(server.pid, 15)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=10)


async def _post_all(
    url: str, payloads: list[str], clients: int, token: str | None
) -> tuple[float, list[float]]:
    """``clients`` concurrent connections, one event per request, until every payload was accepted."""
    import asyncio

    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    latencies: list[float] = []
    next_index = iter(range(len(payloads)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            for index in next_index:
                began = time.perf_counter()
                response = await client.post(url, content=payloads[index].encode(), headers=headers)
                latencies.append(time.perf_counter() - began)
                if response.status_code != 201:
                    raise RuntimeError(f"{url}: HTTP {response.status_code} {response.text[:300]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return time.perf_counter() - started, latencies


def _stored_bodies(url: str, table: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [row[0] for row in conn.execute(text(f"SELECT body FROM {table} ORDER BY id"))]
    finally:
        engine.dispose()


def bench_concurrent(
    dbs: Databases, workdir: Path, warmup: list[str], payloads: list[str], clients: int
) -> list[Json]:
    """The lineage API as ``censustrace api`` serves it (no flags: workers from CENSUSTRACE_API_WORKERS,
    producer token required) against the raw-insert endpoint, both fed by ``clients`` concurrent
    clients; then every event's raw text is checked in the store, byte for byte."""
    import asyncio

    from censustrace.config import Settings

    workers = Settings().api_workers
    bench_dir = Path(__file__).resolve().parent
    results: list[Json] = []
    raw_url, api_url = dbs.new("raw"), dbs.new("api")
    home = workdir / "api-home"
    env = {**os.environ, "CENSUSTRACE_HOME": str(home), "CENSUSTRACE_LINEAGE_URL": raw_url}
    env |= {"RAW_INSERT_URL": raw_url}
    port = _free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "raw_insert_app:create_app", "--app-dir"]
    uvicorn += [str(bench_dir), "--port", str(port), "--workers", str(workers), "--log-level", "warning"]
    with served([*uvicorn, "--no-access-log"], env, port, workdir) as base:
        asyncio.run(_post_all(f"{base}/api/v1/lineage", warmup, clients, None))
        seconds, latencies = asyncio.run(_post_all(f"{base}/api/v1/lineage", payloads, clients, None))
    stored = _stored_bodies(raw_url, "raw")[len(warmup) :]
    results.append(
        _concurrent_row(
            "raw INSERT only (practical limit)", workers, clients, payloads, seconds, latencies, stored
        )
    )

    env = {**os.environ, "CENSUSTRACE_HOME": str(home), "CENSUSTRACE_LINEAGE_URL": api_url}
    cli = [sys.executable, "-m", "censustrace.cli"]
    added = subprocess.run(
        # The events are the pipeline's own (censustrace jobs): a pipeline token may write them.
        [*cli, "tokens", "add", "bench", "--kind", "pipeline", "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    token = json.loads(added.stdout)["token"]
    port = _free_port()
    with served([*cli, "api", "--port", str(port)], env, port, workdir) as base:
        asyncio.run(_post_all(f"{base}/api/v1/lineage", warmup, clients, token))
        seconds, latencies = asyncio.run(_post_all(f"{base}/api/v1/lineage", payloads, clients, token))
    stored = _stored_bodies(api_url, "raw_events")[len(warmup) :]
    results.append(
        _concurrent_row(
            "`censustrace api` (validated, indexed)", workers, clients, payloads, seconds, latencies, stored
        )
    )
    return results


def _concurrent_row(
    path: str,
    workers: int,
    clients: int,
    payloads: list[str],
    seconds: float,
    latencies: list[float],
    stored: list[str],
) -> Json:
    median, p95 = median_p95(latencies)
    return {
        "path": path,
        "workers": workers,
        "clients": clients,
        "events": len(payloads),
        "seconds": seconds,
        "rate": len(payloads) / seconds,
        "median_ms": median * 1e3,
        "p95_ms": p95 * 1e3,
        # Lossless: every event stored once, its text exactly as sent (order may differ across clients).
        "lossless": sorted(stored) == sorted(payloads),
    }


def _client(transport: Any) -> OpenLineageClient:
    return OpenLineageClient(transport=transport)


@dataclass
class Throughput:
    backend: str
    path: str
    events: int
    seconds: float
    statements: float | None = None  # SQL statements per event, where the engine is ours to watch

    @property
    def rate(self) -> float:
        return self.events / self.seconds


class StatementCounter:
    """Counts the statements an engine sends to the database (an executemany counts once)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        sa_event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *_: Any) -> None:
        self.count += 1


def timed_emission(
    emit: Callable[[RunEvent], Any],
    warmup: Sequence[RunEvent],
    events: Sequence[RunEvent],
    counter: StatementCounter | None = None,
) -> float:
    for event in warmup:
        emit(event)
    if counter is not None:
        counter.count = 0
    started = time.perf_counter()
    for event in events:
        emit(event)
    return time.perf_counter() - started


def bench_throughput(
    backend: str, dbs: Databases, workdir: Path, warmup: list[RunEvent], events: list[RunEvent]
) -> list[Throughput]:
    results: list[Throughput] = []
    expected = len(warmup) + len(events)

    def record(
        path: str, seconds: float, url: str, table: Any, counter: StatementCounter | None = None
    ) -> None:
        stored = count_rows(url, table)
        if stored != expected:
            raise RuntimeError(f"{backend}/{path}: {stored} events stored, expected {expected}")
        statements = counter.count / len(events) if counter is not None else None
        results.append(Throughput(backend, path, len(events), seconds, statements))
        print(f"  {backend:8} {path:11} {len(events) / seconds:8.1f} events/s", flush=True)

    url = dbs.new("http")
    upgrade(url)
    with api_server(url, workdir / f"api-{backend}") as base:
        transport = HttpTransport(HttpConfig(url=base, timeout=30))
        client = _client(transport)
        record("http", timed_emission(client.emit, warmup, events), url, raw_events)
        transport.close()

    url = dbs.new("transport")
    config = CensustraceTransportConfig.from_dict(
        {"store_url": url, "outbox_dir": str(workdir / f"outbox-{backend}")}
    )
    store_transport = CensustraceTransport(config)
    client = _client(store_transport)
    record("transport", timed_emission(client.emit, warmup, events), url, raw_events)
    if store_transport.outbox.entries("store"):
        raise RuntimeError(f"{backend}/transport: events went to the outbox")

    url = dbs.new("store_event")
    upgrade(url)
    engine = make_engine(url)
    counter = StatementCounter(engine)
    record(
        "store_event",
        timed_emission(lambda e: store_event(engine, Serde.to_json(e)), warmup, events, counter),
        url,
        raw_events,
        counter,
    )
    engine.dispose()

    url = dbs.new("naive")
    engine = make_engine(url)  # the same connection settings (SQLite WAL): only the ingest code differs
    NaiveBase.metadata.create_all(engine)
    counter = StatementCounter(engine)
    record(
        "naive",
        timed_emission(lambda e: naive_store(engine, Serde.to_json(e)), warmup, events, counter),
        url,
        NaiveEvent.__table__,
        counter,
    )
    engine.dispose()
    return results


def per_event_costs(events: list[RunEvent]) -> Json:
    """CPU cost of what every path does before the database: serialise, and (ours) validate and parse."""
    started = time.perf_counter()
    payloads = [Serde.to_json(event) for event in events]
    serialise = time.perf_counter() - started
    parse_event(payloads[0])
    started = time.perf_counter()
    for payload in payloads:
        parse_event(payload)
    parse = time.perf_counter() - started
    sizes = [len(p.encode()) for p in payloads]
    return {
        "events": len(events),
        "bytes_mean": statistics.fmean(sizes),
        "bytes_min": min(sizes),
        "bytes_max": max(sizes),
        "serde_to_json_us": serialise / len(events) * 1e6,
        "parse_event_us": parse / len(events) * 1e6,
    }


# 2. Trace store --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    chains: int
    seed_chains: int
    modules: list[int]  # per seed chain: census modules in its extract
    agreements: int = 12
    shared_modules: int = 3


def make_plan(runs_wanted: int, versions_wanted: int, seed_chains: int) -> Plan:
    """Chains of 4 runs (receive, parse, load, share) and 2k+3 versions (landing, archive, k extract
    tables, k warehouse tables, share): k is chosen so that the store holds the versions asked for."""
    chains = max(1, runs_wanted // 4)
    seed = max(1, min(seed_chains, chains))
    modules_total = max(chains, (versions_wanted - 3 * chains) // 2)
    base, extra = divmod(modules_total, chains)
    wider = round(extra * seed / chains)
    modules = [min(len(CENSUS_MODULES), base + (1 if i < wider else 0)) for i in range(seed)]
    return Plan(chains=chains, seed_chains=seed, modules=modules)


def _dataset(namespace: str, name: str, version: str, extra: Json | None = None) -> Json:
    return {
        "namespace": namespace,
        "name": name,
        "facets": {
            "version": {
                "_producer": PRODUCER,
                "_schemaURL": "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
                "#/$defs/DatasetVersionDatasetFacet",
                "datasetVersion": version,
            },
            **(extra or {}),
        },
    }


def chain_events(rng: random.Random, chain: int, modules: int, plan: Plan) -> list[Json]:
    """COMPLETE events of one school submission: receive, parse, load, share."""
    school = 4000 + chain
    sha = rng_sha(rng)
    t0 = chain * 600
    extract_facet = Serde.to_dict(census_file(rng, chain, sha)["censusExtract"])
    landing = _dataset(
        "file", f"{ROOT}/landing/SC_330_{school}_AUT_2026.xml", sha, {"censusExtract": extract_facet}
    )
    archive = _dataset("file", f"{ROOT}/archive/{sha[:2]}/{sha}", sha, {"censusExtract": extract_facet})
    names = CENSUS_MODULES[:modules]
    extracts = [_dataset(WAREHOUSE, f"census.extract.{m}", sha) for m in names]
    loaded = [_dataset(WAREHOUSE, f"census.warehouse.{m}", f"load-{chain:07d}") for m in names]
    agreement = chain % plan.agreements
    share = _dataset("file", f"{ROOT}/shares/agreement-{agreement:03d}.csv", f"share-{chain:07d}")
    steps = [
        ("census_ingest.receive_extract", [landing], [archive]),
        ("census_ingest.parse_extract", [archive], extracts),
        ("warehouse_load.load_extract", extracts, loaded),
        (f"share.agreement_{agreement:03d}", loaded[: plan.shared_modules], [share]),
    ]
    dag_run = rng_uuid(rng)
    return [
        {
            "eventType": "COMPLETE",
            "eventTime": stamp(t0 + 60 * step + 30),
            "producer": PRODUCER,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            "run": {
                "runId": rng_uuid(rng),
                "facets": {
                    "parent": Serde.to_dict(
                        parent_run.ParentRunFacet(
                            run=parent_run.Run(runId=dag_run),
                            job=parent_run.Job(namespace=JOB_NAMESPACE, name=job.split(".")[0]),
                        )
                    ),
                    "nominalTime": Serde.to_dict(NominalTimeRunFacet(nominalStartTime=stamp(t0))),
                },
            },
            "job": {"namespace": JOB_NAMESPACE, "name": job, "facets": {}},
            "inputs": inputs,
            "outputs": outputs,
        }
        for step, (job, inputs, outputs) in enumerate(steps)
    ]


def _is_sha(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class Copier:
    """Renamed copies of the seed rows: copy ``n`` gets ids shifted by ``n`` times the seed's largest id,
    new run UUIDs, new versions (sha256 versions stay sha256-shaped) and new archive dataset names."""

    def __init__(self, copy: int) -> None:
        self.copy = copy
        self._names: dict[str, str] = {}

    def version(self, value: str) -> str:
        if value not in self._names:
            if _is_sha(value):
                self._names[value] = hashlib.sha256(f"{value}/{self.copy}".encode()).hexdigest()
            else:
                self._names[value] = f"{value}.{self.copy}"
        return self._names[value]

    def run_uuid(self, value: str | None) -> str | None:
        return None if value is None else str(uuid.uuid5(uuid.NAMESPACE_OID, f"{value}/{self.copy}"))

    def archive_name(self, name: str) -> str:
        sha = name.rsplit("/", 1)[1]
        new = self.version(sha)
        return f"{name.rsplit('/', 2)[0]}/{new[:2]}/{new}"


def _rows(conn: Connection, table: Any) -> list[Json]:
    return [dict(row._mapping) for row in conn.execute(select(table).order_by(table.c.id))]


def _insert(conn: Connection, table: Any, rows: list[Json]) -> None:
    for start in range(0, len(rows), INSERT_BATCH):
        conn.execute(insert(table), rows[start : start + INSERT_BATCH])


def replicate(engine: Engine, copies: int) -> int:
    """Add ``copies - 1`` renamed copies of everything in the store except raw events (copied facets keep
    pointing at the seed event they came from). Returns the rows inserted."""
    copied = (datasets, job_datasets, runs, dataset_versions, run_dataset_versions, facets)
    with engine.begin() as conn:
        seed = {
            t.name: _rows(conn, t) for t in (datasets, runs, dataset_versions, run_dataset_versions, facets)
        }
        links = _rows(conn, job_datasets)
    top = {name: max((row["id"] for row in rows), default=0) for name, rows in seed.items()}
    top["job_datasets"] = max((row["id"] for row in links), default=0)
    archive_ids = {row["id"] for row in seed["datasets"] if "/archive/" in row["name"]}
    version_text = {row["id"]: row["version"] for row in seed["dataset_versions"]}
    inserted = 0
    for n in range(1, copies):
        c = Copier(n)

        def shift(table: str, row_id: int | None, c_n: int = n) -> int | None:
            return None if row_id is None else row_id + c_n * top[table]

        def dataset_id(row_id: int | None, c_n: int = n) -> int | None:
            return shift("datasets", row_id, c_n) if row_id in archive_ids else row_id

        new: dict[str, list[Json]] = defaultdict(list)
        for row in seed["datasets"]:
            if row["id"] in archive_ids:
                new["datasets"].append(
                    {**row, "id": shift("datasets", row["id"]), "name": c.archive_name(row["name"])}
                )
        for row in links:
            if row["dataset_id"] in archive_ids:
                new["job_datasets"].append(
                    {
                        **row,
                        "id": shift("job_datasets", row["id"]),
                        "dataset_id": dataset_id(row["dataset_id"]),
                    }
                )
        for row in seed["runs"]:
            new["runs"].append(
                {
                    **row,
                    "id": shift("runs", row["id"]),
                    "run_uuid": c.run_uuid(row["run_uuid"]),
                    "parent_run_uuid": c.run_uuid(row["parent_run_uuid"]),
                }
            )
        for row in seed["dataset_versions"]:
            new["dataset_versions"].append(
                {
                    **row,
                    "id": shift("dataset_versions", row["id"]),
                    "dataset_id": dataset_id(row["dataset_id"]),
                    "version": c.version(row["version"]),
                    "created_by_run_id": shift("runs", row["created_by_run_id"]),
                }
            )
        for row in seed["run_dataset_versions"]:
            new["run_dataset_versions"].append(
                {
                    **row,
                    "id": shift("run_dataset_versions", row["id"]),
                    "run_id": shift("runs", row["run_id"]),
                    "dataset_version_id": shift("dataset_versions", row["dataset_version_id"]),
                }
            )
        for row in seed["facets"]:
            body = row["body"]
            if row["dataset_version_id"] is not None:
                old = version_text[row["dataset_version_id"]]
                body = json.loads(json.dumps(body).replace(old, c.version(old)))
            new["facets"].append(
                {
                    **row,
                    "id": shift("facets", row["id"]),
                    "run_id": shift("runs", row["run_id"]),
                    "dataset_id": dataset_id(row["dataset_id"]),
                    "dataset_version_id": shift("dataset_versions", row["dataset_version_id"]),
                    "body": body,
                }
            )
        with engine.begin() as conn:
            for table in copied:
                _insert(conn, table, new[table.name])
                inserted += len(new[table.name])
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for table in copied:  # ids given explicitly above: move their sequences past them
                conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                        f"(SELECT coalesce(max(id), 1) FROM {table.name}))"
                    )
                )
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
    return inserted


def build_trace_store(url: str, plan: Plan, seed: int) -> Json:
    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(seed)
    events = [e for i in range(plan.seed_chains) for e in chain_events(rng, i, plan.modules[i], plan)]
    links = sum(len(e["inputs"]) + len(e["outputs"]) for e in events)
    started = time.perf_counter()
    for start in range(0, len(events), STORE_BATCH):
        store_events(engine, events[start : start + STORE_BATCH])
    seeded = time.perf_counter() - started
    copies = -(-plan.chains // plan.seed_chains)
    started = time.perf_counter()
    rows = replicate(engine, copies)
    copied = time.perf_counter() - started
    with engine.connect() as conn:
        counts = {
            t.name: int(conn.execute(select(func.count()).select_from(t)).scalar_one())
            for t in (runs, dataset_versions, datasets, run_dataset_versions, facets, raw_events)
        }
    engine.dispose()
    return {
        "seed_events": len(events),
        "seed_links": links,
        "seed_seconds": seeded,
        "seed_events_per_s": len(events) / seeded,
        "seed_links_per_s": links / seeded,
        "copies": copies,
        "copied_rows": rows,
        "copy_seconds": copied,
        "counts": counts,
    }


# 2. Trace latency ----------------------------------------------------------------------------------------
def naive_trace(engine: Engine, namespace: str, name: str, version: str) -> list[tuple[str, str, str]]:
    """The obvious recursive walk: for each version its writers, for each writer its inputs, one query
    each; a version's name and a run's row fetched one at a time; sources' facets one query each."""
    dv, ds, ns, rdv = dataset_versions.c, datasets.c, namespaces.c, run_dataset_versions.c
    sources: list[tuple[str, str, str]] = []
    seen: set[int] = set()
    edges: set[tuple[Any, Any]] = set()
    with engine.connect() as conn:
        start = conn.execute(
            select(dv.id)
            .join(datasets, ds.id == dv.dataset_id)
            .join(namespaces, ns.id == ds.namespace_id)
            .where(ns.name == namespace, ds.name == name, dv.version == version)
        ).scalar_one()

        def visit(version_id: int) -> None:
            if version_id in seen:
                return
            seen.add(version_id)
            ref = conn.execute(
                select(ns.name, ds.name, dv.version)
                .select_from(dataset_versions)
                .join(datasets, ds.id == dv.dataset_id)
                .join(namespaces, ns.id == ds.namespace_id)
                .where(dv.id == version_id)
            ).one()
            upstream = False
            writers = conn.execute(
                select(rdv.run_id).where(rdv.dataset_version_id == version_id, rdv.direction == "output")
            ).scalars()
            for run_id in list(writers):
                run = conn.execute(select(runs.c.run_uuid, runs.c.state).where(runs.c.id == run_id)).one()
                edges.add((run.run_uuid, tuple(ref)))
                read = conn.execute(
                    select(rdv.dataset_version_id).where(rdv.run_id == run_id, rdv.direction == "input")
                ).scalars()
                for input_id in list(read):
                    upstream = True
                    edges.add((input_id, run.run_uuid))
                    visit(input_id)
            if not upstream:
                conn.execute(
                    select(facets.c.name, facets.c.body)
                    .where(facets.c.dataset_version_id == version_id, facets.c.owner == "dataset_version")
                    .order_by(facets.c.event_time)
                ).all()
                sources.append((ref[0], ref[1], ref[2]))

        visit(start)
    return sorted(sources)


@dataclass
class TraceTimes:
    backend: str
    starts: str
    ours: list[float] = field(default_factory=list)
    naive: list[float] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def bench_traces(backend: str, url: str, count: int, seed: int) -> list[TraceTimes]:
    engine = make_engine(url)
    rng = random.Random(seed)
    query = (
        select(namespaces.c.name, datasets.c.name, dataset_versions.c.version)
        .join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        .join(namespaces, namespaces.c.id == datasets.c.namespace_id)
    )
    with engine.connect() as conn:
        top = int(conn.execute(select(func.max(dataset_versions.c.id))).scalar_one())
        any_version = conn.execute(
            query.where(dataset_versions.c.id.in_(rng.sample(range(1, top + 1), min(top, count * 3))))
        ).all()
        shares = conn.execute(query.where(datasets.c.name.like(f"{ROOT}/shares/%"))).all()
    sets = [
        ("random version", rng.sample(any_version, min(count, len(any_version)))),
        ("share version", rng.sample(shares, min(count, len(shares)))),
    ]
    results = []
    for label, starts in sets:
        times = TraceTimes(backend, label)
        for i, (namespace, name, version) in enumerate([*starts[:10], *starts]):
            order = (True, False) if i % 2 else (False, True)
            for ours in order:
                began = time.perf_counter()
                if ours:
                    found = trace_upstream(engine, namespace, name, version)
                else:
                    naive_sources = naive_trace(engine, namespace, name, version)
                elapsed = time.perf_counter() - began
                if i < 10:  # warm-up, not timed
                    continue
                (times.ours if ours else times.naive).append(elapsed)
            ours_sources = sorted((s.namespace, s.name, s.version) for s in found.sources)
            if ours_sources != naive_sources:
                raise RuntimeError(f"{backend}: ours and naive disagree on the sources of {name}@{version}")
            if label == "share version" and len(found.sources) != 1:
                raise RuntimeError(
                    f"{backend}: share {name}@{version} has {len(found.sources)} sources, not 1"
                )
            if i >= 10:
                times.versions.append(sum(1 for n in found.graph["nodes"] if n["type"] == "dataset_version"))
        results.append(times)
        ours_ms, naive_ms = median_p95(times.ours)[0] * 1e3, median_p95(times.naive)[0] * 1e3
        print(
            f"  {backend:8} {label:15} ours {ours_ms:7.2f} ms  naive {naive_ms:7.2f} ms (median)", flush=True
        )
    engine.dispose()
    return results


# 3. Emission overhead ------------------------------------------------------------------------------------
def _task_event(state: RunState, run_id: str, seconds: float, lineage: StepLineage | None) -> RunEvent:
    rng = random.Random(run_id)
    return RunEvent(
        eventType=state,
        eventTime=stamp(seconds),
        run=Run(runId=run_id, facets=run_facets(rng, stamp(0))),
        job=Job(namespace=JOB_NAMESPACE, name="census_ingest.receive_extract", facets=JOB_FACETS),
        inputs=list(lineage.inputs) if lineage else [],
        outputs=list(lineage.outputs) if lineage else [],
        producer=PRODUCER,
    )


def bench_emission(backend: str, url: str, workdir: Path, reps: int) -> Json:
    """receive() on a fresh 1 MiB file, alone or wrapped in START/COMPLETE events sent through the store
    transport (what the Airflow provider does around our operator), alternating the two."""
    upgrade(url)
    home = workdir / f"emission-{backend}"
    settings = Settings(home=home, lineage_url=url)
    settings.ensure_dirs()
    config = {"store_url": url, "outbox_dir": str(settings.outbox_dir)}
    client = _client(CensustraceTransport(CensustraceTransportConfig.from_dict(config)))
    block = (b"<PupilOnRoll><UPN>X</UPN><Surname>-</Surname></PupilOnRoll>\n" * 17_000)[: 2**20 - 64]

    def land(i: int) -> Path:
        path = settings.landing_dir / f"SC_330_{4000 + i % 300}_AUT_2026.xml"
        path.write_bytes(f"<!-- {backend} submission {i} {secrets.token_hex(8)} -->\n".encode() + block)
        return path

    task: list[float] = []
    emitted: list[float] = []
    plain: list[float] = []
    warmup = 3
    for i in range(warmup + reps):
        for emit in (True, False) if i % 2 else (False, True):
            path = land(2 * i + emit)
            began = time.perf_counter()
            if emit:
                run_id = str(uuid.uuid4())
                client.emit(_task_event(RunState.START, run_id, i, None))
                mid = time.perf_counter()
                receipt = receive(path, settings)
                back = time.perf_counter()
                client.emit(_task_event(RunState.COMPLETE, run_id, i + 1, receipt.lineage))
                end = time.perf_counter()
                if i >= warmup:
                    task.append(end - began)
                    emitted.append((mid - began) + (end - back))
            else:
                receive(path, settings)
                if i >= warmup:
                    plain.append(time.perf_counter() - began)
    stored = count_rows(url, raw_events)
    if stored != 2 * (warmup + reps):
        raise RuntimeError(f"{backend}: {stored} emission events stored, expected {2 * (warmup + reps)}")
    without, with_lineage, emission = (statistics.median(v) for v in (plain, task, emitted))
    result = {
        "backend": backend,
        "reps": reps,
        "file_bytes": 2**20,
        "without_ms": without * 1e3,
        "with_ms": with_lineage * 1e3,
        "emission_ms": emission * 1e3,
        "overhead_pct": (with_lineage - without) / without * 100,
        "emission_share_pct": statistics.median(e / t for e, t in zip(emitted, task, strict=True)) * 100,
    }
    print(
        f"  {backend:8} receive {without * 1e3:6.1f} ms, with lineage {with_lineage * 1e3:6.1f} ms "
        f"(+{result['overhead_pct']:.0f} %)",
        flush=True,
    )
    return result


# Report ----------------------------------------------------------------------------------------------
PATH_LABELS = {
    "http": "HTTP API: `OpenLineageClient` + `HttpTransport` → uvicorn",
    "transport": "store transport: `OpenLineageClient` + `CensustraceTransport`",
    "store_event": "`store_event()` called directly",
    "naive": "naive ORM baseline",
}


def markdown(report: Json) -> str:
    m = report["machine"]
    out = [
        f"Command: `{report['command']}`  ",
        f"Date: {report['date']}; total run time {report['seconds']:.0f} s  ",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram_gib']} GiB RAM, {m['os']}, work folder on "
        f"{m['workdir_filesystem']}; Python {m['python']}, SQLite {m['sqlite']}, PostgreSQL "
        f"{m['postgresql'] or '-'} (local, 127.0.0.1); "
        + ", ".join(f"{k} {v}" for k, v in m["packages"].items()),
        "",
        "### Events stored per second (one client, sequential)",
        "",
        "| backend | path | events | events/s | ms/event | SQL statements/event | vs naive |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    naive = {r["backend"]: r["rate"] for r in report["throughput"] if r["path"] == "naive"}
    for r in report["throughput"]:
        ratio = f"{r['rate'] / naive[r['backend']]:.2f}×" if r["path"] != "naive" else "1×"
        statements = "–" if r["statements"] is None else f"{r['statements']:.1f}"
        out.append(
            f"| {r['backend']} | {PATH_LABELS[r['path']]} | {r['events']} | {r['rate']:.0f} | "
            f"{1e3 / r['rate']:.2f} | {statements} | {ratio} |"
        )
    c = report["event_costs"]
    out += [
        "",
        f"Events: {c['bytes_mean']:.0f} bytes on average ({c['bytes_min']}–{c['bytes_max']}). CPU per event "
        f"before any database: `Serde.to_json` {c['serde_to_json_us']:.0f} µs (every path), `parse_event` "
        f"(JSON Schema validation, canonical hash) {c['parse_event_us']:.0f} µs (ours only).",
        "",
        "### Trace-back latency (`trace_upstream`)",
        "",
    ]
    for b in report["trace_stores"]:
        n = b["counts"]
        out.append(
            f"- {b['backend']} store: {n['runs']:,} runs, {n['dataset_versions']:,} dataset versions, "
            f"{n['datasets']:,} datasets, {n['run_dataset_versions']:,} run↔version links, {n['facets']:,} "
            f"facets. Seed: {b['seed_events']} events ({b['seed_links']} links) through `store_events` in "
            f"{b['seed_seconds']:.1f} s ({b['seed_links_per_s']:.0f} links/s), then {b['copies'] - 1} "
            f"renamed copies ({b['copied_rows']:,} rows in {b['copy_seconds']:.1f} s)."
        )
    out += [
        "",
        "| backend | start | traces | versions in trace (mean) | ours median ms | ours p95 ms | "
        "naive median ms | naive p95 ms | speed-up (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for t in report["traces"]:
        out.append(
            f"| {t['backend']} | {t['starts']} | {t['traces']} | {t['versions_mean']:.1f} | "
            f"{t['ours_median_ms']:.2f} | {t['ours_p95_ms']:.2f} | {t['naive_median_ms']:.2f} | "
            f"{t['naive_p95_ms']:.2f} | {t['naive_median_ms'] / t['ours_median_ms']:.1f}× |"
        )
    out += [
        "",
        "### Emission overhead (`receive()` of a 1 MiB file, START + COMPLETE through the store transport)",
        "",
        "| backend | reps | task without lineage, median ms | with lineage, median ms | emission, median ms "
        "| overhead |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for e in report["emission"]:
        out.append(
            f"| {e['backend']} | {e['reps']} | {e['without_ms']:.1f} | {e['with_ms']:.1f} | "
            f"{e['emission_ms']:.1f} | {e['overhead_pct']:+.0f} % |"
        )
    return "\n".join(out) + "\n"


# Main ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--events", type=int, default=1000, help="events timed per ingest path (default 1000)"
    )
    parser.add_argument("--runs", type=int, default=10_000, help="runs in the trace store (default 10000)")
    parser.add_argument("--versions", type=int, default=100_000, help="dataset versions in the trace store")
    parser.add_argument("--seed-chains", type=int, default=50, help="chains ingested through store_events")
    parser.add_argument("--traces", type=int, default=200, help="timed traces per start set (default 200)")
    parser.add_argument("--reps", type=int, default=50, help="emission-overhead repetitions (default 50)")
    parser.add_argument("--backends", default="sqlite,postgres", help="comma-separated: sqlite,postgres")
    parser.add_argument(
        "--postgres-url", default=DEFAULT_POSTGRES_URL, help="maintenance DB URL of the server"
    )
    parser.add_argument("--quick", action="store_true", help="a short smoke run (~30 s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seed", type=int, default=20261128, help="random seed of the generated data")
    parser.add_argument(
        "--concurrent",
        action="store_true",
        help="only the concurrent-clients benchmark: `censustrace api` against a raw-insert endpoint",
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    args = parser.parse_args()
    if args.concurrent:
        main_concurrent(args)
        return
    if args.quick:
        args.events, args.runs, args.versions = 60, 400, 4000
        args.seed_chains, args.traces, args.reps = 10, 20, 10
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "postgres"}:
        parser.error("--backends takes sqlite and/or postgres")
    if make_url(args.postgres_url).host not in ("127.0.0.1", "localhost", None) and "postgres" in backends:
        parser.error("--postgres-url must point at a local server (127.0.0.1)")

    began = time.perf_counter()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="censustrace-bench-") as tmp:
        workdir = Path(tmp)
        report: Json = {
            "command": " ".join([".venv/bin/python", "bench/bench_lineage.py", *sys.argv[1:]]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(workdir),
            "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "throughput": [],
            "traces": [],
            "trace_stores": [],
            "emission": [],
        }
        warmup = task_events(args.seed + 1, WARMUP_EVENTS)
        events = task_events(args.seed, args.events, start=WARMUP_EVENTS)
        report["event_costs"] = per_event_costs(events)
        plan = make_plan(args.runs, args.versions, args.seed_chains)
        for backend in backends:
            dbs = Databases(backend, workdir, args.postgres_url, stack)
            if backend == "postgres":
                report["machine"]["postgresql"] = dbs.server_version()
            print(f"[{time.perf_counter() - began:5.0f} s] {backend}: ingest throughput", flush=True)
            report["throughput"] += [
                vars(r) | {"rate": r.rate} for r in bench_throughput(backend, dbs, workdir, warmup, events)
            ]
            print(f"[{time.perf_counter() - began:5.0f} s] {backend}: building the trace store", flush=True)
            url = dbs.new("trace")
            built = build_trace_store(url, plan, args.seed)
            report["trace_stores"].append({"backend": backend, **built})
            print(f"  {backend:8} {built['counts']}", flush=True)
            print(f"[{time.perf_counter() - began:5.0f} s] {backend}: trace-back latency", flush=True)
            for times in bench_traces(backend, url, args.traces, args.seed):
                ours, naive = median_p95(times.ours), median_p95(times.naive)
                report["traces"].append(
                    {
                        "backend": backend,
                        "starts": times.starts,
                        "traces": len(times.ours),
                        "versions_mean": statistics.fmean(times.versions),
                        "ours_median_ms": ours[0] * 1e3,
                        "ours_p95_ms": ours[1] * 1e3,
                        "naive_median_ms": naive[0] * 1e3,
                        "naive_p95_ms": naive[1] * 1e3,
                    }
                )
            print(f"[{time.perf_counter() - began:5.0f} s] {backend}: emission overhead", flush=True)
            report["emission"].append(bench_emission(backend, dbs.new("emission"), workdir, args.reps))
    report["seconds"] = time.perf_counter() - began
    print()
    print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def validation_cpu(payloads: list[str]) -> Json:
    """CPU ms per event of ``parse_event`` (decode + full validation + index fields): with the compiled
    yes/no check in front (as served), and with ``jsonschema`` alone (the naive baseline), same events.
    CPU time, so a loaded machine changes it less than wall time."""
    from censustrace.lineage.store.parse import _lenient_validator, parse_event

    validator = _lenient_validator()
    assert validator is not None
    fast = validator._fast
    results: Json = {}
    for label, compiled in (("compiled_first", fast), ("jsonschema_only", None)):
        validator._fast = compiled
        for payload in payloads[:20]:
            parse_event(payload)  # warm caches
        began = time.process_time()
        for payload in payloads:
            parse_event(payload)
        results[label] = round((time.process_time() - began) / len(payloads) * 1e3, 3)
    validator._fast = fast
    return results


def main_concurrent(args: argparse.Namespace) -> None:
    """``--concurrent``: events/s from ``--clients`` concurrent clients, one event per request."""
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    began = time.perf_counter()
    with ExitStack() as stack, tempfile.TemporaryDirectory(prefix="censustrace-bench-") as tmp:
        workdir = Path(tmp)
        report: Json = {
            "command": " ".join([".venv/bin/python", "bench/bench_lineage.py", *sys.argv[1:]]),
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(workdir),
            "concurrent": [],
        }
        warmup = [Serde.to_json(e) for e in task_events(args.seed + 1, 100)]
        payloads = [Serde.to_json(e) for e in task_events(args.seed, args.events, start=100)]
        report["validation_cpu_ms"] = validation_cpu(payloads[:300])
        print(f"validation CPU per event: {report['validation_cpu_ms']}", flush=True)
        for backend in backends:
            dbs = Databases(backend, workdir, args.postgres_url, stack)
            for row in bench_concurrent(dbs, workdir, warmup, payloads, args.clients):
                report["concurrent"].append({"backend": backend, **row})
                print(
                    f"{backend:8} {row['path']:42} {row['rate']:7.0f} events/s"
                    f"  median {row['median_ms']:.1f} ms  p95 {row['p95_ms']:.1f} ms"
                    f"  lossless {row['lossless']}",
                    flush=True,
                )
    report["seconds"] = time.perf_counter() - began
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
