"""A share from census files to the recipient's outbox, on SQLite and PostgreSQL: the population, the
objections honoured, refused codes kept out, the disclosure log equal to the file, blocked shares.

Expected values are worked out independently from the generated files (the census reader and the csv
module), not from the share code."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from censustrace.census.formats import parse_extract
from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.shares.build import staging_dir
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.register import list_shares
from censustrace.shares.steps import build_share, check_share, release_share, run_share
from censustrace.shares.tables import disclosures, shares
from censustrace.shares.transforms import pseudonym_key
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.shares import AS_OF, YEAR_END, Census, consent_files, ingest_census
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET

SECRET = PUPIL_KEY_SECRET.encode()


def key_of(upn: str) -> str:
    return hmac.new(SECRET, upn.encode(), hashlib.sha256).hexdigest()


def pupils_in(census: Census) -> dict[str, Any]:
    """UPN -> the record a share should use (the census reader's, main/single before subsidiary)."""
    folder, manifest = census
    found: dict[str, Any] = {}
    for entry in manifest["files"]:
        for parsed in parse_extract(folder / entry["file"]):
            record = parsed.record
            if record.upn not in found or found[record.upn].enrol_status == "S":
                found[record.upn] = record
    return found


def latest_decisions(census: Census) -> dict[tuple[str, str], str]:
    """(UPN, purpose) -> the latest decision in the consent files (later file and row win ties)."""
    rows = []
    for order, path in enumerate(consent_files(census)):
        with path.open(encoding="utf-8", newline="") as fh:
            for number, row in enumerate(csv.DictReader(fh)):
                rows.append((row["recorded_on"], order, number, row))
    latest: dict[tuple[str, str], str] = {}
    for *_, row in sorted(rows, key=lambda r: r[:3]):
        latest[(row["upn"], row["purpose"])] = row["decision"]
    return latest


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def disclosed_keys(settings: Settings, share_id: str) -> list[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return list(
            conn.execute(select(disclosures.c.pupil_key).where(disclosures.c.share_id == share_id)).scalars()
        )


def with_consents(settings: Settings, census: Census) -> None:
    ingest_census(settings, census)
    for path in consent_files(census):
        assert ingest_consent_file(path, settings).status == "applied"


def test_share_sends_the_current_pupils_minus_objections(sh: Settings, census: Callable[..., Census]) -> None:
    generated = census(consents=True)
    with_consents(sh, generated)
    result = run_share("t-nursing", sh)

    expected = pupils_in(generated)
    decisions = latest_decisions(generated)
    objectors = {upn for upn in expected if decisions.get((upn, "health.school_nursing")) == "object"}
    assert objectors, "the generated consent files hold objections for school nursing"
    rows = read_csv(result["file"])
    assert result["status"] == "delivered"
    assert {r["upn"] for r in rows} == set(expected) - objectors
    assert result["pupils"] == len(rows) == len(expected) - len(objectors)
    assert result["excluded"] == {"objected": len(objectors)}
    # Values as the census gave them, postcode cut to its sector (the agreement's transform).
    for row in rows:
        record = expected[row["upn"]]
        assert (row["surname"], row["dob"], row["laestab"]) == (
            record.surname,
            record.dob.isoformat(),
            record.laestab,
        )
        assert row["postcode"] == (record.postcode or "")[:-2].strip()
    # The disclosure log is exactly the file's pupils.
    assert sorted(disclosed_keys(sh, result["share_id"])) == sorted(key_of(r["upn"]) for r in rows)


def test_pseudonyms_are_per_agreement_and_not_the_pupil_key(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census()
    ingest_census(sh, generated)
    research = run_share("t-research", sh)
    other = run_share("t-research-sub", sh)
    rows = read_csv(research["file"])
    key = pseudonym_key(SECRET, "t-research")
    by_pseudonym = {
        hmac.new(key, upn.encode(), hashlib.sha256).hexdigest(): upn for upn in pupils_in(generated)
    }
    assert {r["upn"] for r in rows} <= set(by_pseudonym)
    keys = {key_of(upn) for upn in by_pseudonym.values()}
    assert not {r["upn"] for r in rows} & keys  # never the pupil key itself
    assert not {r["upn"] for r in rows} & {r["upn"] for r in read_csv(other["file"])}
    # dob cut to the year, postcode to its district; the disclosure log is the file's pupils.
    assert all(len(r["dob"]) == 4 and " " not in r["postcode"] for r in rows)
    assert sorted(disclosed_keys(sh, research["share_id"])) == sorted(
        key_of(by_pseudonym[r["upn"]]) for r in rows
    )


def test_refused_and_not_obtained_codes_are_never_sent(sh: Settings, census: Callable[..., Census]) -> None:
    ingest_census(sh, census())
    engine = warehouse_engine(sh.warehouse_db_url)
    with engine.begin() as conn:
        numbers = sorted(set(conn.execute(select(pupil.c.record_number)).scalars()))
        first = numbers[:3]
        conn.execute(update(pupil).where(pupil.c.record_number.in_(first)).values(ethnicity="REFU"))
        conn.execute(update(pupil).where(pupil.c.record_number == numbers[3]).values(ethnicity="NOBT"))
        conn.execute(update(pupil).where(pupil.c.record_number.in_(first)).values(language="REF"))
        refused = conn.execute(
            select(func.count()).select_from(pupil).where(pupil.c.ethnicity.in_(("REFU", "NOBT")))
        ).scalar_one()
    result = run_share("t-nursing", sh)
    rows = read_csv(result["file"])
    assert not {"REFU", "NOBT"} & {r["ethnicity"] for r in rows}
    assert not {"REF", "NOT"} & {r["language"] for r in rows}
    manifest = json.loads(
        Path(result["file"]).with_name(Path(result["file"]).stem + ".manifest.json").read_text()
    )
    assert manifest["suppressed"]["ethnicity"] >= 4
    assert manifest["suppressed"]["ethnicity"] <= refused
    with engine.connect() as conn:
        blanks = conn.execute(
            select(disclosures.c.blank_fields).where(disclosures.c.share_id == result["share_id"])
        ).scalars()
        blank_ethnicity = sum(1 for fields in blanks if fields and "ethnicity" in fields)
    assert blank_ethnicity == sum(1 for r in rows if r["ethnicity"] == "")


def test_spreadsheet_formulas_are_sent_as_text(sh: Settings, census: Callable[..., Census]) -> None:
    ingest_census(sh, census())
    engine = warehouse_engine(sh.warehouse_db_url)
    evil = {'=HYPERLINK("http://x.invalid","y")': "+SUM(1)", "@cmd": "-2+3"}
    with engine.begin() as conn:
        targets = conn.execute(select(pupil.c.extract_id, pupil.c.record_number).limit(len(evil))).all()
        for (extract_id, number), (surname, forename) in zip(targets, evil.items(), strict=True):
            conn.execute(
                update(pupil)
                .where(pupil.c.extract_id == extract_id, pupil.c.record_number == number)
                .values(surname=surname, forename=forename)
            )
    rows = read_csv(run_share("t-admissions", sh)["file"])
    cells = [value for row in rows for value in row.values()]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@")]
    assert {"'" + s for s in evil} <= {r["surname"] for r in rows}
    assert {"'" + f for f in evil.values()} <= {r["forename"] for r in rows}


def test_consent_as_lawful_basis_sends_only_consenting_pupils(
    sh: Settings, census: Callable[..., Census]
) -> None:
    generated = census(consents=True)
    with_consents(sh, generated)
    result = run_share("t-youth", sh)
    decisions = latest_decisions(generated)
    expected = pupils_in(generated)
    consenting = {u for u in expected if decisions.get((u, "youth_support.services")) == "consent"}
    objecting = {u for u in expected if decisions.get((u, "youth_support.services")) == "object"}
    assert result["pupils"] == len(consenting)
    assert result["excluded"] == {
        k: v
        for k, v in {
            "objected": len(objecting),
            "no_consent": len(expected) - len(consenting) - len(objecting),
        }.items()
        if v
    }


def test_a_refused_agreement_records_a_blocked_share_and_sends_nothing(sh: Settings) -> None:
    with pytest.raises(ShareBlocked) as caught:
        run_share("t-marketing", sh)
    blocked = caught.value.share
    assert caught.value.code == "CT-SHARE-BLOCKED"
    assert blocked["status"] == "blocked"
    assert blocked["file"] is None
    assert blocked["pupils"] == 0
    codes = {r["code"] for r in blocked["reasons"]}
    assert "CT-RULE-NO-COMMERCIAL-USE" in codes
    assert all(r["message"] for r in blocked["reasons"])
    (row,) = list_shares(sh)
    assert row.status == "blocked"
    assert row.share_id == blocked["share_id"]
    assert not staging_dir(sh, row.share_id).exists()
    assert (
        not any(p.is_file() for p in sh.share_outbox_dir.rglob("*")) if sh.share_outbox_dir.exists() else True
    )
    assert disclosed_keys(sh, row.share_id) == []


def test_an_expired_agreement_is_blocked(sh: Settings, policies: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "policies"
    shutil.copytree(policies, folder)
    agreement = folder / "agreements" / "t-nursing.yaml"
    ended = (AS_OF - dt.timedelta(days=1)).isoformat()  # valid_to is inclusive: yesterday is over
    text = agreement.read_text()
    agreement.write_text(text.replace(f"valid_to: {YEAR_END.isoformat()}", f"valid_to: {ended}"))
    settings = sh.model_copy(update={"policies_dir": folder})
    with pytest.raises(ShareBlocked) as caught:
        run_share("t-nursing", settings)
    assert "CT-POLICY-EXPIRED" in {r["code"] for r in caught.value.share["reasons"]}


def test_an_unknown_agreement_is_a_usage_error_and_records_nothing(sh: Settings) -> None:
    from censustrace.consent.policy_model import UnknownAgreement

    with pytest.raises(UnknownAgreement, match="t-nursin") as caught:
        run_share("t-nursin", sh)
    assert caught.value.exit_code == 2
    assert list_shares(sh) == []


def test_steps_are_idempotent_with_a_run_key(sh: Settings, census: Callable[..., Census]) -> None:
    ingest_census(sh, census())
    first = check_share("t-research", sh, run_key="scheduled__2026-10-15")
    again = check_share("t-research", sh, run_key="scheduled__2026-10-15")
    assert first["share_id"] == again["share_id"]
    share_id = first["share_id"]
    built = build_share(share_id, sh)
    assert build_share(share_id, sh) == built
    released = release_share(share_id, sh)
    assert release_share(share_id, sh) == released
    assert check_share("t-research", sh, run_key="scheduled__2026-10-15")["status"] == "delivered"
    assert len(list_shares(sh)) == 1
    assert [p.name for p in sh.share_outbox_dir.rglob("*.csv")] == [Path(released["file"]).name]
    with warehouse_engine(sh.warehouse_db_url).connect() as conn:
        count = conn.execute(select(func.count()).select_from(disclosures)).scalar_one()
        status = conn.execute(select(shares.c.status)).scalar_one()
    assert count == released["pupils"]
    assert status == "delivered"
    # A new run key is a new share.
    other = run_share("t-research", sh, run_key="scheduled__2027-01-15")
    assert other["share_id"] != share_id


def test_a_policy_change_after_the_check_is_checked_again(
    sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    import shutil

    ingest_census(sh, census())
    changed = tmp_path / "policies"
    shutil.copytree(policies, changed)
    settings = sh.model_copy(update={"policies_dir": changed})
    checked = check_share("t-research", settings)
    agreement = changed / "agreements" / "t-research.yaml"
    agreement.write_text(
        agreement.read_text().replace("transforms: {upn: pseudonymise, dob: year,", "transforms: {dob: year,")
    )
    with pytest.raises(ShareBlocked) as caught:
        build_share(checked["share_id"], settings)
    assert "CT-RULE-RESEARCH-DEIDENTIFIED-ONLY" in {r["code"] for r in caught.value.share["reasons"]}
    (row,) = list_shares(settings)
    assert row.status == "blocked"
    assert row.file_name is None


def test_a_broken_agreement_is_blocked_alone_naming_the_file_and_line(
    sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    import shutil

    ingest_census(sh, census())
    broken = tmp_path / "policies"
    shutil.copytree(policies, broken)
    agreement = broken / "agreements" / "t-research.yaml"
    agreement.write_text(agreement.read_text().replace("lawful_basis:", "lawfull_basis:"))
    (broken / "agreements" / "draft.yaml").write_text("id: draft\nfields: [upn\n")  # not even YAML
    settings = sh.model_copy(update={"policies_dir": broken})
    with pytest.raises(ShareBlocked) as caught:
        run_share("t-research", settings)
    messages = " ".join(r["message"] for r in caught.value.share["reasons"])
    assert "agreements/t-research.yaml:4" in messages
    assert "lawfull_basis" in messages
    # The valid agreement beside it is judged on its own and delivered.
    assert run_share("t-nursing", settings)["status"] == "delivered"
    assert [r.status for r in list_shares(settings)] == ["blocked", "delivered"]


def test_a_broken_shared_policy_file_still_blocks_every_share(
    sh: Settings, policies: Path, tmp_path: Path
) -> None:
    import shutil

    broken = tmp_path / "policies"
    shutil.copytree(policies, broken)
    (broken / "rules.yaml").write_text(
        (broken / "rules.yaml").read_text().replace("effect: deny", "effect: [deny", 1)
    )
    settings = sh.model_copy(update={"policies_dir": broken})
    with pytest.raises(ShareBlocked) as caught:
        run_share("t-nursing", settings)
    assert "policies/rules.yaml" in " ".join(r["message"] for r in caught.value.share["reasons"])
