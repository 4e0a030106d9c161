"""Step 1 of a share: the policy check, recorded in the share register whatever its verdict.

Allow: a share row (``checked``) with what the agreement says, the policy version and the fields.
Deny: a *blocked share* with the reasons, then :class:`ShareBlocked` (nothing is built or sent).

The day is always :func:`censustrace.consent.clock.release_day` (today in Europe/London): no caller can
back-date a check. The release step judges the share again for the day it leaves.

Idempotent: with a ``run_key`` (the Airflow run id), the same key gives the same share (a retried task
resumes it, and a retried refused check finds its blocked attempt instead of recording a second one);
without one (the CLI), an unfinished share of the agreement is resumed before a new one is started, so a
release that failed is completed exactly once by the next run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import IntegrityError

from censustrace.audit.register import seal_share
from censustrace.config import Settings
from censustrace.lineage.model import StepLineage
from censustrace.lineage.naming import FILE_NAMESPACE, file_dataset_name
from censustrace.shares.errors import ShareBlocked
from censustrace.shares.lineage import register_output
from censustrace.shares.register import ShareRow, get_share
from censustrace.shares.tables import BLOCKED, CHECKED, UNFINISHED, shares
from censustrace.warehouse.db import warehouse_engine, write_transaction

SHARE_PREFIX = "shr_"


def share_id_for(agreement_id: str, run_key: str | None) -> str:
    """``shr_`` + 24 hex digits: derived from (agreement, run key) when there is a key, else random."""
    if run_key is None:
        return SHARE_PREFIX + uuid.uuid4().hex[:24]
    digest = hashlib.sha256(f"{agreement_id}\x1f{run_key}".encode()).hexdigest()
    return SHARE_PREFIX + digest[:24]


def _resumable(conn: Connection, agreement_id: str, run_key: str | None) -> ShareRow | None:
    query = select(shares).where(shares.c.agreement_id == agreement_id)
    if run_key is None:
        query = query.where(shares.c.run_key.is_(None), shares.c.status.in_(UNFINISHED))
    else:  # this run's share or its blocked attempt, whatever its state
        query = query.where(shares.c.run_key == run_key)
    row = conn.execute(query.order_by(shares.c.id.desc())).first()
    return None if row is None else ShareRow.of(row)


def _file_sha256(path: Path | None) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else None
    except OSError:
        return None


def agreement_values(agreement: Any) -> dict[str, Any]:
    """The share register's copy of what an agreement says."""
    approval = agreement.approval
    return {
        "agreement_sha256": _file_sha256(agreement.source),
        "recipient": agreement.recipient.name,
        "recipient_type": agreement.recipient.type,
        "purpose": agreement.purpose,
        "lawful_basis": agreement.lawful_basis,
        "special_category_condition": agreement.special_category_condition,
        "legal_gateway": agreement.legal_gateway,
        "approval": None
        if approval is None
        else {
            "reference": approval.reference,
            "approved_by": approval.approved_by,
            "approved_on": approval.approved_on.isoformat(),
        },
        "fields": list(agreement.fields),
        "transforms": {f: agreement.transform(f) for f in agreement.fields},
        "retention_days": agreement.retention_days,
    }


def _agreement(settings: Settings, agreement_id: str) -> Any | None:
    """The agreement as written, or None when the policy cannot be read (the verdict says why)."""
    from censustrace.consent.policies import load_policy
    from censustrace.consent.policy_model import PolicyError

    try:
        return load_policy(settings.policies_dir).agreement(agreement_id)
    except PolicyError:
        return None


def check_share(
    agreement_id: str,
    settings: Settings,
    *,
    run_key: str | None = None,
    lineage: StepLineage | None = None,
) -> dict[str, Any]:
    """Check ``agreement_id`` for today (Europe/London) and record the outcome; the share's summary (its
    ``share_id`` included). A deny records a blocked share and raises :class:`ShareBlocked`."""
    from censustrace.consent.clock import release_day
    from censustrace.consent.evaluate import check_agreement
    from censustrace.consent.policy_model import UnknownAgreement

    as_of = release_day()
    engine = warehouse_engine(settings.warehouse_db_url)
    with engine.connect() as conn:
        resumed = _resumable(conn, agreement_id, run_key)
    if resumed is not None:
        _check_lineage(settings, resumed, lineage)
        if resumed.status == BLOCKED:
            raise ShareBlocked(
                f"agreement {agreement_id} was refused for this run ({run_key}): blocked share "
                f"{resumed.share_id} already recorded, nothing sent",
                resumed.summary(),
            )
        return resumed.summary()
    verdict = check_agreement(agreement_id, as_of, settings.policies_dir)
    unknown = [r for r in verdict.reasons if r.code == UnknownAgreement.code]
    if unknown:  # a name that is no agreement: nothing was attempted, nothing to record
        raise UnknownAgreement(unknown[0].message)
    agreement = _agreement(settings, agreement_id)
    values: dict[str, Any] = {"fields": [], "transforms": {}}
    if agreement is not None:
        values = agreement_values(agreement)
    reasons = [{"code": r.code, "message": r.message, "field": r.field} for r in verdict.reasons]
    row = {
        **values,
        "agreement_id": agreement_id,
        "run_key": run_key,
        "as_of": as_of,
        "policy_version": verdict.policy_version,
        "flags": list(verdict.flags),
        "reasons": reasons,
        "created_at": dt.datetime.now(dt.UTC),
    }
    if verdict.verdict != "allow":
        # With a run key the blocked attempt has that run's id: a retried check finds it, not a second.
        share = _insert(engine, {**row, "share_id": share_id_for(agreement_id, run_key), "status": BLOCKED})
        _check_lineage(settings, share, lineage)
        codes = ", ".join(sorted({str(r["code"]) for r in reasons})) or "no reason given"
        raise ShareBlocked(
            f"agreement {agreement_id} refused for {as_of.isoformat()} ({codes}); blocked share "
            f"{share.share_id} recorded, nothing sent",
            share.summary(),
        )
    share = _insert(engine, {**row, "share_id": share_id_for(agreement_id, run_key), "status": CHECKED})
    if share.status == BLOCKED:  # a concurrent attempt of the same run was refused first
        raise ShareBlocked(f"agreement {agreement_id} refused for this run; nothing sent", share.summary())
    _check_lineage(settings, share, lineage)
    return share.summary()


def _insert(engine: Any, values: dict[str, Any]) -> ShareRow:
    try:
        with write_transaction(engine) as conn:
            conn.execute(insert(shares).values(**values))
            if values["status"] == BLOCKED:
                seal_share(conn, values["share_id"])  # a blocked share is final: into the audit chain
    except IntegrityError:
        pass  # the same run key was checked meanwhile: that share stands
    with engine.connect() as conn:
        found = get_share(conn, values["share_id"])
    assert found is not None, "a share row just written or found"
    return found


def _check_lineage(settings: Settings, share: ShareRow, lineage: StepLineage | None) -> None:
    """The agreement file read (at its sha256) and the share register written (at the share id)."""
    if lineage is None:
        return
    from openlineage.client.event_v2 import InputDataset
    from openlineage.client.generated.dataset_version_dataset import DatasetVersionDatasetFacet

    agreement = _agreement(settings, share.agreement_id)
    if agreement is not None and share.agreement_sha256:
        lineage.inputs.append(
            InputDataset(
                namespace=FILE_NAMESPACE,
                name=file_dataset_name(agreement.source),
                facets={"version": DatasetVersionDatasetFacet(datasetVersion=share.agreement_sha256)},
            )
        )
    lineage.outputs.append(register_output(settings, shares.name, share.share_id))


__all__ = ["agreement_values", "check_share", "share_id_for"]
