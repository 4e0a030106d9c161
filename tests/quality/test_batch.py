"""Batch validation (one GX run per suite over many extracts) gives every extract exactly the outcome
that validating it alone gives: the same statuses, counts, codes, record numbers, stored results,
reject codes and lineage facets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from censustrace.config import Settings
from censustrace.quality.batch import validate_batch
from censustrace.quality.run import validate_extract
from tests.plugins.helpers.warehouse import generated, sqlite_home
from tests.quality.helpers import reject_codes, stage_files, stored_results

# Enough faults that some files pass, some reject rows and at least one is quarantined by its threshold;
# pupils in two schools' files (dual registration) share a UPN across extracts.
MIXED = {"schools": 8, "pupils_per_school": 60, "seed": 11, "faults": 0.06}


def _comparable(outcome: Any) -> dict[str, Any]:
    data = outcome.as_dict()
    data["rejected_records"] = {n: list(c) for n, c in outcome.rejected.items()}
    data["lineage_inputs"] = [
        {k: v for k, v in (d.inputFacets or {}).items()} for d in outcome.lineage.inputs
    ]
    return data


def _results(settings: Settings, extract_id: str) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in row.items() if k not in ("id", "validated_at")}
        for row in stored_results(settings, extract_id)
    ]


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_batch_validation_equals_file_at_a_time(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(tmp_path_factory, fmt=fmt, **MIXED)
    alone, batched = sqlite_home(tmp_path, "alone"), sqlite_home(tmp_path, "batched")
    staged_alone = stage_files(alone, folder, manifest)
    staged_batched = stage_files(batched, folder, manifest)
    assert staged_alone == staged_batched
    assert len(staged_alone) >= 6
    ids = list(staged_batched.values())
    codes_before = {e: reject_codes(batched, e) for e in ids}

    one_by_one = {e: validate_extract(e, alone) for e in ids}
    together = validate_batch(ids, batched)

    statuses = {one_by_one[e].status for e in ids}
    assert {"rows_rejected", "quarantined"} <= statuses, statuses  # the data exercises every route
    for extract_id in ids:
        assert _comparable(together[extract_id]) == _comparable(one_by_one[extract_id]), extract_id
        assert _results(batched, extract_id) == _results(alone, extract_id), extract_id
        assert reject_codes(batched, extract_id) == reject_codes(alone, extract_id), extract_id
    assert codes_before != {e: reject_codes(batched, e) for e in ids}  # validation did change codes


def test_a_upn_repeated_in_another_file_is_no_duplicate(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The same file twice under two names: in one batch, neither copy's UPNs count as duplicates."""
    folder, manifest = generated(tmp_path_factory, fmt="xml", schools=1, pupils_per_school=30, seed=3)
    settings = sqlite_home(tmp_path, "twice")
    source = folder / manifest["files"][0]["file"]
    copy = tmp_path / source.name.replace("AUT", "AUT_copy")
    copy.write_bytes(source.read_bytes() + b"\n")  # other bytes: a resubmission, not a duplicate
    staged = stage_files(settings, folder, manifest)
    staged |= stage_files(settings, tmp_path, {"files": [{"file": copy.name}]})
    outcomes = validate_batch(list(staged.values()), settings)
    for outcome in outcomes.values():
        assert "CT-DQ-UPN-DUPLICATE" not in outcome.rejected_by_code
        assert outcome.status in ("passed", "warnings")


def test_vectorised_identifier_checks_agree_with_the_reference() -> None:
    import random

    import pandas as pd

    from censustrace.census.identifiers import (
        is_temporary_upn,
        is_valid_uln,
        is_valid_upn,
        make_temporary_upn,
        make_uln,
        make_upn,
    )
    from censustrace.quality.expectations import valid_ulns, valid_upns

    rng = random.Random(4)
    upns = [
        make_upn(rng.randint(1, 999), rng.randint(0, 9999), rng.randint(0, 99), rng.randint(0, 999))
        for _ in range(300)
    ]
    upns += [
        make_temporary_upn(
            rng.randint(1, 999), rng.randint(0, 9999), 5, rng.randint(0, 99), rng.choice("ABCXZ")
        )
        for _ in range(100)
    ]
    # Damaged ones: a changed character, a wrong length, non-ASCII digits, lower case, a letter I.
    upns += [u[:5] + rng.choice("0123456789") + u[6:] for u in upns[:200]]
    upns += [
        "",
        "A",
        upns[0] + "1",
        upns[1][:12],
        "A١٢٣٤٥٦٧٨٩٠١٢",
        upns[2].lower(),
        upns[3][:12] + "I",
        "X00180001701A",
    ]
    ulns = [u for u in (make_uln(str(rng.randint(10**8, 10**9 - 1))) for _ in range(300)) if u]
    ulns += [u[:4] + rng.choice("0123456789") + u[5:] for u in ulns[:200]] + [
        "0123456789",
        "12345",
        "١٢٣٤٥٦٧٨٩٠",
    ]
    valid, temporary = valid_upns(pd.Series(upns))
    assert list(valid) == [is_valid_upn(u) for u in upns]
    assert list(temporary) == [is_temporary_upn(u) for u in upns]
    assert 0 < sum(valid) < len(upns)
    assert sum(temporary) > 0
    assert list(valid_ulns(pd.Series(ulns))) == [is_valid_uln(u) for u in ulns]
