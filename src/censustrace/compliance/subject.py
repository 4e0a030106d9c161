"""Subject access that finds the child and answers fully (UK GDPR Art 15).

A family may hold the pupil's current UPN, a former (often temporary) one, or only a name and date of
birth. Every identifier is turned into pupil keys at once and never logged or stored:

* a UPN: its own key, the keys of records that name it as their former UPN, and the keys of the former
  UPNs of those records (shares made before the UPN changed were keyed by the old one);
* a name and date of birth (compliance staff only): the records whose date of birth and forename match
  and whose legal, preferred or former surname matches (case and spacing ignored), then as for a UPN.

The answer gives the data held (each census record with its values and the received file it came from,
and whether that file has since been erased), every delivered share (recipient, fields sent, agreement,
purpose, lawful basis, gateway, retention and source file), the latest recorded decisions and the
Article 19 notices sent about the pupil. Each pupil found is recorded in ``subject_lookups`` by pupil
key ("who looked this pupil up").
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, func, insert, or_, select

from censustrace.census.identifiers import is_valid_upn
from censustrace.compliance.erasure import tombstones_of
from censustrace.compliance.tables import article19_notices, subject_lookups
from censustrace.config import Settings
from censustrace.consent.objections import latest_decisions
from censustrace.errors import CensustraceError
from censustrace.intake.stage import pupil_key
from censustrace.shares.disclosures import shares_of_keys
from censustrace.warehouse.db import warehouse_engine, write_transaction
from censustrace.warehouse.tables import extracts, pupil, pupil_address

UPN: Final = "upn"
FORMER_UPN: Final = "former_upn"
NAME_DOB: Final = "name_dob"
_HIDDEN: Final = ("extract_id", "record_number", "pupil_key")


class LookupRejected(CensustraceError):
    """The identifiers given cannot be looked up (named by field, never by value)."""

    code = "CT-SUBJECT-INPUT"


@dataclass(frozen=True, slots=True)
class NameDob:
    surname: str
    forename: str
    dob: dt.date

    @classmethod
    def parse(cls, surname: str, forename: str, dob: str) -> NameDob:
        if not surname.strip():
            raise LookupRejected("surname is empty")
        if not forename.strip():
            raise LookupRejected("forename is empty")
        try:
            day = dt.date.fromisoformat(dob.strip())
        except ValueError:
            raise LookupRejected("date of birth is not a YYYY-MM-DD date") from None
        return cls(surname, forename, day)


def _norm(text: str) -> str:
    return " ".join(text.split()).lower()


def _with_former(conn: Connection, secret: bytes, keys: set[str]) -> set[str]:
    """``keys`` plus the keys of the former UPNs their records name (one step is enough: a former UPN's
    own records are keyed by it already)."""
    if not keys:
        return keys
    former = conn.execute(
        select(pupil.c.former_upn)
        .where(pupil.c.pupil_key.in_(sorted(keys)), pupil.c.former_upn.is_not(None))
        .distinct()
    ).scalars()
    return keys | {pupil_key(secret, str(upn).strip().upper()) for upn in former if str(upn).strip()}


def keys_for_upn(conn: Connection, secret: bytes, upn: str) -> tuple[set[str], str]:
    """The pupil keys a UPN leads to, and how it matched (``upn`` or ``former_upn``)."""
    text = "".join(upn.split()).upper()
    own = pupil_key(secret, text)
    current = conn.execute(select(pupil.c.pupil_key).where(pupil.c.pupil_key == own).limit(1)).first()
    later = set(
        conn.execute(select(pupil.c.pupil_key).where(pupil.c.former_upn == text).distinct()).scalars()
    )
    keys = _with_former(conn, secret, {own} | {str(k) for k in later if k})
    return keys, UPN if current is not None or not later else FORMER_UPN


def keys_for_name(conn: Connection, secret: bytes, who: NameDob) -> list[set[str]]:
    """One set of pupil keys per child whose name and date of birth match."""
    surname, forename = _norm(who.surname), _norm(who.forename)
    rows = conn.execute(
        select(pupil.c.pupil_key)
        .where(
            pupil.c.dob == who.dob,
            func.lower(pupil.c.forename) == forename,
            or_(
                func.lower(pupil.c.surname) == surname,
                func.lower(pupil.c.preferred_surname) == surname,
                func.lower(pupil.c.former_surname) == surname,
            ),
            pupil.c.pupil_key.is_not(None),
        )
        .distinct()
    ).scalars()
    children: list[set[str]] = []
    for key in sorted(str(k) for k in rows):
        found = _with_former(conn, secret, {key})
        merged = next((c for c in children if c & found), None)
        if merged is None:
            children.append(found)
        else:
            merged |= found
    return children


def data_held(conn: Connection, keys: Iterable[str], *, values: bool = True) -> list[dict[str, Any]]:
    """Every warehouse record of the pupil with the fields it holds (and, with ``values``, their values:
    the copy for the family) and its source file, oldest census first."""
    keys = sorted(set(keys))
    rows = (
        conn.execute(
            select(
                pupil,
                *(c.label(f"address_{c.name}") for c in pupil_address.c if c.name not in _HIDDEN),
                extracts.c.original_name,
                extracts.c.sha256,
                extracts.c.received_at,
                extracts.c.superseded_by,
            )
            .join(extracts, extracts.c.extract_id == pupil.c.extract_id)
            .outerjoin(
                pupil_address,
                (pupil_address.c.extract_id == pupil.c.extract_id)
                & (pupil_address.c.record_number == pupil.c.record_number),
            )
            .where(pupil.c.pupil_key.in_(keys))
            .order_by(pupil.c.reference_date, pupil.c.extract_id, pupil.c.record_number)
        )
        .mappings()
        .all()
        if keys
        else []
    )
    erased = tombstones_of(conn, [str(r["sha256"]) for r in rows])
    held = []
    for row in rows:
        record = {
            name: _plain(value)
            for name, value in row.items()
            if name not in _HIDDEN and name not in ("original_name", "sha256", "received_at", "superseded_by")
        }
        held.append(
            {
                "census": f"{row['census_term']} {row['census_year']}",
                "current": row["superseded_by"] is None,
                "fields_held": sorted(k for k, v in record.items() if v not in (None, "")),
                **({"values": record} if values else {}),
                "source": {
                    "file": row["original_name"],
                    "sha256": row["sha256"],
                    "extract_id": row["extract_id"],
                    "record": row["record_number"],
                    "received_at": row["received_at"].isoformat() if row["received_at"] else None,
                    "erased": [e for e in erased.get(str(row["sha256"]), []) if e["copy"] == "archive"],
                },
            }
        )
    return held


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, dt.date) else value


def answer(conn: Connection, keys: set[str], *, values: bool = True) -> dict[str, Any]:
    """The full answer for one child (its pupil keys stay out of it)."""
    found = shares_of_keys(conn, keys)
    shares = sorted(
        (s for key in keys for s in found.get(key, [])), key=lambda s: (s["date"] or "", s["share_id"])
    )
    decisions = [d for key in sorted(keys) for d in latest_decisions(conn, key)]
    return {
        "data": data_held(conn, keys, values=values),
        "shares": shares,
        "decisions": decisions,
        "notices": _notices(conn, keys),
    }


def _notices(conn: Connection, keys: set[str]) -> list[dict[str, Any]]:
    """Recipients told of a rectification, erasure or objection about this pupil (Art 19: the person
    may ask who they were)."""
    rows = conn.execute(
        select(article19_notices)
        .where(article19_notices.c.pupil_key.in_(sorted(keys)))
        .order_by(article19_notices.c.id)
    ).mappings()
    return [
        {
            "kind": r["kind"],
            "recipient": r["recipient"],
            "share_id": r["share_id"],
            "fields": list(r["fields"]),
            "notice_id": r["notice_id"],
            "sent_at": r["sent_at"].isoformat(),
        }
        for r in rows
    ]


def record_lookup(
    settings: Settings, keys: Iterable[str], *, method: str, user: str, via: str, shares: int
) -> None:
    """One ``subject_lookups`` row per pupil key found (no identifier is stored)."""
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "at": now,
            "user_name": user[:64],
            "via": via[:8],
            "method": method,
            "pupil_key": k,
            "shares": shares,
        }
        for k in sorted(set(keys))
    ]
    if rows:
        with write_transaction(warehouse_engine(settings.warehouse_db_url)) as conn:
            conn.execute(insert(subject_lookups), rows)


def lookups_of(settings: Settings, keys: Iterable[str]) -> list[dict[str, Any]]:
    """Who looked these pupil keys up, when and how (for compliance staff)."""
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        rows = conn.execute(
            select(subject_lookups)
            .where(subject_lookups.c.pupil_key.in_(sorted(set(keys))))
            .order_by(subject_lookups.c.id)
        ).mappings()
        return [
            {"at": r["at"].isoformat(), "user": r["user_name"], "via": r["via"], "method": r["method"]}
            for r in rows
        ]


def look_up_upns(
    settings: Settings,
    lines: Iterable[str],
    *,
    user: str | None = None,
    via: str = "cli",
    values: bool = True,
) -> dict[str, Any]:
    """``{"requests": [{"line", "upn_format_valid", "matched_by", "data", "shares", "decisions"}]}``:
    one entry per non-empty line, by its line number (the UPN is never echoed)."""
    secret = settings.pupil_key_secret_value()
    who = user or _os_user()
    out = []
    found_keys: list[tuple[set[str], str, int]] = []
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        for number, text in enumerate(lines, start=1):
            upn = "".join(text.split()).upper()
            if not upn:
                continue
            keys, method = keys_for_upn(conn, secret, upn)
            result = answer(conn, keys, values=values)
            found = bool(result["data"] or result["shares"] or result["decisions"])
            if found:
                found_keys.append((_held(conn, keys), method, len(result["shares"])))
            out.append(
                {
                    "line": number,
                    "upn_format_valid": is_valid_upn(upn),
                    "matched_by": method if found else None,
                    **result,
                }
            )
    for keys, method, count in found_keys:
        record_lookup(settings, keys, method=method, user=who, via=via, shares=count)
    return {"requests": out}


def subject_access(lines: Iterable[str], settings: Settings) -> dict[str, Any]:
    """``{"requests": [{"line", "upn_format_valid", "matched_by", "data", "shares", "decisions",
    "notices"}]}``: one entry per non-empty input line, in input order; ``shares`` oldest first. A
    current or former UPN finds the pupil (``look_up_upns``, which records the lookup by pupil key);
    values held are not included."""
    return look_up_upns(settings, lines, values=False)


def look_up_name(
    settings: Settings, who: NameDob, *, user: str | None = None, via: str = "cli", values: bool = True
) -> dict[str, Any]:
    """``{"pupils": [answer, ...]}``: one answer per child whose name and date of birth match."""
    secret = settings.pupil_key_secret_value()
    by = user or _os_user()
    pupils = []
    found: list[tuple[set[str], int]] = []
    with warehouse_engine(settings.warehouse_db_url).connect() as conn:
        for keys in keys_for_name(conn, secret, who):
            result = answer(conn, keys, values=values)
            found.append((_held(conn, keys), len(result["shares"])))
            pupils.append({"matched_by": NAME_DOB, **result})
    for keys, count in found:
        record_lookup(settings, keys, method=NAME_DOB, user=by, via=via, shares=count)
    return {"pupils": pupils}


def _held(conn: Connection, keys: set[str]) -> set[str]:
    """The keys that have a census record: the ones a lookup is recorded under (``rekey`` maps keys
    through the census records, so a key of a former UPN alone could not follow a new secret)."""
    return set(
        conn.execute(
            select(pupil.c.pupil_key).where(pupil.c.pupil_key.in_(sorted(keys))).distinct()
        ).scalars()
    )


def _os_user() -> str:
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


__all__ = [
    "FORMER_UPN",
    "NAME_DOB",
    "UPN",
    "LookupRejected",
    "NameDob",
    "answer",
    "data_held",
    "keys_for_name",
    "keys_for_upn",
    "look_up_name",
    "look_up_upns",
    "lookups_of",
    "record_lookup",
    "subject_access",
]
