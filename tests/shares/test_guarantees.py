"""Issue 13's guarantees, each on SQLite and PostgreSQL: a share is judged for the day it leaves and
never back-dated; the release re-checks the agreement and the objections; a broken agreement or an
unknown gateway, an approver who is the recipient, an Art 9 name without its Schedule 1 paragraph are
refused with a stable code; objections sent before the census, under a former UPN or twice are kept;
two concurrent runs of one share release it once; a retried refused check records one blocked attempt."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from censustrace.config import Settings
from censustrace.consent.objections import ingest_consent_file
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.register import list_shares
from censustrace.shares.steps import build_share, check_share, release_share, run_share
from censustrace.shares.tables import disclosures
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil
from tests.plugins.helpers.cli import CLI
from tests.plugins.helpers.shares import AS_OF, YEAR_END, Census, ingest_census
from tests.plugins.helpers.warehouse import PUPIL_KEY_SECRET


def key_of(upn: str) -> str:
    return hmac.new(PUPIL_KEY_SECRET.encode(), upn.encode(), hashlib.sha256).hexdigest()


def copy_policies(policies: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(policies, folder)
    return folder


def edit_agreement(folder: Path, agreement_id: str, old: str, new: str) -> None:
    path = folder / "agreements" / f"{agreement_id}.yaml"
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


def objections(path: Path, upns: list[str], purpose: str = "research.approved") -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["upn", "purpose", "decision", "recorded_on", "source"])
        writer.writerows([[u, purpose, "objected", AS_OF.isoformat(), "parent_form"] for u in upns])
    return path


def disclosed(settings: Settings, share_id: str) -> set[str]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return set(
            conn.execute(select(disclosures.c.pupil_key).where(disclosures.c.share_id == share_id)).scalars()
        )


def pupils(settings: Settings) -> list[tuple[str, str | None]]:
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return sorted({(r.upn, r.former_upn) for r in conn.execute(select(pupil.c.upn, pupil.c.former_upn))})


def outbox(settings: Settings) -> list[Path]:
    root = settings.share_outbox_dir
    return sorted(p for p in root.rglob("*.csv")) if root.exists() else []


# --- 1. the day of release -------------------------------------------------------------------------------


def test_share_as_of_is_refused_and_records_nothing(sh: Settings) -> None:
    env = {
        **os.environ,
        "CENSUSTRACE_HOME": str(sh.home),
        "CENSUSTRACE_WAREHOUSE_URL": sh.warehouse_db_url,
        "CENSUSTRACE_LINEAGE_URL": sh.lineage_db_url,
        "CENSUSTRACE_POLICIES_DIR": str(sh.policies_dir),
    }
    proc = subprocess.run(
        [CLI, "share", "t-nursing", "--as-of", "2025-10-01", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "CT-SHARE-AS-OF" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list_shares(sh) == []
    assert outbox(sh) == []


def test_an_agreement_that_ends_before_the_release_is_blocked_at_release(
    sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    folder = copy_policies(policies, tmp_path)
    settings = sh.model_copy(update={"policies_dir": folder})
    share_id = str(check_share("t-research", settings)["share_id"])
    build_share(share_id, settings)
    assert disclosed(settings, share_id)
    # Between build and release the agreement ends (valid_to is inclusive: yesterday is over).
    yesterday = AS_OF.fromordinal(AS_OF.toordinal() - 1).isoformat()
    edit_agreement(folder, "t-research", f"valid_to: {YEAR_END.isoformat()}", f"valid_to: {yesterday}")
    with pytest.raises(ShareBlocked) as caught:
        release_share(share_id, settings)
    assert "CT-POLICY-EXPIRED" in {r["code"] for r in caught.value.share["reasons"]}
    (row,) = list_shares(settings)
    assert row.status == "blocked"
    assert outbox(settings) == []
    assert disclosed(settings, share_id) == set()  # nothing was disclosed


def test_an_objection_after_the_build_rebuilds_before_release(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    share_id = str(check_share("t-research", sh)["share_id"])
    built = build_share(share_id, sh)
    upn, _ = pupils(sh)[0]
    assert key_of(upn) in disclosed(sh, share_id)
    ingest_consent_file(objections(tmp_path / "late.csv", [upn]), sh)
    released = release_share(share_id, sh)
    assert released["status"] == "delivered"
    assert released["pupils"] == built["pupils"] - 1
    assert key_of(upn) not in disclosed(sh, share_id)
    assert "CT-SHARE-REBUILT" in {r["code"] for r in released["reasons"]}
    assert len(outbox(sh)) == 1


# --- 3. objections that cannot be lost -------------------------------------------------------------------


def test_objections_sent_before_the_census_apply_when_the_pupils_appear(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    generated = census()
    from censustrace.census.formats import parse_extract

    folder, manifest = generated
    upns = sorted({p.record.upn for e in manifest["files"] for p in parse_extract(folder / e["file"])})[:3]
    early = ingest_consent_file(objections(tmp_path / "early.csv", upns), sh)
    assert (early.status, early.rows_applied, early.rows_pending, early.rows_rejected) == ("applied", 3, 3, 0)
    ingest_census(sh, generated, emit=False)
    result = run_share("t-research", sh)
    assert result["excluded"].get("objected") == 3
    assert not {key_of(u) for u in upns} & disclosed(sh, str(result["share_id"]))


def test_an_objection_under_a_former_upn_applies_to_the_pupil_who_carries_it(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(pupils_per_school=120), emit=False)
    carriers = [(upn, former) for upn, former in pupils(sh) if former]
    assert carriers, "the generator gives about 2% of pupils a FormerUPN"
    upn, former = carriers[0]
    outcome = ingest_consent_file(objections(tmp_path / "former.csv", [former]), sh)
    assert (outcome.rows_applied, outcome.rows_pending) == (1, 0)
    result = run_share("t-research", sh)
    assert result["excluded"].get("objected") == 1
    assert key_of(upn) not in disclosed(sh, str(result["share_id"]))


def test_a_resent_consent_file_is_reapplied_idempotently_and_says_so(
    sh: Settings, census: Callable[..., Census], tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    path = objections(tmp_path / "consents.csv", [u for u, _ in pupils(sh)[:2]])
    first = ingest_consent_file(path, sh)
    again = ingest_consent_file(path, sh)
    assert first.status == "applied"
    assert again.status == "duplicate"
    assert again.consent_file_id == first.consent_file_id
    assert (again.rows_applied, again.rows_in_force) == (0, 2)
    assert "re-applied" in again.note
    assert "already in force" in json.dumps(again.as_dict())
    result = run_share("t-research", sh)
    assert result["excluded"].get("objected") == 2


# --- 2, 4, 5. refused agreements: stable codes, nothing sent ---------------------------------------------

PRESCRIBED = "Education (Individual Pupil Information) (Prescribed Persons) (England) Regulations 2009"
REFUSALS: dict[str, tuple[str, str, str, str]] = {
    "unknown gateway": (
        "t-research",
        f'legal_gateway: "{PRESCRIBED}"',
        'legal_gateway: "s999 Made Up Act 2030"',
        "CT-POLICY-GATEWAY-UNKNOWN",
    ),
    "gateway that does not support the purpose": (
        "t-research",
        f'legal_gateway: "{PRESCRIBED}"',
        'legal_gateway: "s508B Education Act 1996"',
        "CT-POLICY-GATEWAY-PURPOSE",
    ),
    "approver equal to recipient": (
        "t-research",
        'approved_by: "Data Sharing Approvals Panel"',
        'approved_by: "TEST university, board of directors"',
        "CT-POLICY-APPROVER-IS-RECIPIENT",
    ),
    "Art 9 name without its Schedule 1 paragraph": (
        "t-research",
        'special_category_condition: "Art 9(2)(j) research; DPA 2018 Sch 1 para 4"',
        "special_category_condition: archiving_research_statistics",
        "CT-POLICY-ART9-SCHEDULE1",
    ),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_agreement_gets_a_stable_code_and_sends_nothing(
    case: str, sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    agreement_id, old, new, code = REFUSALS[case]
    ingest_census(sh, census(), emit=False)
    folder = copy_policies(policies, tmp_path)
    edit_agreement(folder, agreement_id, old, new)
    settings = sh.model_copy(update={"policies_dir": folder})
    with pytest.raises(ShareBlocked) as caught:
        run_share(agreement_id, settings)
    reasons = caught.value.share["reasons"]
    assert code in {r["code"] for r in reasons}, reasons
    assert any(f"agreements/{agreement_id}.yaml:" in r["message"] for r in reasons if r["code"] == code)
    assert outbox(settings) == []
    # The others are judged on their own.
    assert run_share("t-nursing", settings)["status"] == "delivered"


def test_an_art9_name_with_its_paragraph_is_allowed(
    sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    ingest_census(sh, census(), emit=False)
    folder = copy_policies(policies, tmp_path)
    edit_agreement(
        folder,
        "t-research",
        'special_category_condition: "Art 9(2)(j) research; DPA 2018 Sch 1 para 4"',
        'special_category_condition: "archiving_research_statistics; DPA 2018 Sch 1 para 4"',
    )
    settings = sh.model_copy(update={"policies_dir": folder})
    assert run_share("t-research", settings)["status"] == "delivered"


# --- concurrency and retries -----------------------------------------------------------------------------


def test_two_concurrent_runs_of_one_share_release_it_once(
    sh: Settings, census: Callable[..., Census]
) -> None:
    ingest_census(sh, census(), emit=False)
    results: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(run_share("t-research", sh, run_key="manual__same-run"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len({r["share_id"] for r in results}) == 1
    assert {r["status"] for r in results} == {"delivered"}
    assert len(list_shares(sh)) == 1
    assert len(outbox(sh)) == 1
    assert len(disclosed(sh, str(results[0]["share_id"]))) == results[0]["pupils"]


def test_a_retried_refused_check_records_one_blocked_attempt(sh: Settings) -> None:
    for _ in range(2):
        with pytest.raises(ShareBlocked):
            check_share("t-marketing", sh, run_key="scheduled__retry")
    assert [r.status for r in list_shares(sh)] == ["blocked"]
    # A new run is a new attempt.
    with pytest.raises(ShareBlocked):
        check_share("t-marketing", sh, run_key="scheduled__next")
    assert len(list_shares(sh)) == 2


def test_two_concurrent_runs_with_their_own_run_ids_are_two_whole_shares(
    sh: Settings, census: Callable[..., Census]
) -> None:
    ingest_census(sh, census(), emit=False)
    results: dict[str, dict[str, Any]] = {}
    errors: list[BaseException] = []

    def run(key: str) -> None:
        try:
            results[key] = run_share("t-research", sh, run_key=key)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(key,)) for key in ("manual__a", "manual__b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    a, b = results["manual__a"], results["manual__b"]
    assert a["share_id"] != b["share_id"]
    assert a["pupils"] == b["pupils"] > 0
    for result in (a, b):
        assert result["status"] == "delivered"
        assert len(disclosed(sh, str(result["share_id"]))) == result["pupils"]
    assert len(outbox(sh)) == 2


# --- Art 21: the right to object by lawful basis ---------------------------------------------------------

ART21: dict[str, tuple[str, str, bool]] = {
    # case: (text replaced in t-research, replacement, objecting pupil sent?)
    "public task: honoured": ("lawful_basis: public_task", "lawful_basis: public_task", False),
    "legal obligation: recorded and sent": (
        "lawful_basis: public_task",
        "lawful_basis: legal_obligation",
        True,
    ),
    "approved Art 21(6) override: sent": (
        "lawful_basis: public_task",
        "lawful_basis: public_task\nobjection_override: {ground: research_public_interest, reference: DS7,"
        ' approved_by: "Data Sharing Approvals Panel", approved_on: 2000-01-01}',
        True,
    ),
}


@pytest.mark.parametrize("case", list(ART21))
def test_the_right_to_object_follows_the_lawful_basis(
    case: str, sh: Settings, census: Callable[..., Census], policies: Path, tmp_path: Path
) -> None:
    old, new, sent = ART21[case]
    ingest_census(sh, census(), emit=False)
    folder = copy_policies(policies, tmp_path)
    edit_agreement(folder, "t-research", old, new)
    settings = sh.model_copy(update={"policies_dir": folder})
    upn, _ = pupils(settings)[0]
    ingest_consent_file(objections(tmp_path / "objection.csv", [upn]), settings)
    result = run_share("t-research", settings)
    assert result["status"] == "delivered"
    assert (key_of(upn) in disclosed(settings, str(result["share_id"]))) is sent
    (row,) = list_shares(settings)
    expected = {False: "honoured", True: "recorded" if "legal_obligation" in new else "overridden"}[sent]
    assert (row.consent_check or {}).get("objections") == expected
