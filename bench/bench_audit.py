"""The share register's audit chain: what sealing a share costs, and that it does not serialise shares.

Run: ``.venv/bin/python bench/bench_audit.py [--pupils 100000,1000000] [--backends sqlite,postgres]``

Set-up (not timed): a warehouse with one loaded extract and ``--pupils`` disclosure rows for each of two
built shares, inserted directly.

* ``baseline``: the transaction a release ended with before the chain: mark the share delivered.
* ``ours``: what it does now: the disclosure digest (sha256 of every disclosure row without the pupil
  key, in (extract, record) order) read *before* the transaction, then the same transaction plus the
  chained row (``censustrace.audit.register.seal_share``). ``lock held`` is that transaction's time: how
  long another share's release can be made to wait.
* ``concurrent``: the two shares sealed from two threads at once; both must complete and chain as 1, 2.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def fill(url: str, pupils: int) -> Any:
    from sqlalchemy import insert

    from censustrace.shares.tables import disclosures, shares
    from censustrace.warehouse.db import make_engine, upgrade, write_transaction
    from censustrace.warehouse.load import bulk_insert
    from censustrace.warehouse.tables import extracts

    upgrade(url)
    engine = make_engine(url)
    now = dt.datetime.now(dt.UTC)
    with write_transaction(engine) as conn:
        conn.execute(
            insert(extracts).values(
                extract_id="ext_bench", sha256="0" * 64, size=1, original_name="x.xml", received_at=now,
                format="school_census_xml", la="330", estab="0001", laestab="3300001", term="AUT",
                year=2026, status="loaded", reasons=[],
            )
        )  # fmt: skip
        for n in (1, 2):
            sid = f"shr_bench{n}"
            conn.execute(
                insert(shares).values(
                    share_id=sid, agreement_id="bench", status="recorded", as_of=dt.date(2026, 10, 15),
                    flags=[], reasons=[], fields=["upn"], transforms={}, pupils=pupils, created_at=now,
                )
            )  # fmt: skip
            rows = [(sid, f"{n}{i:063d}", "ext_bench", i, None) for i in range(pupils)]
            columns = ("share_id", "pupil_key", "extract_id", "record_number", "blank_fields")
            for start in range(0, pupils, 50_000):
                bulk_insert(conn, disclosures, columns, rows[start : start + 50_000])
    return engine


def measure(url: str, pupils: int) -> dict[str, Any]:
    from sqlalchemy import update

    from censustrace.audit.register import digest_of, seal_share
    from censustrace.shares.tables import shares
    from censustrace.warehouse.db import write_transaction

    engine = fill(url, pupils)
    now = dt.datetime.now(dt.UTC)
    t0 = time.perf_counter()
    with write_transaction(engine) as conn:  # baseline, then undone for ours
        conn.execute(
            update(shares)
            .where(shares.c.share_id == "shr_bench1")
            .values(status="delivered", delivered_at=now)
        )
    baseline = time.perf_counter() - t0
    with write_transaction(engine) as conn:
        conn.execute(update(shares).where(shares.c.share_id == "shr_bench1").values(status="recorded"))
    t0 = time.perf_counter()
    digest = digest_of(engine, "shr_bench1")
    t1 = time.perf_counter()
    with write_transaction(engine) as conn:
        conn.execute(
            update(shares)
            .where(shares.c.share_id == "shr_bench1")
            .values(status="delivered", delivered_at=now)
        )
        head = seal_share(conn, "shr_bench1", digest)
    t2 = time.perf_counter()
    assert head is not None
    assert head.seq == 1

    # Two releases at once (share 2 and a third share made from share 1's rows are not needed: share 2
    # and a blocked share race for the chain).
    done: list[float] = []

    def release(share_id: str) -> None:
        start = time.perf_counter()
        found = digest_of(engine, share_id)
        with write_transaction(engine) as conn:
            conn.execute(
                update(shares)
                .where(shares.c.share_id == share_id)
                .values(status="delivered", delivered_at=now)
            )
            seal_share(conn, share_id, found)
        done.append(time.perf_counter() - start)

    with write_transaction(engine) as conn:
        from sqlalchemy import insert

        conn.execute(
            insert(shares).values(
                share_id="shr_bench3", agreement_id="bench", status="blocked", as_of=dt.date(2026, 10, 15),
                flags=[], reasons=[], fields=[], transforms={}, created_at=now,
            )
        )  # fmt: skip
    threads = [threading.Thread(target=release, args=(s,)) for s in ("shr_bench2", "shr_bench3")]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    both = time.perf_counter() - start
    engine.dispose()
    return {
        "pupils": pupils,
        "baseline_txn_s": round(baseline, 4),
        "digest_s": round(t1 - t0, 3),
        "seal_txn_s": round(t2 - t1, 4),
        "concurrent_both_s": round(both, 3),
        "concurrent_each_s": sorted(round(d, 3) for d in done),
        "both_completed": len(done) == 2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pupils", default="100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    args = parser.parse_args()
    from sqlalchemy import create_engine, text

    results = []
    for backend in args.backends.split(","):
        for pupils in [int(p) for p in args.pupils.split(",")]:
            if backend == "sqlite":
                url = f"sqlite:///{tempfile.mkdtemp(prefix='bench-audit-')}/warehouse.db"
                results.append({"backend": backend, **measure(url, pupils)})
                continue
            admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
            name = f"censustrace_bench_{secrets.token_hex(4)}"
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            try:
                url = admin.url.set(database=name).render_as_string(hide_password=False)
                results.append({"backend": backend, **measure(url, pupils)})
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
                admin.dispose()
    for row in results:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
