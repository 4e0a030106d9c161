"""What the share pages show: the register (filter, sort, CSV), a share's trace and column view, subject
access and the Article 30 record, read through ``censustrace.shares`` and ``censustrace.consent``.

CSV cells are made safe for spreadsheets (a leading ``= + - @`` or tab/CR is quoted with ``'``, as
OWASP advises), and a UPN is normalised (spaces removed, upper case) and checked before a lookup; an
invalid one is rejected without ever being written anywhere.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any, Final

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
_FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")


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


def csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def to_csv(header: list[str], rows: list[list[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([csv_cell(h) for h in header])
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def _sensitive_fields(settings: Settings) -> frozenset[str]:
    """Fields the policy marks as special category or highly sensitive (tier/sensitivity A)."""
    try:
        from censustrace.consent.policies import load_policy

        policy = load_policy(settings.policies_dir)
    except Exception:
        return frozenset()
    sensitive = set()
    for name, field_policy in policy.fields.items():
        if field_policy.special_category or field_policy.sensitivity.upper() == "A":
            sensitive.add(name)
    return frozenset(sensitive)


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
    """Every share and blocked attempt as register rows, filtered (exact status, substring elsewhere)
    and sorted."""
    from censustrace.shares.register import list_shares

    sensitive = _sensitive_fields(settings)
    rows: list[Json] = []
    for share in list_shares(settings):
        approval = share.approval or {}
        rows.append(
            {
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
                "fields": list(share.fields),
                "sensitive": [f for f in share.fields if f in sensitive],
                "flags": list(share.flags),
                "reasons": [r.get("code", "") for r in share.reasons],
                "reason_messages": [r.get("message", "") for r in share.reasons],
                # The agreement's retention from delivery: a share past it should be gone at the recipient.
                "retain_until": until.isoformat() if (until := share.retain_until) else "",
                "past_retention": share.past_retention(),
            }
        )
    needle = text.strip().lower()
    rows = [
        r
        for r in rows
        if (not status or r["status"] == status)
        and (not recipient or recipient.lower() in str(r["recipient"]).lower())
        and (not purpose or purpose.lower() in str(r["purpose"]).lower())
        and (not needle or any(needle in str(v).lower() for v in r.values()))
    ]
    key = sort if sort in SORTS else "date"
    rows.sort(key=lambda r: (r[key] if r[key] is not None else -1, r["share_id"]), reverse=descending)
    return rows


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


def pdf(title: str, intro: list[str], sections: list[tuple[str, list[str], list[list[object]]]]) -> bytes:
    """A plain A4 PDF: a title, intro lines, then per section a heading and its rows as ``label: value``
    lines (readable when printed, no layout surprises with long values)."""
    from fpdf import FPDF

    def latin(text: object) -> str:
        # The core fonts are Latin-1; anything else is replaced rather than dropped silently.
        return str(text).encode("latin-1", "replace").decode("latin-1")

    doc = FPDF(format="A4")
    doc.set_auto_page_break(auto=True, margin=15)
    doc.set_title(latin(title))
    doc.add_page()
    doc.set_font("Helvetica", "B", 16)
    doc.multi_cell(0, 8, latin(title), new_x="LMARGIN", new_y="NEXT")
    doc.set_font("Helvetica", size=10)
    for line in intro:
        doc.multi_cell(0, 5, latin(line), new_x="LMARGIN", new_y="NEXT")
    for heading, labels, rows in sections:
        doc.ln(3)
        doc.set_font("Helvetica", "B", 12)
        doc.multi_cell(0, 7, latin(heading), new_x="LMARGIN", new_y="NEXT")
        for row in rows:
            doc.set_font("Helvetica", size=9)
            for label, value in zip(labels, row, strict=False):
                doc.multi_cell(0, 4.5, latin(f"{label}: {value}"), new_x="LMARGIN", new_y="NEXT")
            doc.ln(2)
    return bytes(doc.output())
