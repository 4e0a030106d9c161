"""The share register: reading share rows and their JSON summary (``censustrace share ID --json``). The
errors of the share steps are in ``censustrace.shares.errors``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields, replace
from typing import Any

from sqlalchemy import Connection, Row, select

from censustrace.config import Settings
from censustrace.shares.errors import NOT_FOUND, ShareError
from censustrace.shares.tables import BLOCKED, shares
from censustrace.warehouse.db import warehouse_engine


@dataclass(frozen=True, slots=True)
class ShareRow:
    """One row of the share register (see ``shares.tables.shares`` and docs/shares.md)."""

    id: int
    share_id: str
    agreement_id: str
    run_key: str | None
    status: str
    as_of: dt.date
    agreement_sha256: str | None
    recipient: str | None
    recipient_type: str | None
    purpose: str | None
    lawful_basis: str | None
    special_category_condition: str | None
    legal_gateway: str | None
    approval: dict[str, Any] | None
    policy_version: str | None
    flags: list[str]
    reasons: list[dict[str, Any]]
    fields: list[str]
    transforms: dict[str, str]
    retention_days: int | None  # the agreement's, as checked: the recipient deletes the file this long after
    pupils: int | None
    excluded: dict[str, int] | None
    suppressed: dict[str, int] | None
    source_extracts: list[str] | None
    consent_files: list[str] | None
    consent_check: dict[str, Any] | None
    file_name: str | None
    sha256: str | None
    size: int | None
    manifest_sha256: str | None
    file_path: str | None
    lineage_run_id: str | None
    lineage_event: str | None
    created_at: dt.datetime
    built_at: dt.datetime | None
    recorded_at: dt.datetime | None
    delivered_at: dt.datetime | None

    @classmethod
    def of(cls, row: Row[Any]) -> ShareRow:
        data = row._mapping
        return cls(**{f.name: data[f.name] for f in fields(cls)})

    def summary(self) -> dict[str, Any]:
        """The JSON of ``censustrace share AGREEMENT_ID --json`` (and of each ``shares list`` item)."""
        approval = self.approval or {}
        return {
            "share_id": self.share_id,
            "agreement": self.agreement_id,
            "status": self.status,
            "pupils": self.pupils if self.status != BLOCKED else 0,
            "excluded": dict(self.excluded or {}),
            "file": self.file_path,
            "sha256": self.sha256 if self.file_path else None,
            "reasons": list(self.reasons),
            "recipient": self.recipient,
            "purpose": self.purpose,
            "lawful_basis": self.lawful_basis,
            "legal_gateway": self.legal_gateway,
            "approval": approval.get("reference"),
            "flags": list(self.flags),
            "fields": list(self.fields),
            "policy_version": self.policy_version,
            "as_of": self.as_of.isoformat(),
            "created_at": self.created_at.isoformat(),
            "delivered_at": self.delivered_at.isoformat() if self.delivered_at else None,
            "retention_days": self.retention_days,
            "retain_until": until.isoformat() if (until := self.retain_until) else None,
            "past_retention": self.past_retention(),
        }

    @property
    def retain_until(self) -> dt.date | None:
        """The last day the recipient may keep the delivered file (delivery day + the agreement's
        retention); None for a share not delivered or made before retention was recorded."""
        if self.delivered_at is None or self.retention_days is None:
            return None
        return self.delivered_at.date() + dt.timedelta(days=self.retention_days)

    def past_retention(self, today: dt.date | None = None) -> bool:
        """The recipient should have deleted the file by ``today`` (default: the UTC date now)."""
        until = self.retain_until
        return until is not None and (today or dt.datetime.now(dt.UTC).date()) > until


def get_share(conn: Connection, share_id: str, *, lock: bool = False) -> ShareRow | None:
    query = select(shares).where(shares.c.share_id == share_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    return None if row is None else ShareRow.of(row)


def find_share(settings: Settings, share_id: str) -> ShareRow:
    """The share ``share_id``, or CT-SHARE-NOT-FOUND."""
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        found = get_share(conn, share_id)
    if found is None:
        raise ShareError(f"no share {share_id} in the share register", code=NOT_FOUND)
    return located(settings, found)


def list_shares(settings: Settings, *, agreement_id: str | None = None) -> list[ShareRow]:
    """Every share and blocked attempt, oldest first."""
    query = select(shares).order_by(shares.c.id)
    if agreement_id is not None:
        query = query.where(shares.c.agreement_id == agreement_id)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        return [located(settings, ShareRow.of(row)) for row in conn.execute(query)]


def located(settings: Settings, share: ShareRow) -> ShareRow:
    """``share`` with its file path absolute in this home's share outbox: the register records it
    relative (``<recipient>/<file>``), so a moved or restored home finds its files where they are now."""
    if not share.file_path or share.file_path.startswith("/"):
        return share
    path = settings.share_outbox_dir.expanduser().resolve() / share.file_path
    return replace(share, file_path=str(path))


__all__ = [
    "ShareRow",
    "find_share",
    "get_share",
    "list_shares",
]
