"""Census reader throughput and peak memory: streaming readers against a naive whole-document baseline.

Run: ``.venv/bin/python bench/bench_parsers.py [--pupils 100000] [--keep DIR]``

For each format it generates ``--pupils`` pupils (5,000 per school file) with the project's generator,
then times, each in a fresh subprocess so memory figures do not mix:

* ``streaming``: ``censustrace.census.formats`` (iterparse with clearing / CSV streaming + UPN index);
  records are consumed and dropped, as the pipeline does.
* ``tree+map`` (XML/CTF): ``lxml.etree.parse`` of the whole document, then the streaming readers' own
  mapping per pupil, all records kept: the cost of the tree alone.
* ``naive``: XML/CTF ``lxml.etree.parse`` of the whole document, then XPath per pupil item, all records
  kept in a list; CSV ``csv.DictReader`` of the three tables into lists, then dict joins.

Both produce the same PupilRecords (checked on the first file before timing). XML is also measured on
one file holding all the pupils, where the difference in memory shows. Peak memory is the child's
resident high-water mark (``VmHWM``), which, unlike tracemalloc, includes libxml2's own allocations;
"growth" is that peak minus the resident size just before parsing (interpreter and imports).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lxml import etree

from censustrace.census.formats import census_xml, ctf_xml, la_csv
from censustrace.census.formats.errors import RecordContext
from censustrace.census.formats.header import NO_HINTS, ExtractHeader
from censustrace.census.formats.records import make_record
from censustrace.census.formats.values import Item, Kind, address_lines, convert, fsm_eligible, fsm_period
from censustrace.census.generator import Format, GeneratorOptions, generate
from censustrace.census.model import ADDRESS_ITEMS, PupilRecord

PER_FILE = 5000


# --- naive baselines ------------------------------------------------------------------------------


def _x(node: Any, expr: str) -> Any:
    """XPath with plain strings: lxml's default "smart" strings would keep every document alive."""
    return node.xpath(expr, smart_strings=False)


def _xpath_items(p: Any, items: tuple[Item, ...], ctx: RecordContext) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for item in items:
        if item.kind is Kind.LIST:
            values[item.field] = tuple(t.strip() for t in _x(p, f"{item.source}/text()") if t.strip())
        else:
            values[item.field] = convert(item, _x(p, f"string({item.source})").strip() or None, ctx)
    return values


def _xpath_address_fsm(p: Any, address: str, fsm: str, header: ExtractHeader, values: dict[str, Any]) -> None:
    lines = [_x(p, f"string({address}BS7666Address/{name})").strip() for name in ADDRESS_ITEMS]
    postcode = _x(p, f"string({address}BS7666Address/PostCode)").strip() or None
    uprn = _x(p, f"string({address}UniquePropertyReferenceNumber)").strip() or None
    values["address_lines"], values["postcode"], values["uprn"] = (
        address_lines(lines, postcode, uprn),
        postcode,
        uprn,
    )
    ctx = RecordContext("", 0, "pupil")
    periods = [
        fsm_period(
            _x(g, "string(FSMstartDate)") or None,
            _x(g, "string(FSMendDate)") or None,
            _x(g, "string(UKcountry)") or None,
            ctx,
            ("FSMstartDate", "FSMendDate", "UKcountry"),
        )
        for g in _x(p, fsm)
    ]
    values["fsm_periods"] = tuple(x for x in periods if x)
    values["fsm_eligible"] = fsm_eligible(values["fsm_periods"], header.reference_date, None in periods)


def naive_census_xml(path: Path) -> list[PupilRecord]:
    tree = etree.parse(str(path))
    header = census_xml.read_header(path)
    records = []
    for number, p in enumerate(_x(tree, "/Message/Pupils/PupilOnRoll"), start=1):
        ctx = RecordContext(path.name, number, "pupil")
        values = _xpath_items(p, census_xml.ITEMS, ctx)
        _xpath_address_fsm(p, census_xml.ADDRESS, census_xml.FSM_GROUP, header, values)
        records.append(make_record(values, header))
    return records


def naive_ctf_xml(path: Path) -> list[PupilRecord]:
    tree = etree.parse(str(path))
    header = ctf_xml.read_header(path)
    records = []
    for number, p in enumerate(_x(tree, "/CTfile/CTFpupilData/Pupil"), start=1):
        ctx = RecordContext(path.name, number, "pupil")
        values = _xpath_items(p, ctf_xml.ITEMS, ctx)
        values["entry_date"] = ctf_xml._entry_date(_x(p, ctf_xml.SCHOOL_GROUP), header, ctx)
        values["language"] = ctf_xml._language(_x(p, ctf_xml.LANGUAGE_GROUP), ctx)
        values["sen_provision"] = _x(p, f"string({ctf_xml.SEN_GROUP}[last()]/SENprovision)") or None
        needs = sorted(
            (int(_x(n, "string(SENtypeRank)")), _x(n, "string(SENtype)"))
            for n in _x(p, ctf_xml.SEN_NEED_GROUP)
        )
        values["sen_needs"] = tuple(kind for _, kind in needs)
        _xpath_address_fsm(p, ctf_xml.ADDRESS, ctf_xml.FSM_GROUP, header, values)
        records.append(make_record(values, header))
    return records


def naive_la_csv(pupilonroll: Path) -> list[PupilRecord]:
    def rows(table: str) -> list[dict[str, str]]:
        with pupilonroll.with_name(pupilonroll.name.replace("pupilonroll", table)).open(
            encoding="utf-8-sig", newline=""
        ) as fh:
            return list(csv.DictReader(fh))

    header = la_csv.read_header(pupilonroll)
    addresses: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows("addressesonroll"):
        addresses[row["upn"]].append(row)
    fsm: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows("fsmperiod"):
        fsm[row["upn"]].append(row)
    records = []
    for number, row in enumerate(rows("pupilonroll"), start=1):
        ctx = RecordContext(pupilonroll.name, number, "row")
        values: dict[str, Any] = {}
        for item in la_csv.PUPIL_ITEMS:
            raw = (row.get(item.source) or "").strip()
            if item.kind is Kind.LIST:
                values[item.field] = tuple(x for x in raw.split(";") if x)
            else:
                values[item.field] = convert(item, raw, ctx)
        if addresses.get(values["upn"]):
            a = addresses[values["upn"]].pop(0)
            postcode, uprn = a["postcode"] or None, a["uniquepropertyreferencenumber"] or None
            lines = address_lines([a[c] for c in la_csv.ADDRESS_COLUMNS], postcode, uprn)
            values["address_lines"], values["postcode"], values["uprn"] = lines, postcode, uprn
        periods = [
            fsm_period(f["fsmstartdate"], f["fsmenddate"], f["ukcountry"], ctx, la_csv.FSM_COLUMNS)
            for f in fsm.get(values["upn"], [])
        ]
        values["fsm_periods"] = tuple(p for p in periods if p)
        values["fsm_eligible"] = fsm_eligible(values["fsm_periods"], header.reference_date, None in periods)
        records.append(make_record(values, header))
    return records


def tree_then_map(fmt: str, path: Path) -> list[PupilRecord]:
    """Whole-document parse, then the streaming readers' own mapping: isolates what streaming saves."""
    reader = census_xml if fmt == "xml" else ctf_xml
    header = reader.read_header(path)
    root = etree.parse(str(path)).getroot()
    layout = reader.LAYOUT
    pupils = root.iterfind(f"{layout.container}/{layout.record}")
    return [reader._record(p, n, path.name, header).record for n, p in enumerate(pupils, start=1)]


# --- streaming ------------------------------------------------------------------------------------


def streaming(fmt: str, path: Path) -> Iterator[Any]:
    if fmt == "xml":
        return census_xml.iter_records(path)
    if fmt == "ctf":
        return ctf_xml.iter_records(path)
    return la_csv.iter_records(path, NO_HINTS)


NAIVE = {"xml": naive_census_xml, "ctf": naive_ctf_xml, "csv": naive_la_csv}


# --- one measurement, in a child process -----------------------------------------------------------


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def child(fmt: str, method: str, files: list[Path]) -> dict[str, Any]:
    rss_before = _status_kib("VmRSS")
    started = time.perf_counter()
    pupils = 0
    kept: list[list[PupilRecord]] = []
    for path in files:
        if method == "streaming":
            pupils += sum(1 for _ in streaming(fmt, path))
        elif method == "tree+map":
            kept.append(tree_then_map(fmt, path))
            pupils += len(kept[-1])
        else:
            kept.append(NAIVE[fmt](path))  # naive: the whole result is held, as a list-returning API would
            pupils += len(kept[-1])
    seconds = time.perf_counter() - started
    peak = _status_kib("VmHWM")
    return {
        "pupils": pupils,
        "seconds": seconds,
        "peak_mib": peak / 1024,
        "growth_mib": (peak - rss_before) / 1024,
    }


def measure(fmt: str, method: str, files: list[Path]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", fmt, method, *map(str, files)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout))


def stitch(files: list[Path], target: Path) -> Path:
    """One census XML with every pupil of ``files`` under the first file's header."""
    with target.open("w", encoding="utf-8") as fh:
        for n, path in enumerate(files):
            text = path.read_text(encoding="utf-8")
            start, end = text.index("<Pupils>\n") + len("<Pupils>\n"), text.index("  </Pupils>")
            if n == 0:
                fh.write(text[:start])
            fh.write(text[start:end])
        fh.write("  </Pupils>\n</Message>\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pupils", type=int, default=100_000)
    parser.add_argument("--keep", type=Path, help="generate into (and keep) this folder")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        fmt, method, *files = args.child
        print(json.dumps(child(fmt, method, [Path(f) for f in files])))
        return

    work = args.keep or Path(tempfile.mkdtemp(prefix="censustrace-bench-"))
    schools = max(1, args.pupils // PER_FILE)
    try:
        formats: tuple[Format, ...] = ("xml", "ctf", "csv")
        for fmt in formats:
            folder = work / fmt
            started = time.perf_counter()
            manifest = generate(
                GeneratorOptions(out=folder, schools=schools, pupils_per_school=PER_FILE, fmt=fmt)
            )
            generated = time.perf_counter() - started
            files = [folder / f["file"] for f in manifest["files"] if f["table"] in (None, "pupilonroll")]
            size = sum(f.stat().st_size for f in folder.iterdir() if f.name != "manifest.json")
            # Same records from both, on the first file, before anything is timed.
            assert [r for _, r, _ in streaming(fmt, files[0])] == NAIVE[fmt](files[0]), fmt
            sets = [(f"{fmt} ({len(files)} schools, {size / 2**20:.0f} MiB)", files)]
            if fmt == "xml":
                big = stitch(files, folder / "SC_330_9999_AUT_2026.xml")
                sets.append((f"xml (1 file, {big.stat().st_size / 2**20:.0f} MiB)", [big]))
            for label, paths in sets:
                for method in ("streaming", "tree+map", "naive") if fmt != "csv" else ("streaming", "naive"):
                    result = measure(fmt, method, paths)
                    rate = result["pupils"] / result["seconds"]
                    print(
                        f"{label:30} {method:9} {result['pupils']:>8,} pupils {result['seconds']:7.2f} s "
                        f"{rate:>9,.0f} pupils/s  peak RSS {result['peak_mib']:7.1f} MiB"
                        f"  (growth {result['growth_mib']:7.1f} MiB)",
                        flush=True,
                    )
            print(f"{'':30} (generated in {generated:.1f} s)", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
