"""What the share pages show: the register (filter, sort, CSV), a share's trace and column view, subject
access and the Article 30 record, read through ``censustrace.shares`` and ``censustrace.consent``.

CSV files are written by :func:`censustrace.compliance.documents.to_csv`, and a UPN is normalised
(spaces removed, upper case) and checked before a lookup; an invalid one is rejected without ever being
written anywhere.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

from censustrace.compliance.documents import to_csv
from censustrace.config import Settings
from censustrace.errors import CensustraceError

Json = dict[str, Any]

SORTS: Final = ("date", "recipient", "purpose", "status", "pupils", "agreement")
REGISTER_COLUMNS: Final = (
    ("date", "Date"),
    ("share_id", "Share"),
    ("status", "Status"),
    ("recipient", "Recipient"),
    ("purpose", "Purpose"),
    ("lawful_basis", "Lawful basis"),
    ("legal_gateway", "Gateway"),
    ("agreement", "Agreement"),
    ("approval", "Approval"),
    ("pupils", "Pupils"),
    ("sensitive", "Sensitive fields"),
    ("flags", "Flags"),
    ("reasons", "Reasons"),
)


class UpnRejected(CensustraceError):
    """A UPN that is not 13 characters with a valid check letter (the value is never echoed)."""

    code = "CT-VIEWER-UPN"


def normalise_upn(text: str) -> str:
    """``b801 2000 05001`` -> ``B801200005001``; raises :class:`UpnRejected` if it is not a valid UPN."""
    from censustrace.census.identifiers import is_valid_upn

    upn = "".join(text.split()).upper()
    if not upn:
        raise UpnRejected("enter the pupil's UPN")
    if len(upn) != 13 or not is_valid_upn(upn):
        raise UpnRejected(
            "that is not a valid UPN: 13 characters, a check letter then 12 digits (the last may be a "
            "letter for a temporary UPN); check the letter and digits and try again"
        )
    return upn


def _policy_stamp(folder: Path) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the policy files: changes when any file does."""
    found = []
    for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
        if path.is_file():
            stat = path.stat()
            found.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(found)


@lru_cache(maxsize=4)
def _sensitive_for(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> frozenset[str]:
    try:
        from censustrace.consent.policies import load_policy

        policy = load_policy(folder)
    except Exception:
        return frozenset()
    sensitive = set()
    for name, field_policy in policy.fields.items():
        if field_policy.special_category or field_policy.sensitivity.upper() == "A":
            sensitive.add(name)
    return frozenset(sensitive)


def _sensitive_fields(settings: Settings) -> frozenset[str]:
    """Fields the policy marks as special category or highly sensitive (tier/sensitivity A). Reading and
    checking the policy costs about 0.1 s, so it is kept until a policy file changes."""
    return _sensitive_for(settings.policies_dir, _policy_stamp(settings.policies_dir))


#: Register columns read from ``shares`` (never ``lineage_event``: up to megabytes per share).
_REGISTER_READ: Final = (
    "share_id",
    "status",
    "recipient",
    "recipient_type",
    "purpose",
    "lawful_basis",
    "special_category_condition",
    "legal_gateway",
    "agreement_id",
    "approval",
    "pupils",
    "excluded",
    "fields",
    "flags",
    "reasons",
    "created_at",
    "delivered_at",
    "retention_days",
)
#: "Any text" searches these (JSON columns as their text).
_TEXT_COLUMNS: Final = (
    "share_id",
    "status",
    "recipient",
    "purpose",
    "lawful_basis",
    "legal_gateway",
    "agreement_id",
    "approval",
    "fields",
    "flags",
    "reasons",
)


@dataclass(frozen=True)
class RegisterQuery:
    """A filter of the share register: exact status, case-insensitive substrings elsewhere."""

    status: str = ""
    recipient: str = ""
    purpose: str = ""
    text: str = ""
    sort: str = "date"
    descending: bool = True


def _contains(column: Any, needle: str) -> Any:
    from sqlalchemy import String, cast, func

    from censustrace.viewer.lineage_views import like_pattern

    return func.lower(cast(column, String)).like(like_pattern(needle.lower()), escape="\\")


def _register_select(query: RegisterQuery) -> Any:
    from sqlalchemy import and_, case, func, or_, select

    from censustrace.shares.tables import shares

    conditions = []
    if query.status:
        conditions.append(shares.c.status == query.status)
    if query.recipient.strip():
        conditions.append(_contains(shares.c.recipient, query.recipient.strip()))
    if query.purpose.strip():
        conditions.append(_contains(shares.c.purpose, query.purpose.strip()))
    if query.text.strip():
        conditions.append(or_(*(_contains(shares.c[name], query.text.strip()) for name in _TEXT_COLUMNS)))
    date = func.coalesce(shares.c.delivered_at, shares.c.created_at)
    keys = {
        "date": date,
        "recipient": func.coalesce(shares.c.recipient, ""),
        "purpose": func.coalesce(shares.c.purpose, ""),
        "status": shares.c.status,
        "pupils": case((shares.c.status == "blocked", 0), else_=func.coalesce(shares.c.pupils, -1)),
        "agreement": shares.c.agreement_id,
    }
    key = keys.get(query.sort, date)
    order = (
        [key.desc(), shares.c.share_id.desc()] if query.descending else [key.asc(), shares.c.share_id.asc()]
    )
    where = and_(*conditions) if conditions else None
    rows = select(*(shares.c[name] for name in _REGISTER_READ)).order_by(*order)
    count = select(func.count()).select_from(shares)
    if where is not None:
        rows, count = rows.where(where), count.where(where)
    return rows, count


def _register_row(share: Any, sensitive: frozenset[str]) -> Json:
    approval = share.approval or {}
    fields = list(share.fields or [])
    return {
        "date": (share.delivered_at or share.created_at).date().isoformat(),
        "share_id": share.share_id,
        "status": share.status,
        "recipient": share.recipient or "",
        "recipient_type": share.recipient_type or "",
        "purpose": share.purpose or "",
        "lawful_basis": share.lawful_basis or "",
        "special_category_condition": share.special_category_condition or "",
        "legal_gateway": share.legal_gateway or "",
        "agreement": share.agreement_id,
        "approval": approval.get("reference") or "",
        "approved_by": approval.get("approved_by") or "",
        "pupils": share.pupils if share.status != "blocked" else 0,
        "excluded": dict(share.excluded or {}),
        "fields": fields,
        "sensitive": [f for f in fields if f in sensitive],
        "flags": list(share.flags or []),
        "reasons": [r.get("code", "") for r in share.reasons or []],
        "reason_messages": [r.get("message", "") for r in share.reasons or []],
        # The agreement's retention from delivery: a share past it should be gone at the recipient.
        "retain_until": until.isoformat() if (until := _retain_until(share)) else "",
        "past_retention": until is not None and dt.datetime.now(dt.UTC).date() > until,
    }


def _retain_until(share: Any) -> dt.date | None:
    """As ``ShareRow.retain_until``, from the register columns the page reads."""
    if share.delivered_at is None or share.retention_days is None:
        return None
    until: dt.date = share.delivered_at.date() + dt.timedelta(days=share.retention_days)
    return until


def register_page(
    settings: Settings, query: RegisterQuery, *, limit: int | None = None, offset: int = 0
) -> tuple[list[Json], int]:
    """One page of the register (filtered, sorted and paged by the database) and how many rows match."""
    from sqlalchemy import func

    from censustrace.warehouse.db import warehouse_engine

    rows_query, count_query = _register_select(query)
    if limit is not None:
        # The matches are counted in the same pass as the page is cut (a window over the filtered rows):
        # a text search reads every row once, not twice.
        rows_query = rows_query.add_columns(func.count().over().label("matches"))
        rows_query = rows_query.limit(limit).offset(max(offset, 0))
    sensitive = _sensitive_fields(settings)
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        page = conn.execute(rows_query).all()
        found = [_register_row(row, sensitive) for row in page]
        if limit is None:
            total = len(found)
        elif page:
            total = int(page[0].matches)
        else:  # past the last page (or nothing matches): count on its own
            total = int(conn.execute(count_query).scalar_one())
    return found, total


def register(
    settings: Settings,
    *,
    status: str = "",
    recipient: str = "",
    purpose: str = "",
    text: str = "",
    sort: str = "date",
    descending: bool = True,
) -> list[Json]:
    """Every share and blocked attempt matching the filter (exact status, substring elsewhere), sorted:
    the whole register (CSV export, charts); pages use :func:`register_page`."""
    query = RegisterQuery(status, recipient, purpose, text, sort if sort in SORTS else "date", descending)
    return register_page(settings, query)[0]


def register_csv(rows: list[Json]) -> str:
    def cell(row: Json, key: str) -> object:
        value = row[key]
        return "; ".join(map(str, value)) if isinstance(value, list) else value

    return to_csv(
        [label for _, label in REGISTER_COLUMNS], [[cell(r, k) for k, _ in REGISTER_COLUMNS] for r in rows]
    )


def column_view(share: Any) -> list[Json]:
    """Which census fields reached the recipient, from which warehouse columns, and how transformed."""
    from censustrace.shares.lineage import source_columns

    out = []
    for field in share.fields:
        table, columns = source_columns(field)
        out.append(
            {
                "field": field,
                "source": f"{table}." + ", ".join(columns) if columns else table,
                "transform": share.transforms.get(field, "none"),
                "blanked": (share.suppressed or {}).get(field),
            }
        )
    return out


def charts_data(rows: list[Json]) -> Json:
    """Shares per month by recipient, and pupils excluded by reason (delivered shares)."""
    delivered = [r for r in rows if r["status"] == "delivered"]
    months = sorted({r["date"][:7] for r in delivered})
    recipients = sorted({r["recipient"] for r in delivered})
    series = {name: [0.0] * len(months) for name in recipients}
    for r in delivered:
        series[r["recipient"]][months.index(r["date"][:7])] += 1
    excluded: Counter[str] = Counter()
    for r in delivered:
        excluded.update({str(k): int(v) for k, v in r["excluded"].items()})
    return {"months": months, "series": series, "excluded": sorted(excluded.items(), key=lambda kv: -kv[1])}
