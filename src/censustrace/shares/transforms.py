"""What an agreement's transforms do to one value and how refused codes are kept out (CSV cells that a
spreadsheet cannot run: ``censustrace.csvsafe``).

Every value becomes text: ``None`` is the empty cell, dates are ``YYYY-MM-DD``, booleans ``true`` /
``false``, code lists ``;``-joined in file order (as the warehouse keeps them).

| transform | applies to | result |
| --- | --- | --- |
| ``none`` | any field | the value as it is |
| ``pseudonymise`` | any field | HMAC-SHA256 (hex) with this agreement's own key (see below) |
| ``year_month`` | dates | ``YYYY-MM`` |
| ``year`` | dates | ``YYYY`` |
| ``district`` | postcode | the outward code (``AB1 2CD`` -> ``AB1``) |
| ``sector`` | postcode | outward code and the inward code's first digit (``AB1 2``) |

The pseudonymisation key is derived from the instance secret and the agreement id: the same pupil gets
the same pseudonym in every share under one agreement and unrelated ones under two agreements, and the
pupil key itself is never sent.
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Callable
from typing import Any, Final

from censustrace.shares.errors import FIELD, ShareError

TRANSFORMS: Final = ("none", "pseudonymise", "year_month", "year", "district", "sector")

Transform = Callable[[Any], str]


def text(value: Any) -> str:
    """A warehouse value as outbound text (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def pseudonym_key(secret: bytes, agreement_id: str) -> bytes:
    """The pseudonymisation key of one agreement: a keyed HMAC of its id with the instance secret."""
    return hmac.digest(secret, b"censustrace-share-pseudonym\x1f" + agreement_id.encode(), "sha256")


def transformer(field: str, transform: str, key: bytes) -> Transform:
    """The function applying ``transform`` to values of ``field`` (CT-SHARE-FIELD if it cannot)."""
    if transform == "none":
        return text
    if transform == "pseudonymise":

        def pseudonymise(value: Any) -> str:
            plain = value if value.__class__ is str else text(value)  # str: the common case, no tests
            return hmac.digest(key, plain.encode(), "sha256").hex() if plain else ""

        return pseudonymise
    if transform in ("year_month", "year"):
        width = 7 if transform == "year_month" else 4

        def coarsen(value: Any) -> str:
            if value is None:
                return ""
            if not isinstance(value, dt.date):
                raise ShareError(f"field {field}: transform {transform} needs a date", code=FIELD)
            return value.isoformat()[:width]

        return coarsen
    if transform in ("district", "sector"):
        keep_sector = transform == "sector"

        def postcode_part(value: Any) -> str:
            return postcode_area(value if value.__class__ is str else text(value), sector=keep_sector)

        return postcode_part
    raise ShareError(f"field {field}: unknown transform {transform!r}", code=FIELD)


def postcode_area(postcode: str, *, sector: bool) -> str:
    """The outward code of a UK postcode (``sector``: plus the inward code's digit); "" if malformed.

    The inward code is always a digit and two letters, so a postcode written without its space still
    splits (``AB12CD`` -> ``AB1``)."""
    compact = "".join(postcode.upper().split())  # every whitespace run removed
    if len(compact) < 5 or not compact[-3].isdigit() or not compact[-2:].isalpha():
        return ""
    outward, inward = compact[:-3], compact[-3:]
    return f"{outward} {inward[0]}" if sector else outward


def suppress(value: Any, refused: frozenset[str]) -> tuple[Any, bool]:
    """``value`` with refused and not-obtained codes removed (a code list keeps its other codes), and
    whether anything was removed. Such codes record a family's decision or a gap, not data to send."""
    if not refused or not isinstance(value, str):
        return value, False
    if value in refused:
        return None, True
    if ";" in value:
        codes = value.split(";")
        kept = [code for code in codes if code not in refused]
        if len(kept) != len(codes):
            return (";".join(kept) or None), True
    return value, False


__all__ = ["TRANSFORMS", "postcode_area", "pseudonym_key", "suppress", "text", "transformer"]
