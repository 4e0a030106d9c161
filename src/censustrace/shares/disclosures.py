"""Disclosures for subject access (UK GDPR Art 15(1)(c)): every share that included a pupil, with its
recipient, purpose, lawful basis, gateway, the fields sent and the census file the values came from.

Pupils are named by pupil key here: UPNs are turned into keys, and the answer assembled, by
``censustrace.compliance.subject``. Only delivered shares count: a blocked or unfinished share sent
nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Final

from sqlalchemy import select

from censustrace.shares.tables import DELIVERED, disclosures, shares
from censustrace.warehouse.tables import extracts

_KEYS_PER_QUERY: Final = 500
_SHARE_COLUMNS: Final = (
    "share_id",
    "agreement_id",
    "recipient",
    "recipient_type",
    "purpose",
    "lawful_basis",
    "special_category_condition",
    "legal_gateway",
    "approval",
    "fields",
    "transforms",
    "delivered_at",
    "retention_days",
)


def shares_of_keys(conn: Any, keys: Iterable[str]) -> dict[str, list[dict[str, Any]]]:
    """pupil key -> every delivered share that included that pupil, oldest first."""
    keys = sorted(set(keys))
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        batch = keys[start : start + _KEYS_PER_QUERY]
        rows = conn.execute(
            select(
                disclosures.c.pupil_key,
                disclosures.c.blank_fields,
                # Only what the answer shows: a share row also holds its lineage event (MBs).
                *(shares.c[name] for name in _SHARE_COLUMNS),
                extracts.c.original_name.label("source_file"),
                extracts.c.sha256.label("source_sha256"),
                extracts.c.laestab.label("source_laestab"),
                extracts.c.term.label("source_term"),
                extracts.c.year.label("source_year"),
                extracts.c.received_at.label("source_received_at"),
            )
            .join(shares, shares.c.share_id == disclosures.c.share_id)
            .join(extracts, extracts.c.extract_id == disclosures.c.extract_id)
            .where(disclosures.c.pupil_key.in_(batch), shares.c.status == DELIVERED)
            .order_by(shares.c.delivered_at, shares.c.id)
        ).mappings()
        for row in rows:
            found[row["pupil_key"]].append(_disclosure(row))
    return found


def _disclosure(row: Any) -> dict[str, Any]:
    blank = set(row["blank_fields"] or ())
    approval = row["approval"] or {}
    delivered = row["delivered_at"]
    return {
        "share_id": row["share_id"],
        "date": delivered.date().isoformat() if delivered else None,
        "agreement": row["agreement_id"],
        "recipient": row["recipient"],
        "recipient_type": row["recipient_type"],
        "purpose": row["purpose"],
        "lawful_basis": row["lawful_basis"],
        "special_category_condition": row["special_category_condition"],
        "legal_gateway": row["legal_gateway"],
        "approval": approval.get("reference"),
        # How long the recipient may keep it (the agreement's retention, from delivery).
        "retention_days": row["retention_days"],
        "retain_until": (delivered.date() + dt.timedelta(days=row["retention_days"])).isoformat()
        if delivered and row["retention_days"] is not None
        else None,
        # The fields that carried a value for this pupil (the others went blank), and how they were sent.
        "fields": [f for f in row["fields"] if f not in blank],
        "transforms": {f: t for f, t in (row["transforms"] or {}).items() if f not in blank and t != "none"},
        "source": {
            "file": row["source_file"],
            "sha256": row["source_sha256"],
            "laestab": row["source_laestab"],
            "term": row["source_term"],
            "year": row["source_year"],
            "received_at": row["source_received_at"].isoformat() if row["source_received_at"] else None,
        },
    }


__all__ = ["shares_of_keys"]
