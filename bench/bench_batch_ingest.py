"""Batched ingest (``censustrace ingest FILES... --json``) against a naive script, same files, same run.

Run: ``.venv/bin/python bench/bench_batch_ingest.py [--files 100] [--pupils 450] [--faults 0.0]
[--memory-files 200] [--keep DIR] [--json out.json]``

Each path runs in a fresh subprocess on the same generated School Census XML files (SQLite warehouse
and lineage store in a new home):

* ``ours``: ``censustrace ingest FILE... --json``: archive (sha256, read-only copy), register, parse,
  stage, every GX suite on every row (one GX run per suite per batch), publish, per-file lineage written
  in one store transaction per batch. Two times: the whole command as a user runs it (interpreter start,
  imports, GX's import: about 4-6 s on this machine), and the work alone (the same command called in a
  process that has already imported censustrace and GX, clock around the call).
* ``naive``: what a data engineer would write: for each file copy it into an archive folder and sha256
  it, ``xml.etree.ElementTree`` for the pupils (identifiers, characteristics, status), then one pandas
  frame, ONE GX run of 12 built-in expectations over all rows, and ``DataFrame.to_sql`` into SQLite.
  No registry, no staging, no quarantine, no lineage, no per-file results. Timed the same two ways.
* ``floor``: sha256 of each file plus a bare lxml ``iterparse`` counting pupils (one process).
* ``memory``: ``ours`` on ``--memory-files`` files in ONE batch: peak RSS (``VmHWM``) of the process.

Pupils/s = pupils in the files / wall seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-pupil-key-secret"

OURS = r"""
import json, os, sys, time, io, contextlib
t0 = time.perf_counter()
from censustrace.cli import app
import censustrace.quality.engine as engine, censustrace.quality.suites as suites
from censustrace.config import get_settings
engine.runtime(); suites.load_suites(get_settings().expectations_dir)
from censustrace.intake import batch  # noqa
warm = time.perf_counter() - t0
files = sys.argv[1:]
out = io.StringIO()
c1 = time.process_time()
t1 = time.perf_counter()
with contextlib.redirect_stdout(out):
    try:
        app(["ingest", "--json", *files])
    except SystemExit:
        pass
work = time.perf_counter() - t1
cpu = time.process_time() - c1
status = {}
for line in out.getvalue().splitlines():
    s = json.loads(line)["status"]; status[s] = status.get(s, 0) + 1
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({
    "import_s": warm, "work_s": work, "cpu_s": cpu, "status": status, "peak_mib": int(hwm) / 1024,
}))
"""

NAIVE = r"""
import hashlib, json, shutil, sqlite3, sys, time
from pathlib import Path
t0 = time.perf_counter()
import xml.etree.ElementTree as ET
import pandas as pd
import great_expectations as gx
warm = time.perf_counter() - t0
archive, db = Path(sys.argv[1]), sys.argv[2]
files = sys.argv[3:]
c1 = time.process_time()
t1 = time.perf_counter()
archive.mkdir(parents=True, exist_ok=True)
rows = []
for f in files:
    data = Path(f).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    shutil.copyfile(f, archive / sha)
    root = ET.fromstring(data)
    lea = root.findtext("Header/Source/LEA"); estab = root.findtext("Header/Source/Estab")
    for p in root.iter("PupilOnRoll"):
        rows.append({
            "file_sha256": sha, "laestab": f"{lea}{estab}",
            "upn": p.findtext("PupilIdentifiers/UPN"), "surname": p.findtext("PupilIdentifiers/Surname"),
            "forename": p.findtext("PupilIdentifiers/Forename"), "dob": p.findtext("PupilIdentifiers/DOB"),
            "sex": p.findtext("PupilIdentifiers/Sex"),
            "ethnicity": p.findtext("PupilCharacteristics/Ethnicity"),
            "language": p.findtext("PupilCharacteristics/Language"),
            "entry_date": p.findtext("PupilStatus/EntryDate"),
            "enrol_status": p.findtext("PupilStatus/EnrolStatus"),
            "nc_year": p.findtext("PupilStatus/NCyearActual"),
            "postcode": p.findtext("HomeInformation/Address/BS7666Address/PostCode"),
        })
frame = pd.DataFrame(rows)
context = gx.get_context(mode="ephemeral")
asset = context.data_sources.add_pandas("naive").add_dataframe_asset("pupils")
definition = asset.add_batch_definition_whole_dataframe("all")
batch = definition.get_batch(batch_parameters={"dataframe": frame})
E = gx.expectations
suite = gx.ExpectationSuite(name="naive", expectations=[
    E.ExpectColumnValuesToNotBeNull(column="upn"), E.ExpectColumnValuesToNotBeNull(column="surname"),
    E.ExpectColumnValuesToNotBeNull(column="forename"), E.ExpectColumnValuesToNotBeNull(column="dob"),
    E.ExpectColumnValuesToNotBeNull(column="sex"), E.ExpectColumnValuesToNotBeNull(column="entry_date"),
    E.ExpectColumnValuesToMatchRegex(column="upn", regex=r"^[A-Z][0-9]{11}[0-9A-Z]$"),
    E.ExpectColumnValuesToBeInSet(column="sex", value_set=["M", "F"]),
    E.ExpectColumnValuesToBeInSet(column="enrol_status", value_set=["C", "M", "S", "F", "G"]),
    E.ExpectColumnValuesToMatchRegex(column="dob", regex=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"),
    E.ExpectColumnValuesToMatchRegex(column="postcode", regex=r"^[A-Z]{1,2}[0-9][0-9A-Z]? [0-9][A-Z]{2}$"),
    E.ExpectTableRowCountToBeBetween(min_value=1),
])
result = batch.validate(suite)
with sqlite3.connect(db) as conn:
    frame.to_sql("pupil", conn, if_exists="append", index=False)
work = time.perf_counter() - t1
cpu = time.process_time() - c1
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(json.dumps({
    "import_s": warm, "work_s": work, "cpu_s": cpu, "rows": len(frame), "gx_success": result.success,
    "peak_mib": int(hwm) / 1024,
}))
"""

FLOOR = r"""
import hashlib, json, sys, time
from lxml import etree
c1 = time.process_time(); t1 = time.perf_counter(); n = 0
for f in sys.argv[1:]:
    data = open(f, "rb").read(); hashlib.sha256(data).hexdigest()
    for _, el in etree.iterparse(f, tag="PupilOnRoll"):
        n += 1; el.clear()
print(json.dumps({"work_s": time.perf_counter() - t1, "cpu_s": time.process_time() - c1, "pupils": n}))
"""


def _generate(out: Path, files: int, pupils: int, faults: float, seed: int) -> list[Path]:
    from censustrace.census.generator import GeneratorOptions, generate

    if not (out / "manifest.json").exists():
        generate(
            GeneratorOptions(
                schools=files, pupils_per_school=pupils, seed=seed, fmt="xml", faults=faults, out=out
            )
        )
    manifest = json.loads((out / "manifest.json").read_text())
    return [out / f["file"] for f in manifest["files"]]


def _env(home: Path, batch_files: int | None = None) -> dict[str, str]:
    env = {**os.environ, "CENSUSTRACE_HOME": str(home), "CENSUSTRACE_PUPIL_KEY_SECRET": SECRET}
    env["PYTHONPATH"] = str(ROOT / "src")
    if batch_files:
        env["CENSUSTRACE_INGEST_BATCH_FILES"] = str(batch_files)
    return env


def _child(code: str, args: list[str], env: dict[str, str]) -> tuple[dict[str, Any], float]:
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"child failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall


def _init(home: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "censustrace.cli", "init"], env=_env(home), capture_output=True, check=False
    )


def _command(home: Path, files: list[Path]) -> float:
    """The whole ``censustrace ingest`` command, as a user runs it."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "censustrace.cli", "ingest", "--json", *map(str, files)],
        env=_env(home),
        capture_output=True,
        check=False,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--pupils", type=int, default=450)
    parser.add_argument("--faults", type=float, default=0.0)
    parser.add_argument("--memory-files", type=int, default=200)
    parser.add_argument("--memory-pupils", type=int, default=450)
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="ctbatch-"))
    work.mkdir(parents=True, exist_ok=True)
    files = _generate(work / f"xml-{args.files}x{args.pupils}", args.files, args.pupils, args.faults, 12)
    pupils = args.files * args.pupils
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "files": args.files,
        "pupils": pupils,
        "load_before": os.getloadavg(),
    }
    stamp = str(time.time_ns())
    # ours: the work in a warm process, and the whole command in a fresh home
    home = work / f"home-ours-{stamp}"
    _init(home)
    ours, wall = _child(OURS, list(map(str, files)), _env(home))
    results["ours"] = {**ours, "process_wall_s": wall, "pupils_per_s": pupils / ours["work_s"]}
    home2 = work / f"home-cmd-{stamp}"
    _init(home2)
    cmd = _command(home2, files)
    results["ours_command"] = {"wall_s": cmd, "pupils_per_s": pupils / cmd}
    naive, wall = _child(
        NAIVE,
        [str(work / f"naive-archive-{stamp}"), str(work / f"naive-{stamp}.db"), *map(str, files)],
        _env(home),
    )
    results["naive"] = {
        **naive,
        "process_wall_s": wall,
        "pupils_per_s": pupils / naive["work_s"],
        "command_pupils_per_s": pupils / wall,
    }
    floor, _ = _child(FLOOR, list(map(str, files)), _env(home))
    results["floor"] = {**floor, "pupils_per_s": pupils / floor["work_s"]}
    results["ratio_work"] = results["ours"]["pupils_per_s"] / results["naive"]["pupils_per_s"]
    results["ratio_cpu"] = naive["cpu_s"] / ours["cpu_s"]
    results["ratio_command"] = (
        results["ours_command"]["pupils_per_s"] / results["naive"]["command_pupils_per_s"]
    )
    if args.memory_files:
        mem_files = _generate(
            work / f"xml-{args.memory_files}x{args.memory_pupils}",
            args.memory_files,
            args.memory_pupils,
            0.0,
            13,
        )
        home3 = work / f"home-mem-{stamp}"
        _init(home3)
        mem, _ = _child(OURS, list(map(str, mem_files)), _env(home3, batch_files=args.memory_files))
        results["memory"] = {
            **mem,
            "files": args.memory_files,
            "pupils": args.memory_files * args.memory_pupils,
        }
    results["load_after"] = os.getloadavg()
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
