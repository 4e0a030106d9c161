"""LA CSV strictness through the ingest chain, on SQLite and PostgreSQL: a renamed column is named in
the outcome (or quarantines the extract, by setting); an oversized side table is refused with a code."""

from __future__ import annotations

from pathlib import Path

import pytest

from censustrace.config import Settings
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.intake.registry import find_extract
from tests.plugins.helpers.warehouse import generated, land


def _tables(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, rename: tuple[str, str]) -> list[Path]:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=15, fmt="csv", seed=4)
    out = []
    for entry in manifest["files"]:
        source = folder / entry["file"]
        data = source.read_bytes()
        if source.name.startswith("pupilonroll"):
            head, sep, rest = data.partition(b"\r\n")
            columns = [rename[1] if c == rename[0] else c for c in head.decode().split(",")]
            data = ",".join(columns).encode() + sep + rest
        target = tmp_path / source.name
        target.write_bytes(data)
        out.append(target)
    return out


def _ingest(settings: Settings, paths: list[Path]) -> IngestOutcome:
    return [ingest_file(land(settings, p), settings) for p in paths][-1]


def test_a_renamed_column_is_a_warning_naming_it(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    outcome = _ingest(wh, _tables(tmp_path_factory, tmp_path, ("formerupn", "former_upn")))
    assert outcome.status == "loaded"
    (warning,) = [e for e in outcome.errors if e["code"] == "CT-PARSE-UNKNOWN-COLUMN"]
    assert "former_upn" in warning["message"]
    assert "perhaps formerupn renamed" in warning["message"]
    assert warning["location"].startswith("pupilonroll_")
    assert "line 1" in warning["location"]
    registry = find_extract(wh, outcome.extract_id or "")
    assert "CT-PARSE-UNKNOWN-COLUMN" in [r["code"] for r in registry.reasons]


def test_by_setting_a_renamed_column_quarantines_the_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    strict = wh.model_copy(update={"csv_unknown_columns": "quarantine"})
    outcome = _ingest(strict, _tables(tmp_path_factory, tmp_path, ("senneeds", "senneed")))
    assert outcome.status == "quarantined"
    (error,) = outcome.errors
    assert error["code"] == "CT-PARSE-UNKNOWN-COLUMN"
    assert "senneed" in error["message"]
    assert "line 1" in error["location"]


def test_an_oversized_side_table_is_refused_with_a_code(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    capped = wh.model_copy(update={"csv_side_table_max_rows": 5})
    outcome = _ingest(capped, _tables(tmp_path_factory, tmp_path, ("", "")))
    assert outcome.status == "quarantined"
    (error,) = outcome.errors
    assert error["code"] == "CT-PARSE-TOO-LARGE"
    assert "addressesonroll_" in error["location"]
    assert "line 7" in error["location"]
