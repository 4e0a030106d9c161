"""The record of processing activities (UK GDPR Article 30(1)) built from what happened.

* **Processing activities** are the delivered shares, one activity per agreement and policy version:
  the recipient, purpose, lawful basis, Art 9 condition, gateway and approval are the share register's
  copy of the agreement *as it was at the share* (not today's YAML); the categories of data are those of
  the fields actually sent (a field blank for every pupil of a share was not sent); the categories of
  data subjects are the pupils actually disclosed (their NC years and schools); the retention is the
  agreement's as recorded with the share, and the home-address retention of ``fields.yaml``.
* **Transfers outside the UK**: ``CENSUSTRACE_TRANSFERS_OUTSIDE_UK`` names them per recipient; none
  otherwise.
* **Security measures**, **controller** and **DPO**: from configuration (``censustrace.config``).
* **Refused attempts** (blocked shares) are listed in their own section, never as processing.
* **Planned processing**: agreements in ``policies/`` that the policy allows today and under which no
  share has been delivered yet.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any, Final

from sqlalchemy import func, select

from censustrace.config import Settings
from censustrace.shares.register import ShareRow, list_shares
from censustrace.shares.tables import BLOCKED, DELIVERED, disclosures
from censustrace.warehouse.db import warehouse_engine
from censustrace.warehouse.tables import pupil

Json = dict[str, Any]

ACTIVITY_COLUMNS: Final = (
    ("agreement", "Agreement"),
    ("policy_version", "Policy version at the share"),
    ("purpose", "Purpose"),
    ("recipient", "Recipient"),
    ("recipient_type", "Recipient type"),
    ("lawful_basis", "Lawful basis (Art 6)"),
    ("special_category_condition", "Special category condition (Art 9)"),
    ("legal_gateway", "Legal gateway"),
    ("approval", "Approval"),
    ("data_categories", "Categories of personal data (as sent)"),
    ("fields_sent", "Fields sent"),
    ("special_category_data", "Special category data sent"),
    ("data_subjects", "Categories of data subjects"),
    ("transfers_outside_uk", "Transfers outside the UK"),
    ("retention", "Retention"),
    ("shares", "Shares delivered"),
    ("pupils", "Pupil records disclosed"),
    ("first_share", "First share"),
    ("last_share", "Last share"),
)
REFUSED_COLUMNS: Final = (
    ("date", "Date"),
    ("agreement", "Agreement"),
    ("recipient", "Recipient"),
    ("purpose", "Purpose"),
    ("lawful_basis", "Lawful basis claimed"),
    ("reasons", "Why it was refused"),
)
PLANNED_COLUMNS: Final = (
    ("agreement", "Agreement"),
    ("purpose", "Purpose"),
    ("recipient", "Recipient"),
    ("lawful_basis", "Lawful basis (Art 6)"),
    ("special_category_condition", "Special category condition (Art 9)"),
    ("legal_gateway", "Legal gateway"),
    ("approval", "Approval"),
    ("data_categories", "Categories of personal data (declared)"),
    ("transfers_outside_uk", "Transfers outside the UK"),
    ("retention", "Retention"),
    ("valid", "Valid"),
)


def record_of_processing(settings: Settings, today: dt.date | None = None) -> Json:
    """``{controller, dpo, security_measures, policy_version, activities, refused, planned}``."""
    from censustrace.consent.evaluate import evaluate
    from censustrace.consent.policies import load_policy

    today = today or dt.datetime.now(dt.UTC).date()
    policy = load_policy(settings.policies_dir)
    rows = list_shares(settings)
    delivered = [s for s in rows if s.status == DELIVERED]
    sent = _fields_sent(settings, delivered)
    subjects = _subjects(settings, delivered)
    address_days = {
        name: entry.retention_days
        for name, entry in policy.fields.items()
        if entry.retention_days is not None
    }

    groups: dict[tuple[str, str], list[ShareRow]] = defaultdict(list)
    for share in delivered:
        groups[(share.agreement_id, share.policy_version or "")].append(share)
    activities = []
    for (agreement_id, version), shares in sorted(groups.items()):
        last = shares[-1]
        order = {name: i for i, name in enumerate(last.fields)}
        fields = sorted({f for s in shares for f in sent[s.share_id]}, key=lambda f: (order.get(f, 999), f))
        categories = sorted({_category(policy, f) for f in fields})
        special = sorted(f for f in fields if _special(policy, f))
        years: Counter[str] = Counter()
        schools: set[str] = set()
        for s in shares:
            years.update(subjects[s.share_id][0])
            schools |= subjects[s.share_id][1]
        kept = sorted({s.retention_days for s in shares if s.retention_days is not None})
        activities.append(
            {
                "agreement": agreement_id,
                "policy_version": version[:16],
                "purpose": last.purpose or "",
                "recipient": last.recipient or "",
                "recipient_type": last.recipient_type or "",
                "lawful_basis": last.lawful_basis or "",
                "special_category_condition": last.special_category_condition or "",
                "legal_gateway": last.legal_gateway or "",
                "approval": (last.approval or {}).get("reference", ""),
                "data_categories": categories,
                "fields_sent": fields,
                "special_category_data": special,
                "data_subjects": _describe_subjects(years, schools),
                "transfers_outside_uk": settings.transfers_outside_uk.get(last.recipient or "", "none"),
                "retention": _retention(kept, [f for f in fields if f in address_days], address_days),
                "shares": len(shares),
                "pupils": sum(s.pupils or 0 for s in shares),
                "first_share": _day(shares[0].delivered_at),
                "last_share": _day(last.delivered_at),
            }
        )

    refused = [
        {
            "date": _day(s.created_at),
            "agreement": s.agreement_id,
            "recipient": s.recipient or "",
            "purpose": s.purpose or "",
            "lawful_basis": s.lawful_basis or "",
            "reasons": sorted({str(r.get("code")) for r in s.reasons}),
        }
        for s in rows
        if s.status == BLOCKED
    ]

    used = {s.agreement_id for s in delivered}
    planned = []
    for agreement in sorted(policy.agreements.values(), key=lambda a: a.id):
        if agreement.id in used or not evaluate(policy, agreement, today).allowed:
            continue
        planned.append(
            {
                "agreement": agreement.id,
                "purpose": agreement.purpose,
                "recipient": agreement.recipient.name,
                "lawful_basis": agreement.lawful_basis,
                "special_category_condition": agreement.special_category_condition or "",
                "legal_gateway": agreement.legal_gateway or "",
                "approval": agreement.approval.reference if agreement.approval else "",
                "data_categories": sorted({_category(policy, f) for f in agreement.fields}),
                "transfers_outside_uk": settings.transfers_outside_uk.get(agreement.recipient.name, "none"),
                "retention": f"recipient deletes {agreement.retention_days} days after receipt",
                "valid": f"{agreement.valid_from.isoformat()} to {agreement.valid_to.isoformat()}",
            }
        )
    return {
        "controller": {
            "name": settings.controller_name or f"Local authority {settings.la}",
            "address": settings.controller_address or "",
            "contact": settings.controller_contact or "",
        },
        "dpo": {"name": settings.dpo_name or "", "contact": settings.dpo_contact or ""},
        "security_measures": settings.security_measures,
        "policy_version": policy.version_hash,
        "generated_on": today.isoformat(),
        "activities": activities,
        "refused": refused,
        "planned": planned,
    }


def _category(policy: Any, field: str) -> str:
    entry = policy.fields.get(field)
    return entry.category if entry is not None else field


def _special(policy: Any, field: str) -> bool:
    entry = policy.fields.get(field)
    return bool(entry is not None and entry.special_category)


def _day(value: dt.datetime | None) -> str:
    return value.date().isoformat() if value else ""


def _retention(kept: list[int], address_fields: list[str], days: dict[str, int]) -> str:
    parts = [f"recipient deletes {d} days after receipt" for d in kept] or ["not recorded with the share"]
    if address_fields:
        held = sorted({days[f] for f in address_fields})
        parts.append(
            f"we erase {', '.join(address_fields)} {'/'.join(map(str, held))} days after the census day"
        )
    return "; ".join(parts)


def _describe_subjects(years: Counter[str], schools: set[str]) -> str:
    if not years:
        return "pupils on roll in the school census"
    shown = ", ".join(sorted(years, key=lambda y: (len(y), y)))
    return f"pupils on roll (children) in NC year(s) {shown} at {len(schools)} school(s)"


def _fields_sent(settings: Settings, shares: list[ShareRow]) -> dict[str, list[str]]:
    """share id -> the fields that carried a value for at least one pupil."""
    found: dict[str, list[str]] = {}
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        for share in shares:
            blank: Counter[str] = Counter()
            for (fields,) in conn.execute(
                select(disclosures.c.blank_fields).where(
                    disclosures.c.share_id == share.share_id, disclosures.c.blank_fields.is_not(None)
                )
            ):
                blank.update(fields or ())
            pupils = share.pupils or 0
            found[share.share_id] = [f for f in share.fields if pupils and blank[f] < pupils]
    return found


def _subjects(settings: Settings, shares: list[ShareRow]) -> dict[str, tuple[Counter[str], set[str]]]:
    """share id -> (pupils per NC year, schools) of the records actually disclosed."""
    found: dict[str, tuple[Counter[str], set[str]]] = {s.share_id: (Counter(), set()) for s in shares}
    if not shares:
        return found
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(disclosures.c.share_id, pupil.c.nc_year, pupil.c.laestab, func.count())
            .join(
                pupil,
                (pupil.c.extract_id == disclosures.c.extract_id)
                & (pupil.c.record_number == disclosures.c.record_number),
            )
            .where(disclosures.c.share_id.in_([s.share_id for s in shares]))
            .group_by(disclosures.c.share_id, pupil.c.nc_year, pupil.c.laestab)
        )
        for share_id, year, laestab, count in rows:
            years, schools = found[str(share_id)]
            years[str(year or "unknown")] += int(count)
            schools.add(str(laestab))
    return found


def table(record: Json, section: str) -> tuple[list[str], list[list[object]]]:
    """Labels and rows of one section (``activities``, ``refused``, ``planned``) for CSV and PDF."""
    columns = {"activities": ACTIVITY_COLUMNS, "refused": REFUSED_COLUMNS, "planned": PLANNED_COLUMNS}[
        section
    ]

    def cell(value: object) -> object:
        return "; ".join(map(str, value)) if isinstance(value, list) else ("" if value is None else value)

    return [label for _, label in columns], [[cell(r[key]) for key, _ in columns] for r in record[section]]


def to_csv(record: Json) -> str:
    """One CSV: a ``section`` column first, then every section's columns (blank where not its own);
    the controller, DPO and security measures as ``controller`` rows."""
    from censustrace.compliance.documents import to_csv as write_csv

    keys: list[str] = []
    for columns in (ACTIVITY_COLUMNS, REFUSED_COLUMNS, PLANNED_COLUMNS):
        keys += [k for k, _ in columns if k not in keys]
    header = ["section", *keys, "detail"]
    controller = record["controller"]
    rows: list[list[object]] = [
        [
            "controller",
            *[""] * len(keys),
            f"{controller['name']}; {controller['address']}; {controller['contact']}",
        ],
        ["dpo", *[""] * len(keys), f"{record['dpo']['name']}; {record['dpo']['contact']}"],
        ["security_measures", *[""] * len(keys), record["security_measures"]],
    ]
    for section in ("activities", "refused", "planned"):
        for item in record[section]:
            values = [item.get(k, "") for k in keys]
            rows.append(
                [section, *("; ".join(map(str, v)) if isinstance(v, list) else v for v in values), ""]
            )
    return write_csv(header, rows)


def to_pdf(record: Json) -> bytes:
    from censustrace.compliance.documents import pdf

    controller, dpo = record["controller"], record["dpo"]
    intro = [
        f"Controller: {controller['name']}"
        + (f", {controller['address']}" if controller["address"] else "")
        + (f" ({controller['contact']})" if controller["contact"] else "")
        + ".",
        f"Data protection officer: {dpo['name'] or 'not configured'}"
        + (f" ({dpo['contact']})" if dpo["contact"] else "")
        + ".",
        f"Security measures: {record['security_measures']}",
        f"Built on {record['generated_on']} from the shares actually delivered; policy version "
        f"{record['policy_version'][:16]}.",
    ]
    sections = [
        ("Processing activities (shares delivered)", *table(record, "activities")),
        ("Refused attempts (no data was sent)", *table(record, "refused")),
        ("Planned processing (approved, not yet used)", *table(record, "planned")),
    ]
    return pdf("Record of processing activities (UK GDPR Article 30)", intro, sections)


__all__ = ["record_of_processing", "table", "to_csv", "to_pdf"]
