"""Article 30 from what happened and Article 19 notices (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import func, select, update

from censustrace.audit.tables import access_log
from censustrace.audit.verify import verify_audit
from censustrace.compliance.article19 import CSV_HEADER, pending_notices, send_notices, summary
from censustrace.compliance.article30 import record_of_processing, to_csv, to_pdf
from censustrace.compliance.retention import apply_retention
from censustrace.compliance.tables import article19_notices
from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.intake.ingest import ingest_file
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.steps import run_share
from censustrace.shares.tables import disclosures
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.shares import AS_OF, Census, ingest_census, lineage_engine
from tests.plugins.helpers.warehouse import land


def _own_policies(settings: Settings, tmp_path: Path, **changes: object) -> Settings:
    """These settings with a private copy of the policies folder (the fixture's is shared)."""
    folder = tmp_path / "policies"
    shutil.copytree(settings.policies_dir, folder)
    return settings.model_copy(update={"policies_dir": folder, **changes})


def test_article_30_is_built_from_the_shares_as_they_happened(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    settings = _own_policies(
        sh,
        tmp_path,
        controller_name="Test Council",
        controller_address="1 Civic Way",
        dpo_name="Dee Pio",
        dpo_contact="dpo@example.invalid",
        transfers_outside_uk={"Test University": "Ireland (UK adequacy regulations)"},
    )
    ingest_census(settings, census(schools=2, pupils_per_school=20, seed=61))
    share = run_share("t-nursing", settings)
    with pytest.raises(ShareBlocked):
        run_share("t-marketing", settings)
    # "language" went blank for every pupil (as if all were refused): it was not actually sent.
    with write_transaction(warehouse_engine(settings.warehouse_db_url)) as conn:
        conn.execute(
            update(disclosures)
            .where(disclosures.c.share_id == share["share_id"])
            .values(blank_fields=["language"])
        )
    # The agreement changes after the share: the record keeps what it said at the share.
    agreement = settings.policies_dir / "agreements" / "t-nursing.yaml"
    agreement.write_text(
        agreement.read_text().replace("SI 2013/351 reg 3", "A later gateway 2027"),
        encoding="utf-8",
    )

    record = record_of_processing(settings, today=AS_OF)
    assert record["controller"] == {"name": "Test Council", "address": "1 Civic Way", "contact": ""}
    assert record["dpo"] == {"name": "Dee Pio", "contact": "dpo@example.invalid"}
    assert "pseudonym" in record["security_measures"]
    (activity,) = record["activities"]
    assert activity["agreement"] == "t-nursing"
    assert activity["legal_gateway"] == "SI 2013/351 reg 3"
    assert activity["policy_version"] == share["policy_version"][:16]
    assert activity["recipient"] == "Test NHS Trust"
    assert "language" not in activity["fields_sent"]
    assert {"upn", "ethnicity", "postcode"} <= set(activity["fields_sent"])
    assert "ethnicity" in activity["special_category_data"]
    assert "language" not in " ".join(activity["data_categories"]) or "language" in activity["fields_sent"]
    assert activity["pupils"] == share["pupils"]
    assert activity["shares"] == 1
    assert activity["transfers_outside_uk"] == "none"
    assert "365 days" in activity["retention"]
    assert activity["data_subjects"].startswith("pupils on roll")
    (refused,) = record["refused"]
    assert refused["agreement"] == "t-marketing"
    assert refused["reasons"]
    planned = {p["agreement"]: p for p in record["planned"]}
    assert "t-nursing" not in planned
    assert "t-marketing" not in planned
    assert planned["t-research"]["transfers_outside_uk"] == "Ireland (UK adequacy regulations)"

    rows = list(csv.DictReader(io.StringIO(to_csv(record))))
    assert [r["agreement"] for r in rows if r["section"] == "activities"] == ["t-nursing"]
    assert [r["agreement"] for r in rows if r["section"] == "refused"] == ["t-marketing"]
    assert "t-research" in {r["agreement"] for r in rows if r["section"] == "planned"}
    assert next(r for r in rows if r["section"] == "dpo")["detail"].startswith("Dee Pio")
    assert to_pdf(record).startswith(b"%PDF")


def _resubmit_with_new_surname(source: Path, target: Path) -> str:
    """The same school's census sent again with one pupil's surname corrected; that pupil's UPN."""
    tree = etree.parse(str(source), etree.XMLParser(resolve_entities=False, no_network=True))
    first = next(tree.getroot().iter("PupilOnRoll"))
    upn = first.findtext("PupilIdentifiers/UPN")
    first.find("PupilIdentifiers/Surname").text = "Corrected-Surname"
    target.parent.mkdir(parents=True, exist_ok=True)
    tree.write(str(target), xml_declaration=True, encoding="UTF-8")
    return str(upn)


def test_article_19_notices_for_rectification_objection_and_erasure(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    folder, manifest = generated = census(schools=1, pupils_per_school=30, seed=62)
    ingest_census(sh, generated)
    share = run_share("t-admissions", sh)  # names and addresses, UPN as it is
    assert pending_notices(sh) == []

    # Rectification: the school resubmits with one surname corrected.
    upn = _resubmit_with_new_surname(
        folder / manifest["files"][0]["file"], tmp_path / "v2" / manifest["files"][0]["file"]
    )
    assert ingest_file(land(sh, tmp_path / "v2" / manifest["files"][0]["file"]), sh).status == "loaded"
    due = pending_notices(sh)
    assert [(i["kind"], i["share_id"], i["fields"]) for i in due] == [
        ("rectification", share["share_id"], ["surname"])
    ]

    # Objection from the family, recorded after the share, to a purpose covering the share's.
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        objector = conn.execute(
            select(pupil.c.upn)
            .join(
                disclosures,
                (disclosures.c.extract_id == pupil.c.extract_id)
                & (disclosures.c.record_number == pupil.c.record_number),
            )
            .where(disclosures.c.share_id == share["share_id"], pupil.c.upn != upn)
            .order_by(pupil.c.upn)
            .limit(1)
        ).scalar_one()
    school = (
        manifest["files"][0]["file"].split("_")[2] if manifest["files"][0]["file"].count("_") >= 2 else "4001"
    )
    consent = tmp_path / f"consents_330_{school}_AUT_2026.csv"
    today = dt.date.today().isoformat()
    consent.write_text(
        f"upn,purpose,decision,recorded_on,source\n{objector},education.admissions,objected,{today},letter\n"
    )
    outcome = ingest_consent_file(consent, sh)
    assert outcome.rows_rejected == 0, outcome.as_dict()
    kinds = summary(pending_notices(sh))
    assert {(k["kind"], k["records"]) for k in kinds} == {("rectification", 1), ("objection", 1)}

    # Erasure: six years on the home address is erased; every pupil sent an address is notified.
    apply_retention(sh, AS_OF + dt.timedelta(days=2200), files=False)
    due = pending_notices(sh)
    erased = [i for i in due if i["kind"] == "erasure"]
    assert len(erased) == share["pupils"]
    assert all(set(i["fields"]) <= {"address_lines", "postcode"} and i["fields"] for i in erased)

    # Sent: one notice (one recipient), CSV and PDF, every item recorded; nothing is due after.
    result = send_notices(sh, tmp_path / "notices", sent_by="os:tester")
    (notice,) = result["notices"]
    assert notice["recipient"] == "Test Council Admissions"
    assert set(notice["kinds"]) == {"rectification", "objection", "erasure"}
    rows = list(csv.DictReader(io.StringIO(Path(notice["csv"]).read_text(encoding="utf-8"))))
    assert list(rows[0]) == CSV_HEADER
    assert len(rows) == result["items"] == len(due)
    rectified = next(r for r in rows if r["kind"] == "rectification")
    assert rectified["upn_as_sent"] == upn  # the recipient got the UPN as it is: they can find the record
    assert int(rectified["row_in_file"]) >= 1
    text = Path(notice["csv"]).read_text(encoding="utf-8")
    assert all(i["pupil_key"] not in text for i in due)  # pupil keys never leave censustrace
    assert Path(notice["pdf"]).read_bytes().startswith(b"%PDF")
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        recorded = conn.execute(select(func.count()).select_from(article19_notices)).scalar_one()
    assert recorded == len(due)
    # Each pupil told about is in the chained access log too, and the chain still verifies.
    with lineage_engine(sh).connect() as conn:
        logged = conn.execute(
            select(access_log.c.pupil_key, access_log.c.user_name).where(access_log.c.action == "article19")
        ).all()
    assert sorted(key for key, _ in logged) == sorted(i["pupil_key"] for i in due)
    assert {user for _, user in logged} == {"os:tester"}
    assert verify_audit(sh)["ok"], verify_audit(sh)["problems"]
    assert pending_notices(sh) == []
    assert send_notices(sh, tmp_path / "notices", sent_by="os:tester") == {"notices": [], "items": 0}

    # Subject access tells the family who was notified.
    from censustrace.compliance.subject import look_up_upns

    told = look_up_upns(sh, [upn], values=False)["requests"][0]["notices"]
    assert {(n["kind"], n["recipient"]) for n in told} >= {("rectification", "Test Council Admissions")}
