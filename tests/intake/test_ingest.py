"""The ingest chain (receive -> register -> stage -> publish) on SQLite and PostgreSQL: round trips for the
three formats, duplicates, resubmissions, idempotence, rejections, bad input and privacy."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.serde import Serde
from sqlalchemy import select

from censustrace.census.formats import parse_extract
from censustrace.config import Settings
from censustrace.intake.ingest import IngestOutcome, ingest_file
from censustrace.intake.publish import publish
from censustrace.intake.quarantine import REASON_FILE, IngestError, safe_file_name
from censustrace.intake.receive import receive
from censustrace.intake.registry import find_extract, register
from censustrace.intake.stage import stage
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.warehouse.current import current_pupils, pupil_records
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import (
    fsm_period,
    pupil,
    pupil_address,
    rejected_record,
    staged_fsm_period,
    staged_pupil,
    staged_pupil_address,
)
from tests.plugins.helpers.intake import BAD_XML, one_school
from tests.plugins.helpers.privacy import identifiers_in, leaks
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET, generated, land, rows_of

FORMATS = {"xml": "school_census_xml", "ctf": "ctf_xml", "csv": "la_csv"}


def ingest_all(settings: Settings, folder: Path, manifest: dict[str, Any]) -> list[IngestOutcome]:
    return [ingest_file(land(settings, folder / f["file"]), settings) for f in manifest["files"]]


def _sources(folder: Path, name: str) -> list[Path]:
    return [folder / name]


# --- round trip ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_round_trip_equals_what_the_reader_reads(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(tmp_path_factory, schools=3, pupils_per_school=40, fmt=fmt, seed=11)
    outcomes = ingest_all(wh, folder, manifest)
    loaded = [o for o in outcomes if o.status == "loaded"]
    assert len(loaded) == 3
    assert all(o.errors == () for o in outcomes)
    assert {o.status for o in outcomes} <= {"loaded", "received"}  # CSV: the first two tables wait
    assert sum(o.rows.loaded for o in loaded) == sum(f["pupils"] for f in manifest["files"]) == 120
    engine = warehouse_engine(wh.warehouse_db_url)
    with engine.connect() as conn:
        for outcome in loaded:
            head = find_extract(wh, outcome.extract_id or "")
            expected = [(p.number, p.record) for p in parse_extract(folder / head.original_name)]
            got = list(pupil_records(conn, head.extract_id))
            assert len(got) == len(expected) == 40
            assert got == expected
            assert head.format == FORMATS[fmt]
            assert head.pupil_count == head.rows_read == 40
        keys = conn.execute(select(pupil.c.upn, pupil.c.pupil_key)).all()
    assert all(
        key == hmac.new(PUPIL_KEY_SECRET.encode(), upn.encode(), hashlib.sha256).hexdigest()
        for upn, key in keys
    )
    assert rows_of(wh, staged_pupil) == 0  # publish empties staging
    if fmt == "csv":
        outcome = loaded[0]
        parts = [o for o in outcomes if o.extract_id == outcome.extract_id]
        assert [Path(o.file).name.split("_")[0] for o in parts] == [
            "pupilonroll",
            "addressesonroll",
            "fsmperiod",
        ]
        assert [o.status for o in parts] == ["received", "received", "loaded"]


# --- duplicates and resubmissions ------------------------------------------------------------------------


def test_same_bytes_twice_is_a_duplicate(wh: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    source = one_school(tmp_path_factory)
    first = ingest_file(land(wh, source), wh)
    second = ingest_file(land(wh, source, "again.xml"), wh)
    assert first.status == "loaded"
    assert second.status == "duplicate"
    assert second.extract_id == first.extract_id  # the same bytes name the same extract
    assert second.rows.as_dict() == {"read": 0, "loaded": 0, "rejected": 0}
    assert rows_of(wh, pupil) == 12
    duplicate = find_extract(wh, f"{first.extract_id}-2")
    assert duplicate.status == "duplicate"
    assert duplicate.duplicate_of == first.extract_id
    assert duplicate.original_name == "again.xml"


def _drop_last_pupil(data: bytes) -> bytes:
    start = data.rindex(b"<PupilOnRoll>")
    end = data.rindex(b"</PupilOnRoll>") + len(b"</PupilOnRoll>")
    return data[:start] + data[end:]


def test_resubmission_supersedes_and_the_current_view_uses_the_newest(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = one_school(tmp_path_factory)
    resubmitted = tmp_path / source.name
    resubmitted.write_bytes(_drop_last_pupil(source.read_bytes()))
    first = ingest_file(land(wh, source), wh)
    second = ingest_file(land(wh, resubmitted), wh)
    assert second.status == "loaded"
    assert second.supersedes == first.extract_id
    old, new = find_extract(wh, first.extract_id or ""), find_extract(wh, second.extract_id or "")
    assert (old.status, old.superseded_by, new.supersedes, new.superseded_by) == (
        "loaded",
        new.extract_id,
        old.extract_id,
        None,
    )
    assert rows_of(wh, pupil) == 12 + 11  # both extracts stay
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        current = current_pupils(conn, old.laestab)
    assert len(current) == 11
    assert {row["extract_id"] for row in current} == {new.extract_id}


def test_an_older_extract_published_late_does_not_become_current(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = one_school(tmp_path_factory)
    newer = tmp_path / source.name
    newer.write_bytes(_drop_last_pupil(source.read_bytes()))
    older_receipt = receive(land(wh, source), wh)
    older = register(older_receipt.archived, older_receipt.received_at, wh)
    newer_outcome = ingest_file(land(wh, newer), wh)
    stage(older.extract_id, wh)
    late = publish(older.extract_id, {}, wh)
    assert late.superseded_by == newer_outcome.extract_id
    assert find_extract(wh, newer_outcome.extract_id or "").supersedes == older.extract_id
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        assert {r["extract_id"] for r in current_pupils(conn)} == {newer_outcome.extract_id}


# --- idempotence -----------------------------------------------------------------------------------------


def _snapshot(settings: Settings, *tables: Any) -> dict[str, list[tuple[Any, ...]]]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in tables
        }


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_staging_and_publishing_twice_give_the_same_rows(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(
        tmp_path_factory, schools=1, pupils_per_school=30, fmt=fmt, seed=5, faults=0.2
    )
    ready = None
    for entry in manifest["files"]:
        receipt = receive(land(wh, folder / entry["file"]), wh)
        ready = register(receipt.archived, receipt.received_at, wh).ready or ready
    assert ready is not None
    staged_tables = (staged_pupil, staged_pupil_address, staged_fsm_period)
    first = stage(ready, wh)
    once = _snapshot(wh, *staged_tables)
    second = stage(ready, wh)
    assert (first.status, second.status, second.rows) == ("staged", "staged", first.rows)
    assert _snapshot(wh, *staged_tables) == once
    assert len(once["staged_pupil"]) == 30
    published = publish(ready, {}, wh)
    final = _snapshot(wh, pupil, pupil_address, fsm_period, rejected_record)
    again = publish(ready, {}, wh)
    assert again.already_loaded
    assert again.rows == published.rows
    assert _snapshot(wh, pupil, pupil_address, fsm_period, rejected_record) == final
    assert stage(ready, wh).skipped  # a loaded extract is not staged again
    assert len(final["pupil"]) + len(final["rejected_record"]) == 30


# --- rejections ------------------------------------------------------------------------------------------


def _damaged(source: Path, target: Path) -> Path:
    """Pupil 2 gets a DOB that is no date, pupil 3 loses its UPN (both unusable mandatory fields)."""
    text = source.read_text(encoding="utf-8")
    pupils = text.split("<PupilOnRoll>")
    pupils[2] = re.sub(r"<DOB>[^<]*</DOB>", "<DOB>2016-02-30</DOB>", pupils[2], count=1)
    pupils[3] = re.sub(r"<UPN>[^<]*</UPN>", "", pupils[3], count=1)
    target.write_text("<PupilOnRoll>".join(pupils), encoding="utf-8")
    return target


def test_parse_rule_and_validation_rejections(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _damaged(one_school(tmp_path_factory), tmp_path / "SC_damaged.xml")
    receipt = receive(land(wh, source), wh)
    extract_id = register(receipt.archived, receipt.received_at, wh).ready
    assert extract_id is not None
    staged = stage(extract_id, wh)
    assert staged.rows.as_dict() == {"read": 12, "loaded": 0, "rejected": 2}
    with pytest.raises(IngestError) as unknown:
        publish(extract_id, {99: ["GX-X"]}, wh)
    assert unknown.value.code == "CT-INGEST-REJECT-UNKNOWN"
    assert find_extract(wh, extract_id).status == "staged"  # nothing happened
    result = publish(extract_id, {5: ["GX-UNKNOWN-CODE"], 2: ["GX-DOB-RANGE"], 7: []}, wh)
    assert result.rows.as_dict() == {"read": 12, "loaded": 8, "rejected": 4}
    assert dict(result.rejections) == {
        2: ("CT-PARSE-VALUE:dob", "GX-DOB-RANGE"),
        3: ("CT-PARSE-NO-UPN",),
        5: ("GX-UNKNOWN-CODE",),
        7: ("CT-INGEST-REJECTED",),
    }
    with warehouse_engine(wh.warehouse_db_url).connect() as conn:
        numbers = [n for n, _ in pupil_records(conn, extract_id)]
    assert numbers == [1, 4, 6, 8, 9, 10, 11, 12]
    row = find_extract(wh, extract_id)
    assert (row.pupil_count, row.rows_rejected) == (8, 4)
    assert [r["code"] for r in row.reasons] == ["CT-INGEST-ROWS-REJECTED"]


def test_ingest_lists_rejected_records_without_pupil_data(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    source = _damaged(one_school(tmp_path_factory), tmp_path / "SC_damaged.xml")
    outcome = ingest_file(land(wh, source), wh)
    assert outcome.status == "loaded"
    assert outcome.rows.as_dict() == {"read": 12, "loaded": 10, "rejected": 2}
    assert [(e["code"], e["location"]) for e in outcome.errors] == [
        ("CT-PARSE-VALUE", "record 2"),
        ("CT-PARSE-NO-UPN", "record 3"),
    ]
    assert leaks([outcome.as_dict()], identifiers_in([source])) == []


def test_every_record_rejected_quarantines_the_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = one_school(tmp_path_factory)
    receipt = receive(land(wh, source), wh)
    extract_id = register(receipt.archived, receipt.received_at, wh).ready
    assert extract_id is not None
    stage(extract_id, wh)
    result = publish(extract_id, {n: ["GX-ALL"] for n in range(1, 13)}, wh)
    assert result.status == "quarantined"
    assert [e["code"] for e in result.errors] == ["CT-INGEST-ALL-REJECTED"]
    assert rows_of(wh, pupil) == rows_of(wh, staged_pupil) == 0
    assert (wh.quarantine_dir / receipt.archived.sha256 / source.name).read_bytes() == source.read_bytes()


# --- bad input -------------------------------------------------------------------------------------------


def _assert_quarantined(
    settings: Settings, outcome: IngestOutcome, data: bytes, name: str, code: str
) -> None:
    assert outcome.status == "quarantined", outcome.as_dict()
    assert outcome.errors[0]["code"] == code, outcome.as_dict()
    assert outcome.rows.loaded == 0
    folder = settings.quarantine_dir / outcome.sha256
    copy = folder / safe_file_name(name)
    assert copy.parent == folder
    assert copy.read_bytes() == data  # byte for byte
    reason = json.loads((folder / REASON_FILE).read_text(encoding="utf-8"))
    assert reason["sha256"] == outcome.sha256 == hashlib.sha256(data).hexdigest()
    assert reason["original_name"] == name
    assert reason["received_at"]
    assert code in [r["code"] for r in reason["reasons"]]
    row = find_extract(settings, reason["extract_id"])
    assert row.status == "quarantined"
    assert row.reasons == reason["reasons"]
    assert sorted(p.name for p in settings.quarantine_dir.rglob("*") if p.is_file()) == sorted(
        [copy.name, REASON_FILE]
    )


@pytest.mark.parametrize("case", list(BAD_XML))
def test_bad_xml_is_quarantined_byte_for_byte(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, case: str
) -> None:
    name, mutate, code = BAD_XML[case]
    source = one_school(tmp_path_factory)
    name = source.name if name == "SC_330_4000_AUT_2026.xml" else name  # named for its own school
    data = mutate(source.read_bytes())
    landed = wh.landing_dir / name  # Linux file names may hold backslashes, spaces, any script
    landed.write_bytes(data)
    outcome = ingest_file(landed, wh)
    _assert_quarantined(wh, outcome, data, landed.name, code)
    assert rows_of(wh, pupil) == rows_of(wh, staged_pupil) == 0


def _csv_tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    folder, manifest = generated(tmp_path_factory, schools=1, pupils_per_school=12, fmt="csv", seed=5)
    return folder, [f["file"] for f in manifest["files"]]


def _edit_header(data: bytes, edit: Callable[[list[str]], list[str]]) -> bytes:
    head, _, rest = data.partition(b"\r\n")
    return ",".join(edit(head.decode().split(","))).encode() + b"\r\n" + rest


def _without(column: str) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        lines = data.decode().split("\r\n")
        at = lines[0].split(",").index(column)
        return "\r\n".join(
            ",".join(c for i, c in enumerate(line.split(",")) if i != at) for line in lines
        ).encode()

    return edit


BAD_CSV: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "missing_column": ("pupilonroll", _without("surname")),
    "renamed_column": (
        "pupilonroll",
        lambda d: _edit_header(d, lambda h: ["lastname" if c == "surname" else c for c in h]),
    ),
    "duplicated_column": (
        "pupilonroll",
        lambda d: _edit_header(d, lambda h: ["sex" if c == "boarder" else c for c in h]),
    ),
    "address_without_postcode": ("addressesonroll", _without("postcode")),
}


@pytest.mark.parametrize("case", list(BAD_CSV))
def test_bad_csv_columns_quarantine_the_whole_extract(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, case: str
) -> None:
    table, mutate = BAD_CSV[case]
    folder, names = _csv_tables(tmp_path_factory)
    outcomes, contents = [], {}
    for name in sorted(names):  # landing order: addressesonroll, fsmperiod, pupilonroll
        data = (folder / name).read_bytes()
        if name.startswith(table):
            data = mutate(data)
        contents[name] = data
        (wh.landing_dir / name).write_bytes(data)
        outcomes.append(ingest_file(wh.landing_dir / name, wh))
    assert [o.status for o in outcomes] == ["received", "received", "quarantined"]
    assert outcomes[-1].errors[0]["code"] == "CT-PARSE-LAYOUT"
    for outcome, name in zip(outcomes, sorted(names), strict=True):
        copy = wh.quarantine_dir / outcome.sha256 / name
        assert copy.read_bytes() == contents[name]
        reason = json.loads((copy.parent / REASON_FILE).read_text())
        assert reason["reasons"][0]["code"] == "CT-PARSE-LAYOUT"
        assert find_extract(wh, reason["extract_id"]).status == "quarantined"
    assert rows_of(wh, pupil) == 0


def test_other_files_go_on_after_bad_ones(wh: Settings, tmp_path_factory: pytest.TempPathFactory) -> None:
    source = one_school(tmp_path_factory)
    bad = wh.landing_dir / "bad.xml"
    bad.write_bytes(b"<Message><Header>")
    outcomes = [ingest_file(bad, wh), ingest_file(land(wh, source), wh)]
    assert [o.status for o in outcomes] == ["quarantined", "loaded"]
    assert rows_of(wh, pupil) == 12


# --- privacy and lineage ---------------------------------------------------------------------------------


def _event(step: StepLineage) -> dict[str, Any]:
    event = RunEvent(
        eventType=RunState.COMPLETE,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(runId=str(uuid.uuid4())),
        job=Job(namespace="censustrace", name="census_ingest.ingest"),
        inputs=step.inputs,
        outputs=step.outputs,
        producer="https://github.com/censustrace/censustrace",
    )
    body: dict[str, Any] = json.loads(Serde.to_json(event))
    return body


@pytest.mark.parametrize("fmt", ["xml", "csv"])
def test_no_pupil_data_in_errors_reasons_or_lineage(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory, fmt: str
) -> None:
    folder, manifest = generated(
        tmp_path_factory, schools=4, pupils_per_school=80, fmt=fmt, seed=3, faults=0.03
    )  # row faults under the 5% that would quarantine a file; one whole-file fault
    outcomes = ingest_all(wh, folder, manifest)
    assert {"loaded", "quarantined"} <= {o.status for o in outcomes}
    assert any(o.errors for o in outcomes if o.status == "loaded")  # row faults were reported
    identifiers = identifiers_in(folder / f["file"] for f in manifest["files"])
    assert identifiers
    reasons = [p.read_text(encoding="utf-8") for p in wh.quarantine_dir.rglob(REASON_FILE)]
    events = [_event(o.lineage) for o in outcomes] + [_event(step) for o in outcomes for _, step in o.steps]
    assert leaks([o.as_dict() for o in outcomes] + reasons + events, identifiers) == []
    for event in events:
        assert validate_event(event, extra_schemas=schema_documents()) == []


def test_lineage_names_versions_and_column_sources(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    source = one_school(tmp_path_factory)
    landed = land(wh, source)
    outcome = ingest_file(landed, wh)
    steps = dict(outcome.steps)
    assert list(steps) == ["receive", "register", "stage", "validate", "publish"]
    event = _event(steps["publish"])
    assert {o["name"].rsplit(".", 1)[-1] for o in event["outputs"]} == {
        "pupil",
        "pupil_address",
        "fsm_period",
    }
    url = wh.warehouse_db_url
    namespace = "sqlite" if url.startswith("sqlite") else "postgres://127.0.0.1:5432"
    archived = str(wh.archive_dir.resolve() / outcome.sha256[:2] / outcome.sha256)
    pupil_out = next(o for o in event["outputs"] if o["name"].endswith(".pupil"))
    assert pupil_out["namespace"] == namespace
    assert pupil_out["facets"]["version"]["datasetVersion"] == outcome.extract_id
    assert pupil_out["outputFacets"]["outputStatistics"]["rowCount"] == 12
    census = pupil_out["facets"]["censusExtract"]
    assert (census["format"], census["laestab"], census["term"], census["pupilCount"]) == (
        "school_census_xml",
        "3304000",
        "AUT",
        12,
    )
    upn = pupil_out["facets"]["columnLineage"]["fields"]["upn"]["inputFields"]
    assert [(f["namespace"], f["name"], f["field"]) for f in upn] == [
        ("file", archived, "PupilIdentifiers/UPN")
    ]
    key = pupil_out["facets"]["columnLineage"]["fields"]["pupil_key"]["inputFields"][0]
    assert key["transformations"][0]["masking"] is True
    assert {f["name"] for f in pupil_out["facets"]["schema"]["fields"]} >= {"pupil_key", "upn", "sen_needs"}
    # Publish reads the archived file and the validated staging tables at this extract's version.
    archive_input, *staged_inputs = event["inputs"]
    assert {i["name"].rsplit(".", 1)[-1] for i in staged_inputs} == {
        "staged_pupil",
        "staged_pupil_address",
        "staged_fsm_period",
    }
    assert {i["facets"]["version"]["datasetVersion"] for i in staged_inputs} == {outcome.extract_id}
    assert archive_input["name"] == archived
    assert archive_input["facets"]["version"]["datasetVersion"] == outcome.sha256
    assert archive_input["facets"]["censusExtract"]["laestab"] == "3304000"
    # The whole ingest as one: the landed file in; the archived file, registry, staging and tables out.
    merged = _event(outcome.lineage)
    assert [(i["namespace"], i["name"]) for i in merged["inputs"]] == [("file", str(landed.resolve()))]
    assert archived in {o["name"] for o in merged["outputs"]}
    assert {o["name"].rsplit(".", 1)[-1] for o in merged["outputs"]} >= {"extracts", "staged_pupil", "pupil"}


def test_a_csv_line_of_hundreds_of_mb_is_quarantined_with_memory_flat(
    wh: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A 256 MB line in the pupil table: refused by line number, kept byte for byte, never read whole."""
    import tracemalloc

    folder, names = _csv_tables(tmp_path_factory)
    pupils_name = next(n for n in names if n.startswith("pupilonroll"))
    for name in names:
        if name != pupils_name:
            ingest_file(land(wh, folder / name), wh)
    target = wh.landing_dir / pupils_name
    digest = hashlib.sha256()
    with target.open("wb") as out:
        head = (folder / pupils_name).read_bytes().split(b"\r\n")
        start = b"\r\n".join(head[:3]) + b"\r\n"  # header and two pupils, then the giant line
        out.write(start)
        digest.update(start)
        chunk = b"A" * (1 << 20)
        for _ in range(256):
            out.write(chunk)
            digest.update(chunk)
        out.write(b"\r\n")
        digest.update(b"\r\n")

    tracemalloc.start()
    try:
        outcome = ingest_file(target, wh)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert outcome.status == "quarantined"
    assert [e["code"] for e in outcome.errors] == ["CT-PARSE-LINE-TOO-LONG"]
    assert "line 4" in outcome.errors[0]["message"] + outcome.errors[0]["location"]
    assert peak < 32 << 20, f"peak Python memory {peak / 2**20:.0f} MiB for a 256 MiB line"
    copy = wh.quarantine_dir / outcome.sha256 / pupils_name
    kept = hashlib.sha256()
    with copy.open("rb") as fh:
        while block := fh.read(1 << 22):
            kept.update(block)
    assert outcome.sha256 == kept.hexdigest() == digest.hexdigest()
    assert rows_of(wh, pupil) == 0
