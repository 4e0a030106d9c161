"""Every row fault the generator injects is caught by the expectation meant for it (``meta.fault``), with
exact counts against the manifest, in all three formats; clean files pass every suite, warnings
included.

Counting rules (docs/data-quality.md):
* ``impossible_dob``: a DOB after the census day or before 1961 is caught by CT-DQ-DOB-RANGE; a DOB that
  is no date at all (``2016-02-30``) never reaches validation: the parser rejects the record as
  ``CT-PARSE-VALUE:dob``, which counts as the catch for that sub-case;
* ``unknown_code`` and ``missing_mandatory`` are counted per field (CT-DQ-CODE:<field>,
  CT-DQ-MISSING:<field>);
* expectations meant for no generator fault may fail only on rows the manifest lists as damaged: an
  impossible DOB also puts the pupil's FSM periods before birth; and in an LA CSV export a duplicated UPN
  joins both pupils' FSM rows to both records (the join is on UPN), so the earlier twin's periods may
  overlap too.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import select

from censustrace.census.generator import ROW_FAULTS
from censustrace.config import Settings
from censustrace.quality.run import validate_extract
from censustrace.quality.suites import load_suites
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import staged_pupil
from tests.plugins.helpers.warehouse import generated
from tests.quality.helpers import Record, flagged, manifest_faults, reject_codes, stage_files

# Large enough for every fault class in every format at this seed (the test checks it).
FAULTY = {"schools": 12, "pupils_per_school": 80, "seed": 7, "faults": 0.08}
COUNTED_ONLY = "CT-DQ-UPN-TEMPORARY"  # never fails: counts temporary UPNs


def _upns(settings: Settings, extract_id: str) -> dict[int, str | None]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(staged_pupil.c.record_number, staged_pupil.c.upn).where(
                staged_pupil.c.extract_id == extract_id
            )
        )
        return {int(n): upn for n, upn in rows}


@pytest.mark.parametrize("fmt", ["xml", "ctf", "csv"])
def test_every_fault_is_caught_by_its_expectation_with_exact_counts(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(tmp_path_factory, fmt=fmt, **FAULTY)
    staged = stage_files(wh, folder, manifest)
    file_of = {extract: file for file, extract in staged.items()}
    # What the parser rejected, and each record's UPN, read before validation (a quarantine empties it).
    parse_rejected = {
        (file, n): codes for file, extract in staged.items() for n, codes in reject_codes(wh, extract).items()
    }
    upns = {(file, n): upn for file, extract in staged.items() for n, upn in _upns(wh, extract).items()}
    statuses = {file: validate_extract(extract, wh).status for file, extract in staged.items()}
    got = flagged(wh, file_of)
    expected = manifest_faults(manifest)

    assert {kind.partition(":")[0] for kind in expected} == set(ROW_FAULTS)  # every class is exercised
    assert set(statuses.values()) <= {"rows_rejected", "quarantined", "warnings"}

    meant: dict[str, set[str]] = defaultdict(set)
    for suite in load_suites(wh.expectations_dir):
        for spec in suite.expectations:
            if spec.fault:
                meant[spec.fault].add(spec.code)

    # impossible_dob: CT-DQ-DOB-RANGE, or the parser for a DOB that is no date.
    no_such_day = {r for r, codes in parse_rejected.items() if "CT-PARSE-VALUE:dob" in codes}
    assert got["CT-DQ-DOB-RANGE"] | no_such_day == expected["impossible_dob"]
    assert not got["CT-DQ-DOB-RANGE"] & no_such_day
    assert set(parse_rejected) == no_such_day  # the parser rejects nothing else here

    for kind, records in expected.items():
        base, _, field = kind.partition(":")
        if base == "impossible_dob":
            continue
        if field:
            prefix = {"unknown_code": "CT-DQ-CODE:", "missing_mandatory": "CT-DQ-MISSING:"}[base]
            code = prefix + field
            assert code in meant[base]
        else:
            (code,) = meant[base]
        assert got[code] == records, (
            f"{kind}: missed {sorted(records - got[code])[:5]}, extra {sorted(got[code] - records)[:5]}"
        )

    # The expectations meant for a fault flag nothing where the manifest has none of it.
    for base, codes in meant.items():
        for code in codes:
            field = code.partition(":")[2]
            kind = f"{base}:{field}" if field else base
            if kind not in expected and base != "impossible_dob":
                assert got[code] == set(), code

    # The others flag only damaged rows (see the module docstring).
    damaged: set[Record] = set().union(*expected.values())
    if fmt == "csv":
        duplicated = {upns[r] for r in expected["duplicate_upn"]}
        damaged |= {r for r, upn in upns.items() if upn in duplicated}
    fault_codes = {c for codes in meant.values() for c in codes}
    for code, records in got.items():
        if code not in fault_codes and code != COUNTED_ONLY:
            assert records <= damaged, f"{code} flags undamaged rows {sorted(records - damaged)[:5]}"


@pytest.mark.parametrize("fmt", ["xml", "ctf", "csv"])
def test_a_clean_census_passes_every_suite_warnings_included(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=4, pupils_per_school=120, fmt=fmt, seed=3)
    staged = stage_files(wh, folder, manifest)
    assert len(staged) == 4
    for extract in staged.values():
        outcome = validate_extract(extract, wh)
        assert outcome.status == "passed", outcome.as_dict()
        assert (outcome.warnings, outcome.errors, dict(outcome.rejected)) == ((), (), {})
        assert all(s.success for s in outcome.suites)
        assert reject_codes(wh, extract) == {}
    summary: dict[str, Any] = outcome.as_dict()
    assert [s["name"] for s in summary["suites"]] == ["pupil", "pupil_address", "fsm_period"]
    assert summary["data_docs"][0] == f"validations/pupil/{outcome.extract_id}/latest/pupil.html"
