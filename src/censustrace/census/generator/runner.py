"""``generate``: write a whole synthetic census, school by school, and its manifest.

Determinism: every random choice comes from ``random.Random`` seeded with a string built from the
seed, the LA and the school index (string seeds hash with SHA-512, independent of PYTHONHASHSEED);
nothing depends on the clock, on dict/set order or on the output folder, so the same options give
byte-identical files and manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

from censustrace import __version__
from censustrace.census.generator import names
from censustrace.census.generator.faults import RowFaultInjector, plan_whole_file_faults
from censustrace.census.generator.options import GeneratorOptions
from censustrace.census.generator.pupils import Census, PupilFactory, School, plan_schools
from censustrace.census.generator.writers import (
    CensusXmlWriter,
    ConsentWriter,
    CsvWriter,
    CtfWriter,
    SchoolWriter,
)
from censustrace.census.model import PupilRecord
from censustrace.errors import UsageError

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1
_CONSENT_SHARE = 0.05


def _writer(
    options: GeneratorOptions, census: Census, schools: list[School], school: School, fault: str | None
) -> SchoolWriter:
    pupils = options.pupils_per_school
    if options.fmt == "xml":
        return CensusXmlWriter(options.out, school, census, pupils, fault)
    if options.fmt == "ctf":
        dest = schools[(school.index + 1) % len(schools)]
        return CtfWriter(options.out, school, census, pupils, fault, dest)
    return CsvWriter(options.out, school, census, pupils, fault)


def _consents(writer: ConsentWriter, pupil: PupilRecord, rng: random.Random) -> None:
    """A few decisions per school, recorded in the two years before the census day."""
    if rng.random() >= _CONSENT_SHARE:
        return
    ref = pupil.reference_date
    earliest = max(pupil.entry_date or ref, ref - dt.timedelta(days=730))
    purposes = [names.CONSENT_PURPOSES.pick(rng)]
    if rng.random() < 0.15:
        other = names.CONSENT_PURPOSES.pick(rng)
        if other != purposes[0]:
            purposes.append(other)
    for purpose in purposes:
        decision = "object" if rng.random() < names.OBJECTION_SHARE[purpose] else "consent"
        recorded = dt.date.fromordinal(rng.randint(earliest.toordinal(), ref.toordinal()))
        writer.write(pupil.upn, purpose, decision, recorded.isoformat(), names.CONSENT_SOURCES.pick(rng))


def generate(options: GeneratorOptions) -> dict[str, Any]:
    """Write the census files for ``options`` to ``options.out`` and return the manifest.

    The manifest (also written to ``out/manifest.json``) lists every file with its SHA-256 and every
    injected fault with a location that names no pupil; see ``docs/data-model.md``. Existing files
    of the same names are overwritten; other files in ``out`` are left alone.
    """
    try:
        options.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {options.out}: cannot create the folder ({exc.strerror})") from exc

    census = Census.of(options.term, options.year)
    schools = plan_schools(options)
    factory = PupilFactory(options, census, schools)
    whole_file = plan_whole_file_faults(options.schools, options.faults, options.fmt, options.seed)
    files: list[dict[str, Any]] = []
    faults: list[dict[str, Any]] = []
    consent_files: list[dict[str, Any]] = []

    for school in schools:
        base = f"censustrace-gen:{options.seed}:{options.la}:{school.index}"
        pupil_rng = random.Random(base + ":pupils")
        # Faults and consents draw from their own streams, so the pupils are the same at any rate.
        file_fault = whole_file.get(school.index)
        injector = RowFaultInjector(random.Random(base + ":faults"), 0.0 if file_fault else options.faults)
        consent_rng = random.Random(base + ":consents")
        writer = _writer(options, census, schools, school, file_fault)
        consent_writer = ConsentWriter(options.out, school, census) if options.consents else None
        for pupil in factory.pupils(school, pupil_rng):
            fault = injector.next(pupil)
            if fault is None:
                writer.write(pupil)
            else:
                writer.write(pupil, fault.overrides)
                name, location = writer.fault_site(fault.field)
                faults.append({"file": name, "location": location, "fault": fault.kind})
            if consent_writer is not None and pupil.enrol_status != "S":
                _consents(consent_writer, pupil, consent_rng)
        entries = writer.close()
        files.extend(entries)
        for entry in entries:
            if entry["whole_file_fault"]:
                faults.append(
                    {"file": entry["file"], "location": {"file": True}, "fault": entry["whole_file_fault"]}
                )
        if consent_writer is not None:
            consent_files.append(consent_writer.close())

    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "generator": {
            "name": "censustrace.census.generator",
            "version": __version__,
            **options.as_manifest(),
        },
        "files": files,
        "faults": faults,
        "consents": consent_files,
    }
    path: Path = options.out / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest
