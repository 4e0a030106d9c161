"""Erasure of file copies (``censustrace.compliance.erasure.erase_files``) against a naive baseline in
the same run.

Run: ``.venv/bin/python bench/bench_erasure.py [--schools 40] [--pupils 100]``

A throwaway SQLite home gets a generated AUT 2017 census (``--schools`` School Census XML files of
``--pupils`` pupils, address and nationality items present), ingested by the real ``ingest_file``. Then,
on copies of the same archive:

* *ours*: ``erase_files(settings, 2026-10-15)``: every file is past the six-year address retention and
  holds the legacy items, so each is redacted (lxml), stored under its new sha256, tombstoned (row and
  JSON file) and its original deleted; lineage described;
* *naive*: for each archived file, read it, parse it with lxml, empty the same elements, write the result
  beside it and hash it: the redaction alone, no registry, tombstone or lineage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from lxml import etree
from pydantic import SecretStr

from censustrace.census.generator import GeneratorOptions, generate
from censustrace.compliance.erasure import erase_files
from censustrace.compliance.redact import XML_ELEMENTS
from censustrace.config import Settings
from censustrace.intake.archive import copy_into
from censustrace.intake.ingest import ingest_file
from censustrace.lineage.model import StepLineage


def naive(files: list[Path], out: Path) -> float:
    names = {
        n
        for f in ("address_lines", "postcode", "uprn", "nationality", "country_of_birth")
        for n in XML_ELEMENTS[f]
    }
    start = time.perf_counter()
    for path in files:
        root = etree.fromstring(path.read_bytes(), etree.XMLParser(resolve_entities=False, no_network=True))
        for element in root.iter():
            if isinstance(element.tag, str) and etree.QName(element).localname in names:
                for child in list(element):
                    element.remove(child)
                element.text = None
        data = etree.tostring(root.getroottree(), xml_declaration=True, encoding="UTF-8")
        target = out / hashlib.sha256(data).hexdigest()
        target.write_bytes(data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--pupils", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-erasure-"))
    try:
        settings = Settings(home=root / "home", pupil_key_secret=SecretStr("bench"))  # type: ignore[call-arg]
        settings.ensure_dirs()
        generate(GeneratorOptions(out=root / "census", schools=args.schools, pupils_per_school=args.pupils,
                                  term="AUT", year=2017, seed=7, fmt="xml"))  # fmt: skip
        files = sorted((root / "census").glob("*.xml"))
        for path in files:
            ingest_file(copy_into(path, settings.landing_dir), settings)
        archived = sorted(p for p in settings.archive_dir.glob("??/*") if not p.name.startswith("."))
        size = sum(p.stat().st_size for p in archived)
        naive_dir = root / "naive"
        naive_dir.mkdir()
        naive_s = naive(archived, naive_dir)
        step = StepLineage()
        start = time.perf_counter()
        done = erase_files(settings, dt.date(2026, 10, 15), lineage=step)
        ours_s = time.perf_counter() - start
        assert len([d for d in done if d["copy"] == "archive"]) == len(archived)
        machine = f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
        print(f"machine: {machine}, SQLite")
        print(f"files: {len(archived)} ({args.pupils} pupils each, {size / 1e6:.1f} MB)")
        print(f"ours  erase_files: {ours_s:.2f} s ({1000 * ours_s / len(archived):.1f} ms/file)")
        print(f"naive lxml redact: {naive_s:.2f} s ({1000 * naive_s / len(archived):.1f} ms/file)")
        print(f"ratio ours/naive: {ours_s / naive_s:.2f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
