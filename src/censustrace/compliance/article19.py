"""Article 19 notices: tell each past recipient when a pupil's data they received was rectified, erased
or objected to.

Events (found from the warehouse, nothing to declare):

* **rectification**: the census a share was made from was superseded by a resubmission, and for this
  pupil a field the recipient received now has another value (or the pupil is no longer in it);
* **erasure**: a retention run erased values of a field the recipient received for this pupil (from the
  ``erasures`` log: the rule, table, field and extracts);
* **objection**: the pupil objected to, or withdrew consent for, a purpose covering the share's purpose
  on or after the day of the share (not for shares under a legal obligation, where Art 21 does not
  apply).

``pending_notices`` lists what is still to be sent, one item per (event, share, pupil): recipients and
fields, never a pupil identifier. ``send_notices`` writes one notice per recipient (CSV and PDF, naming
each record as the recipient holds it: its row in the file they received and its UPN as sent, if they
received one) and records each item sent with ``record_notices`` in ``article19_notices``, so a second
run sends nothing again. That table is the record that the notice was sent (a chained audit log can
cover it through ``record_notices``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Connection, insert, select

from censustrace.compliance.tables import ERASURE, OBJECTION, RECTIFICATION, article19_notices
from censustrace.config import Settings
from censustrace.consent.evaluate import purpose_covers
from censustrace.consent.tables import consent_decisions
from censustrace.shares.lineage import source_columns
from censustrace.shares.register import ShareRow, list_shares
from censustrace.shares.tables import DELIVERED, disclosures, erasures
from censustrace.shares.transforms import pseudonym_key, text, transformer
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import extracts, pupil, pupil_address

Json = dict[str, Any]
_OBJECTING: Final = ("objected", "withdrawn")
_NO_OBJECTION_BASES: Final = ("legal_obligation",)
ACTIONS: Final = {
    RECTIFICATION: "replace these fields with the values of the next share (or delete them)",
    ERASURE: "erase these fields from your copy",
    OBJECTION: "stop processing this record for the purpose and erase it unless another basis applies",
}
CSV_HEADER: Final = [
    "notice_id",
    "kind",
    "event_date",
    "share_id",
    "share_date",
    "agreement",
    "file",
    "row_in_file",
    "upn_as_sent",
    "fields",
    "action",
]


def pending_notices(settings: Settings) -> list[Json]:
    """Notice items not yet sent: ``{kind, event_ref, event_date, share_id, recipient, pupil_key,
    fields}`` (the pupil key stays inside censustrace; it is never written into a notice)."""
    shares = {s.share_id: s for s in list_shares(settings) if s.status == DELIVERED}
    if not shares:
        return []
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        found = _rectifications(conn, shares) + _erasures(conn, shares) + _objections(conn, shares)
        sent = set(
            conn.execute(
                select(
                    article19_notices.c.kind,
                    article19_notices.c.event_ref,
                    article19_notices.c.share_id,
                    article19_notices.c.pupil_key,
                )
            ).tuples()
        )
    return [i for i in found if (i["kind"], i["event_ref"], i["share_id"], i["pupil_key"]) not in sent]


def _sent_fields(share: ShareRow, blank: Iterable[str] | None) -> list[str]:
    empty = set(blank or ())
    return [f for f in share.fields if f not in empty]


def _values(conn: Connection, extract_id: str, *, by_key: bool) -> dict[Any, dict[str, Any]]:
    """Records of one extract with their address items, by record number or by pupil key."""
    rows = conn.execute(
        select(
            pupil,
            *(
                c.label(f"a_{c.name}")
                for c in pupil_address.c
                if c.name not in ("extract_id", "record_number")
            ),
        )
        .outerjoin(
            pupil_address,
            (pupil_address.c.extract_id == pupil.c.extract_id)
            & (pupil_address.c.record_number == pupil.c.record_number),
        )
        .where(pupil.c.extract_id == extract_id)
    ).mappings()
    out: dict[Any, dict[str, Any]] = {}
    for row in rows:
        values = {k.removeprefix("a_"): v for k, v in row.items()}
        out[row["pupil_key"] if by_key else row["record_number"]] = values
    return out


def _field_value(values: dict[str, Any], field: str) -> tuple[Any, ...]:
    table, columns = source_columns(field)
    if table == "fsm_period":
        return ()
    return tuple(values.get(c) for c in columns)


def _rectifications(conn: Connection, shares: dict[str, ShareRow]) -> list[Json]:
    rows = conn.execute(
        select(
            disclosures.c.share_id,
            disclosures.c.pupil_key,
            disclosures.c.extract_id,
            disclosures.c.record_number,
            disclosures.c.blank_fields,
            extracts.c.superseded_by,
        )
        .join(extracts, extracts.c.extract_id == disclosures.c.extract_id)
        .where(extracts.c.superseded_by.is_not(None), disclosures.c.share_id.in_(sorted(shares)))
    ).all()
    by_pair: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for row in rows:
        by_pair[(row.extract_id, row.superseded_by)].append(row)
    found: list[Json] = []
    for (old_id, new_id), items in sorted(by_pair.items()):
        old, new = _values(conn, old_id, by_key=False), _values(conn, new_id, by_key=True)
        received = conn.execute(
            select(extracts.c.received_at).where(extracts.c.extract_id == new_id)
        ).scalar_one()
        for row in items:
            share = shares[row.share_id]
            before, after = old.get(row.record_number, {}), new.get(row.pupil_key)
            sent = _sent_fields(share, row.blank_fields)
            changed = (
                sent
                if after is None
                else [f for f in sent if _field_value(before, f) != _field_value(after, f)]
            )
            if changed:
                found.append(_item(RECTIFICATION, new_id, received.date(), share, row.pupil_key, changed))
    return found


def _erasures(conn: Connection, shares: dict[str, ShareRow]) -> list[Json]:
    runs: dict[dt.date, dict[str, set[str]]] = defaultdict(
        lambda: defaultdict(set)
    )  # day -> extract -> columns
    for row in conn.execute(select(erasures)).mappings():
        for extract_id in row["extracts"]:
            runs[row["as_of"]][extract_id].add(f"{row['table_name']}.{row['field']}")
    found: list[Json] = []
    for day, touched in sorted(runs.items()):
        rows = conn.execute(
            select(disclosures).where(
                disclosures.c.extract_id.in_(sorted(touched)), disclosures.c.share_id.in_(sorted(shares))
            )
        ).mappings()
        for row in rows:
            share = shares[row["share_id"]]
            columns = touched[row["extract_id"]]
            fields = [
                f
                for f in _sent_fields(share, row["blank_fields"])
                if any(f"{source_columns(f)[0]}.{c}" in columns for c in source_columns(f)[1])
            ]
            if fields:
                found.append(
                    _item(ERASURE, f"retention-{day.isoformat()}", day, share, row["pupil_key"], fields)
                )
    return found


def _objections(conn: Connection, shares: dict[str, ShareRow]) -> list[Json]:
    decisions = (
        conn.execute(select(consent_decisions).where(consent_decisions.c.decision.in_(_OBJECTING)))
        .mappings()
        .all()
    )
    if not decisions:
        return []
    keys = sorted({d["pupil_key"] for d in decisions})
    disclosed: dict[str, list[Any]] = defaultdict(list)
    for row in conn.execute(
        select(disclosures).where(
            disclosures.c.pupil_key.in_(keys), disclosures.c.share_id.in_(sorted(shares))
        )
    ).mappings():
        disclosed[row["pupil_key"]].append(row)
    found: list[Json] = []
    for decision in decisions:
        for row in disclosed.get(decision["pupil_key"], []):
            share = shares[row["share_id"]]
            delivered = share.delivered_at.date() if share.delivered_at else share.as_of
            if (
                share.lawful_basis in _NO_OBJECTION_BASES
                or not share.purpose
                or not purpose_covers(decision["purpose"], share.purpose)
                or decision["recorded_on"] < delivered
            ):
                continue
            ref = f"{decision['consent_file_id']}:{decision['row_number']}"
            fields = _sent_fields(share, row["blank_fields"])
            found.append(_item(OBJECTION, ref, decision["recorded_on"], share, row["pupil_key"], fields))
    return found


def _item(kind: str, ref: str, day: dt.date, share: ShareRow, key: str, fields: list[str]) -> Json:
    return {
        "kind": kind,
        "event_ref": ref,
        "event_date": day.isoformat(),
        "share_id": share.share_id,
        "recipient": share.recipient or "",
        "pupil_key": key,
        "fields": fields,
    }


def summary(items: list[Json]) -> list[Json]:
    """Per recipient and kind: how many records to notify (no pupil reference)."""
    counts: dict[tuple[str, str], set[tuple[str, str]]] = defaultdict(set)
    for i in items:
        counts[(i["recipient"], i["kind"])].add((i["share_id"], i["pupil_key"]))
    return [{"recipient": r, "kind": k, "records": len(v)} for (r, k), v in sorted(counts.items())]


# --- sending -------------------------------------------------------------------------------------------
def send_notices(settings: Settings, out_dir: Path, *, sent_by: str) -> Json:
    """Write one notice per recipient (``<notice id>_<recipient>.csv`` and ``.pdf``) into ``out_dir``
    and record every item in it as sent. ``{"notices": [{notice_id, recipient, records, csv, pdf,
    sha256}], "items": n}``."""
    items = pending_notices(settings)
    by_recipient: dict[str, list[Json]] = defaultdict(list)
    for item in items:
        by_recipient[item["recipient"]].append(item)
    out_dir.mkdir(parents=True, exist_ok=True)
    shares = {s.share_id: s for s in list_shares(settings)}
    secret = settings.pupil_key_secret_value()
    now = dt.datetime.now(dt.UTC)
    notices: list[Json] = []
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows_in_file = _rows_in_file(conn, {i["share_id"] for i in items})
        sent_upns = _upns_as_sent(conn, secret, shares, items)
    for recipient, mine in sorted(by_recipient.items()):
        notice_id = f"a19_{uuid.uuid4().hex[:20]}"
        lines = []
        for item in sorted(mine, key=lambda i: (i["share_id"], i["kind"], i["event_ref"], i["pupil_key"])):
            share = shares[item["share_id"]]
            lines.append(
                [
                    notice_id,
                    item["kind"],
                    item["event_date"],
                    item["share_id"],
                    share.delivered_at.date().isoformat() if share.delivered_at else "",
                    share.agreement_id,
                    share.file_name or "",
                    rows_in_file[item["share_id"]].get(item["pupil_key"], ""),
                    sent_upns.get((item["share_id"], item["pupil_key"]), ""),
                    "; ".join(item["fields"]),
                    ACTIONS[item["kind"]],
                ]
            )
        from censustrace.compliance.documents import pdf, to_csv

        body = to_csv(CSV_HEADER, lines).encode("utf-8")
        sha = hashlib.sha256(body).hexdigest()
        stem = f"{notice_id}_{_safe(recipient)}"
        csv_path, pdf_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.pdf"
        csv_path.write_bytes(body)
        controller = settings.controller_name or f"Local authority {settings.la}"
        intro = [
            f"From {controller} to {recipient}: notice under UK GDPR Article 19.",
            "Personal data we disclosed to you has since been rectified, erased, or objected to by the "
            "pupil's family. Each record is named by its row in the file you received (and its UPN as "
            "you received it, if you did). Please act on each line as it says.",
            f"Notice {notice_id}; {len(lines)} record(s); CSV sha256 {sha}.",
        ]
        labels = CSV_HEADER[1:]
        pdf_path.write_bytes(
            pdf("Article 19 notice", intro, [("Records", labels, [row[1:] for row in lines])])
        )
        with write_transaction(warehouse_engine(settings.warehouse_db_url)) as conn:
            record_notices(conn, mine, notice_id=notice_id, notice_sha256=sha, sent_at=now, sent_by=sent_by)
        # ...and in the chained access log, one row per pupil told about (by pupil key), so that a
        # notice's record cannot be dropped without `audit verify` noticing.
        from censustrace.audit.log import Actor, record

        record(
            settings,
            Actor(sent_by[:64], "-", "cli"),
            "article19",
            f"notice {notice_id} to {recipient} (csv sha256 {sha})",
            pupil_keys=[i["pupil_key"] for i in mine],
        )
        notices.append(
            {
                "notice_id": notice_id,
                "recipient": recipient,
                "records": len(lines),
                "kinds": sorted({i["kind"] for i in mine}),
                "csv": str(csv_path),
                "pdf": str(pdf_path),
                "sha256": sha,
            }
        )
    return {"notices": notices, "items": len(items)}


def record_notices(
    conn: Connection,
    items: list[Json],
    *,
    notice_id: str,
    notice_sha256: str,
    sent_at: dt.datetime,
    sent_by: str,
) -> None:
    """Record that ``items`` were sent in notice ``notice_id`` (one row each; the record a chained audit
    log covers). Must run in the caller's write transaction."""
    conn.execute(
        insert(article19_notices),
        [
            {
                "kind": i["kind"],
                "event_ref": i["event_ref"],
                "share_id": i["share_id"],
                "recipient": i["recipient"],
                "pupil_key": i["pupil_key"],
                "fields": list(i["fields"]),
                "event_date": dt.date.fromisoformat(i["event_date"]),
                "notice_id": notice_id,
                "notice_sha256": notice_sha256,
                "sent_at": sent_at,
                "sent_by": sent_by[:200],
            }
            for i in items
        ],
    )


def notices_of(settings: Settings, keys: Iterable[str]) -> list[Json]:
    """Notices sent about these pupil keys (for subject access: who was told, when)."""
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(article19_notices)
            .where(article19_notices.c.pupil_key.in_(sorted(set(keys))))
            .order_by(article19_notices.c.id)
        ).mappings()
        return [
            {
                "notice_id": r["notice_id"],
                "kind": r["kind"],
                "recipient": r["recipient"],
                "share_id": r["share_id"],
                "fields": list(r["fields"]),
                "sent_at": r["sent_at"].isoformat(),
            }
            for r in rows
        ]


def _rows_in_file(conn: Connection, share_ids: set[str]) -> dict[str, dict[str, int]]:
    """share id -> pupil key -> data row in the file (rows are written in pupil-key order)."""
    found: dict[str, dict[str, int]] = {}
    for share_id in sorted(share_ids):
        keys = conn.execute(
            select(disclosures.c.pupil_key)
            .where(disclosures.c.share_id == share_id)
            .order_by(disclosures.c.pupil_key)
        ).scalars()
        found[share_id] = {str(k): n for n, k in enumerate(keys, start=1)}
    return found


def _upns_as_sent(
    conn: Connection, secret: bytes, shares: dict[str, ShareRow], items: list[Json]
) -> dict[tuple[str, str], str]:
    """(share id, pupil key) -> the UPN as the recipient received it (plain or pseudonymised)."""
    found: dict[tuple[str, str], str] = {}
    wanted = {
        (i["share_id"], i["pupil_key"])
        for i in items
        if "upn" in i["fields"] or "upn" in shares[i["share_id"]].fields
    }
    for share_id, key in sorted(wanted):
        share = shares[share_id]
        if "upn" not in share.fields:
            continue
        upn = conn.execute(
            select(pupil.c.upn)
            .join(
                disclosures,
                (disclosures.c.extract_id == pupil.c.extract_id)
                & (disclosures.c.record_number == pupil.c.record_number),
            )
            .where(disclosures.c.share_id == share_id, disclosures.c.pupil_key == key)
        ).scalar_one_or_none()
        if upn is None:
            continue
        convert = transformer(
            "upn", share.transforms.get("upn", "none"), pseudonym_key(secret, share.agreement_id)
        )
        found[(share_id, key)] = convert(upn) if share.transforms.get("upn", "none") != "none" else text(upn)
    return found


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:60] or "recipient"


__all__ = ["notices_of", "pending_notices", "record_notices", "send_notices", "summary"]
