"""One share of N pupils (select, exclude objections, transform, write, disclosure log, release), against a
naive baseline measured in the same run.

Run: ``.venv/bin/python bench/bench_share.py [--pupils 100000,1000000] [--backends sqlite,postgres]
[--naive-max 1000000] [--json out.json]``

The data (not timed): a warehouse filled directly (bulk insert, no parsing) with ``--pupils`` current
pupils of LA 330 in schools of 1,000 (one loaded extract each, AUT 2026), each with an address; 1 in 200
pupils has a subsidiary dual registration at another school (the share must send one row per pupil);
about 1 % carry a refused ethnicity code; a consent file with a decision for 5 % of the pupils about
``research.approved``, 85 % of them objections. The agreement: research, 9 fields (UPN pseudonymised,
date of birth cut to year and month, postcode to its district, sex, ethnicity, language, SEN provision,
NC year, LAESTAB), scope LA 330.

* ``ours``: ``censustrace.shares.steps.run_share``: policy check, build (streamed population, objection
  check, transforms, suppression, CSV hashed while written, disclosure rows spooled then bulk-loaded in
  one transaction), release (copy to the outbox, lineage event committed to the lineage store, atomic
  rename).
* ``naive``: the same output written the obvious way: the whole population fetched into a list, pupils
  de-duplicated and ordered in Python, every decision fetched and the latest per pupil found in Python,
  the rows built as dicts and written with ``csv.DictWriter``, then hashed, and the disclosure rows
  inserted with SQLAlchemy Core ``insert()`` from a list of dicts in one transaction. No lineage, no
  outbox, no manifest.

Each measurement runs in a fresh subprocess after its imports and engine are warm; reported: wall time,
pupils/s, and peak RSS of that process (``VmHWM``, the whole interpreter) and its growth over the warm
baseline. PostgreSQL: throwaway databases ``censustrace_bench_<random>`` on ``--postgres-url``, dropped
at the end.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import hmac
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from censustrace.census.codes import academic_year_bounds, term_containing
from censustrace.consent.clock import release_day

Json = dict[str, Any]
PER_SCHOOL = 1000
SECRET = "bench-pupil-key-secret"
AS_OF = dt.date(2026, 10, 15)
AGREEMENT = "bench-research"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# A share is judged for today (Europe/London): the agreement spans the academic year containing today.
_YEAR = academic_year_bounds(*term_containing(release_day()))
_APPROVED = _YEAR[0] - dt.timedelta(days=31)
_AGREEMENT_YAML = f"""\
id: {AGREEMENT}
recipient: {{name: "Bench University", type: researcher}}
purpose: research.approved
lawful_basis: public_task
special_category_condition: "Art 9(2)(j) research; DPA 2018 Sch 1 para 4"
legal_gateway: "Education (Individual Pupil Information) (Prescribed Persons) (England) Regulations 2009"
approval: {{reference: DS00001, approved_by: "Data Sharing Approvals Panel", approved_on: {_APPROVED}}}
valid_from: {_YEAR[0]}
valid_to: {_YEAR[1]}
fields: [upn, dob, postcode, sex, ethnicity, language, sen_provision, nc_year, laestab]
scope: {{la: ["330"]}}
transforms: {{upn: pseudonymise, dob: year_month, postcode: district}}
frequency: once
format: csv
retention_days: 365
"""


# --- data -----------------------------------------------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def policies(work: Path) -> Path:
    folder = work / "policies"
    if not folder.exists():
        shutil.copytree(REPO / "policies", folder, ignore=shutil.ignore_patterns("agreements"))
        (folder / "agreements").mkdir()
        (folder / "agreements" / f"{AGREEMENT}.yaml").write_text(_AGREEMENT_YAML)
    return folder


def fill(url: str, pupils: int) -> Json:
    """The warehouse at ``url`` with ``pupils`` current pupils, addresses, dual registrations and
    decisions (see the module docstring); returns counts for checking the output."""
    from censustrace.census.identifiers import make_upn
    from censustrace.consent.tables import consent_decisions, consent_files
    from censustrace.warehouse.db import make_engine, upgrade, write_transaction
    from censustrace.warehouse.load import bulk_insert
    from censustrace.warehouse.tables import extracts, pupil, pupil_address

    upgrade(url)
    engine = make_engine(url)
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    ref = dt.date(2026, 10, 1)
    schools = (pupils + PER_SCHOOL - 1) // PER_SCHOOL
    pupil_cols = (
        "extract_id", "record_number", "pupil_key", "upn", "surname", "forename", "dob", "sex", "ethnicity",
        "language", "enrol_status", "nc_year", "sen_provision", "laestab", "census_term", "census_year",
        "reference_date",
    )  # fmt: skip
    address_cols = ("extract_id", "record_number", "street", "post_town", "postcode")
    secret = SECRET.encode()
    decisions: list[tuple[Any, ...]] = []
    objectors = 0
    duals = 0
    with write_transaction(engine) as conn:
        conn.execute(
            extracts.insert(),
            [
                {
                    "extract_id": f"ext_bench{s:06d}",
                    "sha256": hashlib.sha256(str(s).encode()).hexdigest(),
                    "size": 1,
                    "original_name": f"SC_330_{s:04d}_AUT_2026.xml",
                    "received_at": now,
                    "format": "school_census_xml",
                    "la": "330",
                    "estab": f"{s:04d}",
                    "laestab": f"330{s:04d}",
                    "term": "AUT",
                    "year": 2026,
                    "reference_date": ref,
                    "status": "loaded",
                    "reasons": [],
                    "pupil_count": PER_SCHOOL,
                    "loaded_at": now,
                }
                for s in range(schools)
            ],
        )
        number = 0
        rows: list[tuple[Any, ...]] = []
        addresses: list[tuple[Any, ...]] = []
        for s in range(schools):
            for i in range(min(PER_SCHOOL, pupils - s * PER_SCHOOL)):
                number += 1
                upn = make_upn("330", f"{s % 10000:04d}", f"{(s // 10000) % 100:02d}", f"{i:03d}")
                key = hmac.digest(secret, upn.encode(), "sha256").hex()
                ethnicity = "REFU" if rng.random() < 0.01 else rng.choice(("WBRI", "ABAN", "BAFR", "MWBC"))
                row = (
                    f"ext_bench{s:06d}", i + 1, key, upn, "Benchington", "Sampla",
                    dt.date(2010 + rng.randint(0, 10), rng.randint(1, 12), rng.randint(1, 28)),
                    rng.choice("MF"), ethnicity, "ENG", "C", str(rng.randint(1, 11)), rng.choice("NKE"),
                    f"330{s:04d}", "AUT", 2026, ref,
                )  # fmt: skip
                rows.append(row)
                addresses.append(
                    (
                        row[0],
                        i + 1,
                        "1 Bench Street",
                        "Benchton",
                        f"B{rng.randint(1, 99)} {rng.randint(1, 9)}XX",
                    )
                )
                if i % 200 == 7 and schools > 1:  # a subsidiary registration at the next school
                    duals += 1
                    other = (s + 1) % schools
                    rows.append(
                        (
                            f"ext_bench{other:06d}",
                            PER_SCHOOL + i + 1,
                            *row[2:10],
                            "S",
                            *row[11:13],
                            f"330{other:04d}",
                            *row[14:],
                        )
                    )
                    addresses.append(
                        (
                            f"ext_bench{other:06d}",
                            PER_SCHOOL + i + 1,
                            "1 Bench Street",
                            "Benchton",
                            addresses[-1][-1],
                        )
                    )
                if rng.random() < 0.05:
                    objected = rng.random() < 0.85
                    objectors += objected
                    decisions.append(
                        (
                            len(decisions) + 1,
                            key,
                            "research.approved",
                            "objected" if objected else "consented",
                            dt.date(2026, 1, 5),
                            "parent_form",
                        )
                    )
                if len(rows) >= 20000:
                    bulk_insert(conn, pupil, pupil_cols, rows)
                    bulk_insert(conn, pupil_address, address_cols, addresses)
                    rows, addresses = [], []
        bulk_insert(conn, pupil, pupil_cols, rows)
        bulk_insert(conn, pupil_address, address_cols, addresses)
        counts = {"rows_read": len(decisions), "rows_applied": len(decisions), "rows_rejected": 0}
        conn.execute(
            consent_files.insert().values(
                consent_file_id="cns_bench",
                sha256="0" * 64,
                size=1,
                original_name="consents.csv",
                received_at=now,
                status="applied",
                reasons=[],
                **counts,
            )
        )
        bulk_insert(
            conn,
            consent_decisions,
            ("consent_file_id", "row_number", "pupil_key", "purpose", "decision", "recorded_on", "source"),
            [("cns_bench", *d) for d in decisions],
        )
    engine.dispose()
    return {"pupils": pupils, "objectors": objectors, "duals": duals}


# --- inside a measurement's subprocess --------------------------------------------------------------------


def _settings(spec: Json) -> Any:
    from pydantic import SecretStr

    from censustrace.config import Settings

    return Settings(
        home=Path(spec["home"]),
        warehouse_url=spec["warehouse"],
        lineage_url=spec["lineage"],
        pupil_key_secret=SecretStr(SECRET),
        policies_dir=Path(spec["policies"]),
    )


def child_ours(spec: Json) -> Json:
    from censustrace.shares.build import build_share
    from censustrace.shares.check import check_share
    from censustrace.shares.release import release_share
    from censustrace.warehouse.db import warehouse_engine

    settings = _settings(spec)
    warehouse_engine(settings.warehouse_db_url)
    base = _status_kib("VmRSS")
    times = {}
    start = time.perf_counter()
    checked = check_share(AGREEMENT, settings)
    times["check"] = time.perf_counter() - start
    mark = time.perf_counter()
    build_share(checked["share_id"], settings)
    times["build"] = time.perf_counter() - mark
    mark = time.perf_counter()
    result = release_share(checked["share_id"], settings)
    times["release"] = time.perf_counter() - mark
    wall = time.perf_counter() - start
    return {"wall": wall, "steps": times, "pupils": result["pupils"], "excluded": result["excluded"],
            "sha256": result["sha256"], "hwm_kib": _status_kib("VmHWM"), "base_kib": base}  # fmt: skip


def child_naive(spec: Json) -> Json:
    from sqlalchemy import and_, insert, select

    from censustrace.consent.tables import consent_decisions
    from censustrace.shares.tables import disclosures, shares
    from censustrace.shares.transforms import pseudonym_key, transformer
    from censustrace.warehouse.current import current_pupil, current_pupil_address
    from censustrace.warehouse.db import warehouse_engine

    settings = _settings(spec)
    engine = warehouse_engine(settings.warehouse_db_url)
    base = _status_kib("VmRSS")
    fields = ["upn", "dob", "postcode", "sex", "ethnicity", "language", "sen_provision", "nc_year", "laestab"]
    key = pseudonym_key(SECRET.encode(), AGREEMENT)
    transforms = {
        "upn": transformer("upn", "pseudonymise", key),
        "dob": transformer("dob", "year_month", key),
        "postcode": transformer("postcode", "district", key),
    }
    start = time.perf_counter()
    p, a = current_pupil, current_pupil_address
    with engine.connect() as conn:
        same = and_(a.c.extract_id == p.c.extract_id, a.c.record_number == p.c.record_number)
        everyone = conn.execute(select(p, a.c.postcode).outerjoin(a, same)).mappings().all()
        decided = conn.execute(select(consent_decisions)).mappings().all()
    latest: dict[str, Any] = {}
    for d in sorted(decided, key=lambda d: d["recorded_on"]):
        latest[d["pupil_key"]] = d["decision"]
    chosen: dict[str, Any] = {}
    for row in sorted(everyone, key=lambda r: (r["pupil_key"], r["enrol_status"] == "S")):
        chosen.setdefault(row["pupil_key"], row)
    out, log, excluded = [], [], 0
    for pupil_key, row in sorted(chosen.items()):
        if latest.get(pupil_key) == "objected":
            excluded += 1
            continue
        record = {}
        for f in fields:
            value = row[f]
            if f == "ethnicity" and value in ("REFU", "NOBT"):
                value = None
            record[f] = transforms[f](value) if f in transforms else ("" if value is None else str(value))
        out.append(record)
        log.append({"share_id": "shr_naive", "pupil_key": pupil_key, "extract_id": row["extract_id"],
                    "record_number": row["record_number"], "blank_fields": None})  # fmt: skip
    path = Path(spec["home"]) / "naive.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields, lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(out)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with engine.begin() as conn:
        conn.execute(
            insert(shares).values(
                share_id="shr_naive",
                agreement_id=AGREEMENT,
                status="delivered",
                as_of=AS_OF,
                flags=[],
                reasons=[],
                fields=fields,
                transforms={},
                created_at=dt.datetime.now(dt.UTC),
            )
        )
        conn.execute(insert(disclosures), log)
    wall = time.perf_counter() - start
    return {"wall": wall, "pupils": len(out), "excluded": {"objected": excluded}, "sha256": sha,
            "hwm_kib": _status_kib("VmHWM"), "base_kib": base}  # fmt: skip


# --- the driver ------------------------------------------------------------------------------------------


def _measure(kind: str, spec: Json) -> Json:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--spec", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{proc.stderr[-3000:]}")
    result: Json = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _database(backend: str, work: Path, name: str, pg_url: str, created: list[str]) -> str:
    if backend == "sqlite":
        return f"sqlite:///{work / name}.db"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    db = f"censustrace_bench_{secrets.token_hex(5)}"
    server = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    server.dispose()
    created.append(db)
    return make_url(pg_url).set(database=db).render_as_string(hide_password=False)


def _drop(pg_url: str, created: list[str]) -> None:
    if not created:
        return
    from sqlalchemy import create_engine, text

    server = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        for db in created:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
    server.dispose()


def run(pupils: list[int], backends: list[str], naive_max: int, pg_url: str) -> list[Json]:
    results = []
    created: list[str] = []
    try:
        for backend in backends:
            for n in pupils:
                for kind in ("ours", "naive"):
                    if kind == "naive" and n > naive_max:
                        continue
                    work = Path(tempfile.mkdtemp(prefix="censustrace-bench-share-"))
                    try:
                        spec = {
                            "home": str(work / "home"),
                            "warehouse": _database(backend, work, "warehouse", pg_url, created),
                            "lineage": _database(backend, work, "lineage", pg_url, created),
                            "policies": str(policies(work)),
                        }
                        started = time.perf_counter()
                        data = fill(spec["warehouse"], n)
                        setup = time.perf_counter() - started
                        measured = _measure(kind, spec)
                        expected = n - data["objectors"]
                        assert measured["pupils"] == expected, (measured["pupils"], expected)
                        row = {**measured, "backend": backend, "pupils": n, "sent": measured["pupils"]}
                        row.update(method=kind, setup_s=round(setup, 1))
                        row["pupils_per_s"] = round(n / measured["wall"])
                        row["peak_mib"] = round(measured["hwm_kib"] / 1024)
                        row["growth_mib"] = round((measured["hwm_kib"] - measured["base_kib"]) / 1024)
                        print(json.dumps(row), flush=True)
                        results.append(row)
                    finally:
                        shutil.rmtree(work, ignore_errors=True)
    finally:
        _drop(pg_url, created)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pupils", default="100000,1000000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--naive-max", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres-url", default=os.environ.get("CENSUSTRACE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--spec")
    args = parser.parse_args()
    if args.child:
        spec = json.loads(args.spec)
        result = child_ours(spec) if args.child == "ours" else child_naive(spec)
        print(json.dumps(result))
        return
    results = run(
        [int(n) for n in args.pupils.split(",")], args.backends.split(","), args.naive_max, args.postgres_url
    )
    report = {
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
