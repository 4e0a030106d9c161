"""Erasure in every copy (SQLite and PostgreSQL): the archived file replaced by a redacted copy with a
tombstone keeping the original sha256, the quarantine and outbox copies likewise, traces that still
resolve and say what was erased, a re-delivered or retried erased file refused with CT-ERASED-FILE, and a
restored older backup that gets the later erasures back."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import func, select

from censustrace.compliance.erasure import ERASED_FILE, ErasedFileError, ensure_not_erased
from censustrace.compliance.retention import apply_retention
from censustrace.compliance.tables import file_tombstones
from censustrace.config import Settings
from censustrace.intake.archive import archive_path_for, sha256_of
from censustrace.intake.ingest import ingest_file
from censustrace.intake.quarantine_ops import retry
from censustrace.lineage.emit import run_event
from censustrace.lineage.facets import schema_documents
from censustrace.lineage.model import StepLineage
from censustrace.lineage.spec import validate_event
from censustrace.lineage.store.ingest import store_event
from censustrace.lineage.traceback import trace_target
from censustrace.ops.backup import backup, restore
from censustrace.shares.register import find_share
from censustrace.shares.steps import run_share
from censustrace.shares.verify import verify_shares
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil_address
from tests.plugins.helpers.shares import AS_OF, Census, ingest_census, lineage_engine
from tests.plugins.helpers.warehouse import land


def _postcodes(data: bytes) -> set[str]:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    return {(e.text or "").strip() for e in root.iter("{*}PostCode", "PostCode") if (e.text or "").strip()}


def _upns(data: bytes) -> set[str]:
    root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, no_network=True))
    return {(e.text or "").strip() for e in root.iter("{*}UPN", "UPN") if (e.text or "").strip()}


def _tombstones(settings: Settings) -> list[dict[str, object]]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        query = select(file_tombstones).order_by(file_tombstones.c.id)
        return [dict(r) for r in conn.execute(query).mappings()]


def test_expired_address_is_erased_from_the_archive_and_outbox_with_tombstones(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census(term="AUT", year=2017, seed=43, schools=2, pupils_per_school=20)
    folder, manifest = generated
    ingest_census(sh, generated)
    share = run_share("t-admissions", sh)  # names and addresses as they are
    engine = lineage_engine(sh)
    target = f"dataset:file:{share['file']}@{share['sha256']}"
    before = trace_target(engine, target)["sources"]
    originals = {f["sha256"]: (folder / f["file"]).read_bytes() for f in manifest["files"]}
    assert all(_postcodes(data) for data in originals.values())

    step = StepLineage()
    result = apply_retention(sh, AS_OF, lineage=step)  # 2017 census: the six-year address retention ended

    archived = [f for f in result["files"] if f["copy"] == "archive"]
    assert {f["original_sha256"] for f in archived} == set(originals)
    for item in archived:
        original = str(item["original_sha256"])
        assert not archive_path_for(sh.archive_dir, original).exists()  # the original bytes are gone
        redacted_path = archive_path_for(sh.archive_dir, str(item["redacted_sha256"]))
        redacted = redacted_path.read_bytes()
        assert sha256_of(redacted_path) == item["redacted_sha256"] != original
        assert _postcodes(redacted) == set()
        assert _upns(redacted) == _upns(originals[original])  # everything else is kept
        assert not any(p.encode() in redacted for p in _postcodes(originals[original]))
        assert set(item["fields"]) >= {"address_lines", "postcode", "uprn"}
        tombstone = json.loads((sh.archive_dir / "tombstones" / f"{original}.json").read_text())
        assert tombstone["original_sha256"] == original
        assert {s["rule"] for s in tombstone["steps"]} >= {"retention_ended"}
        assert {s["as_of"] for s in tombstone["steps"]} == {AS_OF.isoformat()}
    rows = _tombstones(sh)
    assert {(r["copy"], r["original_sha256"]) for r in rows} >= {("archive", sha) for sha in originals}

    # The outbox copy: the address columns are emptied (the share's own 365 days have not passed).
    outbox = next(f for f in result["files"] if f["copy"] == "outbox")
    assert outbox["share_id"] == share["share_id"]
    assert {"address_lines", "postcode"} <= set(outbox["fields"])
    sent = Path(share["file"]).read_text(encoding="utf-8").splitlines()
    header = sent[0].split(",")
    postcode_at = header.index("postcode")
    assert len(sent) - 1 == share["pupils"]
    assert all(line.split(",")[postcode_at] == "" for line in sent[1:] if '"' not in line)
    assert verify_shares(sh)["ok"], verify_shares(sh)["problems"]

    # Lineage: valid events; the share still traces to the same received files, now marked erased.
    event = json.loads(run_event(sh, "census_retention.erase", step))
    assert validate_event(event, extra_schemas=schema_documents()) == []
    store_event(engine, json.dumps(event))
    after = trace_target(engine, target)["sources"]
    assert [(s["path"], s["version"]) for s in after] == [(s["path"], s["version"]) for s in before]
    for source in after:
        assert source["erased"]["as_of"] == AS_OF.isoformat()
        assert "postcode" in source["erased"]["fields"]
        assert source["erased"]["redacted_sha256"]
    engine.dispose()

    # A second run changes nothing.
    again = apply_retention(sh, AS_OF)
    assert again["files"] == []
    assert len(_tombstones(sh)) == len(rows)

    # The original bytes delivered again are refused, and not kept.
    name, original = next((f["file"], f["sha256"]) for f in manifest["files"])
    with pytest.raises(ErasedFileError) as raised:
        ingest_file(land(sh, folder / name), sh)
    assert raised.value.code == ERASED_FILE
    assert original in raised.value.message
    assert name in raised.value.message
    assert not archive_path_for(sh.archive_dir, original).exists()
    assert not (sh.landing_dir / name).exists()


def test_erased_quarantined_file_cannot_be_retried(sh: Settings, census: Callable[..., Census]) -> None:
    folder, manifest = census(term="AUT", year=2026, seed=44, schools=1, pupils_per_school=10)
    source = folder / manifest["files"][0]["file"]
    broken = sh.home / "broken" / source.name
    broken.parent.mkdir(parents=True)
    broken.write_bytes(source.read_bytes()[: source.stat().st_size // 2])  # truncated: quarantined
    outcome = ingest_file(land(sh, broken), sh)
    assert outcome.status == "quarantined"
    sha = outcome.sha256
    copy = next((sh.quarantine_dir / sha).glob("*.xml"))
    assert copy.read_bytes() == broken.read_bytes()

    # On the day of receipt nothing is due: a quarantined file is kept for a fix and a retry.
    assert [f for f in apply_retention(sh, dt.date.today())["files"] if f["original_sha256"] == sha] == []
    assert copy.read_bytes() == broken.read_bytes()

    # Six years on (the census day is unknown: the day it was received counts) it is withheld whole.
    later = dt.date.today() + dt.timedelta(days=2193)
    done = [f for f in apply_retention(sh, later)["files"] if f["original_sha256"] == sha]
    assert {f["copy"] for f in done} == {"archive", "quarantine"}
    assert all(f["whole_file"] for f in done)
    note = json.loads(copy.read_bytes())
    assert note["original_sha256"] == sha
    assert note["censustrace"] == "content erased"
    assert not archive_path_for(sh.archive_dir, sha).exists()

    with pytest.raises(ErasedFileError) as raised:
        ensure_not_erased(sh, sha, broken.name)
    assert raised.value.code == ERASED_FILE
    # `censustrace quarantine retry` refuses it with the same code, before reading anything.
    assert outcome.extract_id is not None
    with pytest.raises(ErasedFileError):
        retry(sh, outcome.extract_id)
    with pytest.raises(ErasedFileError):
        ingest_file(land(sh, broken), sh)


def test_restoring_an_older_backup_reapplies_later_erasures(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(term="AUT", year=2017, seed=45, schools=1, pupils_per_school=15))

    def addresses() -> int:
        with warehouse_engine(sh.warehouse_db_url).connect() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(pupil_address)
                    .where(pupil_address.c.postcode.is_not(None))
                ).scalar_one()
            )

    assert addresses() > 0
    backup(sh, tmp_path / "old")
    result = apply_retention(sh, AS_OF)
    assert result["files"]
    assert addresses() == 0
    tombstones = len(_tombstones(sh))

    restored = restore(sh, tmp_path / "old")
    assert restored["erasures_reapplied"]["tombstones_restored"] == tombstones
    assert addresses() == 0  # the restored values were erased again
    assert len(_tombstones(sh)) == tombstones

    # The restored lineage store learns the erasures again: a trace's sources say what was erased.
    from censustrace.intake.registry import list_extracts
    from censustrace.warehouse.naming import warehouse_dataset_name, warehouse_namespace

    url = sh.warehouse_db_url
    loaded = next(r for r in list_extracts(sh) if r.status == "loaded")
    engine = lineage_engine(sh)
    target = f"dataset:{warehouse_namespace(url)}:{warehouse_dataset_name(url, 'pupil')}"
    sources = trace_target(engine, target, loaded.extract_id)["sources"]
    engine.dispose()
    assert sources
    assert all("postcode" in s["erased"]["fields"] for s in sources)


def test_manifest_states_retention_and_register_shows_shares_past_it(
    sh: Settings, census: Callable[..., Census]
) -> None:
    ingest_census(sh, census(schools=1, pupils_per_school=10, seed=46))
    share = run_share("t-nursing", sh)
    row = find_share(sh, share["share_id"])
    manifest = Path(share["file"]).with_name(Path(share["file"]).name.removesuffix(".csv") + ".manifest.json")
    assert json.loads(manifest.read_text())["retention_days"] == 365
    summary = row.summary()
    assert summary["retention_days"] == 365
    assert row.delivered_at is not None
    assert summary["retain_until"] == (row.delivered_at.date() + dt.timedelta(days=365)).isoformat()
    assert summary["past_retention"] is False
    assert row.past_retention(row.delivered_at.date() + dt.timedelta(days=366)) is True

    # Past it, the outbox copy is withheld whole (header only) and verify still accounts for it.
    later = row.delivered_at.date() + dt.timedelta(days=366)
    done = [f for f in apply_retention(sh, later)["files"] if f["copy"] == "outbox"]
    assert [(f["share_id"], f["rules"], f["whole_file"]) for f in done] == [
        (share["share_id"], ["share_retention_ended"], True)
    ]
    assert len(Path(share["file"]).read_text().splitlines()) == 1
    assert verify_shares(sh)["ok"]

    # The register shows a share past its retention (delivered 366 days ago).
    from sqlalchemy import update

    from censustrace.shares.tables import shares
    from censustrace.viewer.shares_views import register
    from censustrace.warehouse.db import write_transaction

    with write_transaction(warehouse_engine(sh.warehouse_db_url)) as conn:
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share["share_id"])
            .values(delivered_at=row.delivered_at - dt.timedelta(days=366))
        )
    assert find_share(sh, share["share_id"]).summary()["past_retention"] is True
    (listed,) = [r for r in register(sh) if r["share_id"] == share["share_id"]]
    assert listed["past_retention"] is True


def test_la_csv_tables_are_redacted_cell_by_cell(sh: Settings, census: Callable[..., Census]) -> None:
    import csv
    import io

    folder, manifest = generated = census(
        term="AUT", year=2017, seed=47, fmt="csv", schools=1, pupils_per_school=15
    )
    ingest_census(sh, generated)
    result = apply_retention(sh, AS_OF)
    redacted = {f["file"]: f for f in result["files"] if f["copy"] == "archive"}
    names = {f["file"] for f in manifest["files"]}
    assert {n for n in names if n.startswith(("addressesonroll", "pupilonroll"))} <= set(redacted)
    for name, item in redacted.items():
        before = list(csv.DictReader(io.StringIO((folder / name).read_text(encoding="utf-8-sig"))))
        path = archive_path_for(sh.archive_dir, str(item["redacted_sha256"]))
        after = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        assert len(after) == len(before)
        assert [r["upn"] for r in after] == [r["upn"] for r in before]  # the rest is kept
        for column in (
            "postcode",
            "street",
            "uniquepropertyreferencenumber",
            "nationality",
            "countryofbirth",
        ):
            assert all(not r.get(column) for r in after), (name, column)
        if name.startswith("addressesonroll"):
            assert any(r["postcode"] for r in before)
