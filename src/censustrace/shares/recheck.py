"""The release step's re-check: a share is judged again for the day it leaves, and a stale file is never
released.

Between the check and the release a share can wait (a retry after an outage, a queue): the agreement
may have expired or been edited, the policy changed, or families objected. Before the file becomes
visible, :func:`recheck_for_release`:

* judges the agreement again for :func:`censustrace.consent.clock.release_day` (today, Europe/London):
  a deny **blocks** the share (reasons recorded; its staged file and disclosure rows removed, since
  nothing was disclosed) and raises :class:`ShareBlocked` (CT-SHARE-BLOCKED);
* otherwise, if the policy files or the agreement changed since the build, or a pupil in the built file
  is now excluded by a recorded decision (an objection, a withdrawal, a pending objection whose pupil
  has since appeared), the share is **rebuilt** from the current warehouse and decisions, and that new
  file is what is released (CT-SHARE-REBUILT in its reasons says why).
"""

from __future__ import annotations

import datetime as dt
import shutil
from typing import Any, Final

from sqlalchemy import delete, select, update

from censustrace.config import Settings
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.register import ShareRow, find_share
from censustrace.shares.tables import BLOCKED, BUILT, CHECKED, RECORDED, disclosures, shares
from censustrace.warehouse.db import warehouse_engine, write_transaction

REBUILT: Final = "CT-SHARE-REBUILT"
_RESET: Final[dict[str, Any]] = {
    "pupils": None,
    "excluded": None,
    "suppressed": None,
    "source_extracts": None,
    "consent_files": None,
    "consent_check": None,
    "file_name": None,
    "sha256": None,
    "size": None,
    "manifest_sha256": None,
    "lineage_event": None,
    "lineage_run_id": None,
    "built_at": None,
    "recorded_at": None,
}


def recheck_for_release(settings: Settings, share: ShareRow) -> ShareRow:
    """The share to release now: ``share`` itself, or the same share rebuilt; raises
    :class:`ShareBlocked` if the agreement no longer allows it today."""
    from censustrace.consent.clock import release_day
    from censustrace.consent.evaluate import check_agreement
    from censustrace.consent.policies import load_policy
    from censustrace.consent.policy_model import PolicyError
    from censustrace.shares.check import agreement_values

    day = release_day()
    verdict = check_agreement(share.agreement_id, day, settings.policies_dir)
    agreement = None
    if verdict.allowed:
        try:
            agreement = load_policy(settings.policies_dir).agreement(share.agreement_id)
        except PolicyError:
            agreement = None
    if agreement is None:
        reasons = [{"code": r.code, "message": r.message, "field": r.field} for r in verdict.reasons]
        _block(settings, share, day, verdict.policy_version, reasons)
        codes = ", ".join(sorted({str(r["code"]) for r in reasons})) or "no reason given"
        raise ShareBlocked(
            f"share {share.share_id}: agreement {share.agreement_id} is refused for {day.isoformat()}, "
            f"the day of release ({codes}); blocked, nothing sent",
            find_share(settings, share.share_id).summary(),
        )
    values = agreement_values(agreement)
    why: list[str] = []
    if verdict.policy_version != share.policy_version or values["agreement_sha256"] != share.agreement_sha256:
        why.append("the policy or the agreement changed since the share was built")
    newly = _newly_excluded(settings, share, agreement)
    if newly:
        why.append(f"{newly} pupil(s) in the built file are now excluded by recorded decisions")
    if not why:
        return share
    changes = {
        **values,
        "as_of": day,
        "policy_version": verdict.policy_version,
        "flags": list(verdict.flags),
        "reasons": [{"code": REBUILT, "message": "rebuilt before release: " + "; ".join(why), "field": None}],
    }
    _reset(settings, share, changes)
    from censustrace.shares.build import build_share

    build_share(share.share_id, settings)
    return find_share(settings, share.share_id)


def _newly_excluded(settings: Settings, share: ShareRow, agreement: Any) -> int:
    """Pupils in the share's disclosure rows whom the decisions recorded now would keep out."""
    from censustrace.consent.objections import agreement_consent_check

    engine = warehouse_engine(settings.warehouse_db_url)
    with engine.connect() as conn:
        check = agreement_consent_check(conn, agreement, settings.pupil_key_secret_value())
        if not check.decisions and not check.consent_required:
            return 0
        keys = conn.execute(select(disclosures.c.pupil_key).where(disclosures.c.share_id == share.share_id))
        return sum(1 for key in keys.scalars() if check.reason(key) is not None)


def _discard_staged(settings: Settings, share: ShareRow) -> None:
    from censustrace.shares.build import staging_dir

    shutil.rmtree(staging_dir(settings, share.share_id), ignore_errors=True)


def _reset(settings: Settings, share: ShareRow, changes: dict[str, Any]) -> None:
    """Back to ``checked`` with the current terms: disclosure rows and the staged file removed."""
    with write_transaction(warehouse_engine(settings.warehouse_db_url)) as conn:
        conn.execute(delete(disclosures).where(disclosures.c.share_id == share.share_id))
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share.share_id, shares.c.status.in_((BUILT, RECORDED)))
            .values(status=CHECKED, **_RESET, **changes)
        )
    _discard_staged(settings, share)


def _block(
    settings: Settings, share: ShareRow, day: dt.date, version: str, reasons: list[dict[str, Any]]
) -> None:
    """Blocked on the day of release: nothing was disclosed, so its disclosure rows go too."""
    with write_transaction(warehouse_engine(settings.warehouse_db_url)) as conn:
        conn.execute(delete(disclosures).where(disclosures.c.share_id == share.share_id))
        conn.execute(
            update(shares)
            .where(shares.c.share_id == share.share_id, shares.c.status.in_((CHECKED, BUILT, RECORDED)))
            .values(status=BLOCKED, as_of=day, policy_version=version, reasons=reasons, **_RESET)
        )
    _discard_staged(settings, share)


__all__ = ["REBUILT", "recheck_for_release"]
