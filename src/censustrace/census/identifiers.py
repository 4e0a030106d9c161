"""Pupil identifiers: the UPN (Unique Pupil Number) and the ULN (Unique Learner Number).

UPN (13 characters)::

    C LLL EEEE YY SSS      permanent: check letter, LA, establishment, allocation year, 3-digit serial
    C LLL EEEE YY SS T     temporary: ... 2-digit serial and a trailing letter T

The check letter is ``TABLE[sum(weight * value) mod 23]`` over characters 2-13 with weights 2..13,
where ``TABLE = "ABCDEFGHJKLMNPQRTUVWXYZ"`` (I, O and S are never used). A digit's value is the digit.

Assumption (documented by schools' MIS vendors, not in the brief): the trailing letter of a temporary
UPN is valued by its index in that same 23-letter table (A=0, B=1, ... H=7, J=8, ... Z=22). So the
letter must itself come from the table; ``...01I`` is not a UPN. Example: the widely used temporary
UPN ``X00180001701A`` gives 4+40+9+70+12+0 = 135, 135 mod 23 = 20, ``TABLE[20]`` = X.

The LA part is not checked against a list of real LAs: temporary UPNs may carry pseudo-LA codes
(001-005) and the generator uses LAs from the command line. python-stdnum's ``stdnum.gb.upn`` rejects
unknown LAs, so it agrees with this module only for permanent UPNs with a known LA.

ULN (10 digits, first non-zero): digits 1-10 weighted 10, 9, ..., 1; the weighted sum mod 11 must be
10. A 9-digit prefix whose weighted sum is 0 mod 11 would need a check "digit" of 10, so no ULN
starts with it: :func:`make_uln` returns None for those.

Validators take the value exactly as stored: upper case, no spaces. Normalising input is a reader's
decision, made where the file format is known.
"""

from __future__ import annotations

UPN_CHECK_TABLE = "ABCDEFGHJKLMNPQRTUVWXYZ"
_LETTER_VALUE = {letter: value for value, letter in enumerate(UPN_CHECK_TABLE)}
_VALUE = {**{str(digit): digit for digit in range(10)}, **_LETTER_VALUE}


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _is_upn_body(body: str) -> bool:
    """Characters 2-13: eleven digits, then a digit or a check-table letter."""
    return len(body) == 12 and _is_digits(body[:11]) and body[11] in _VALUE


def upn_check_letter(body: str) -> str:
    """The check letter (character 1) for ``body``, characters 2-13 of a permanent or temporary UPN.

    Raises ValueError when ``body`` is not 11 digits followed by a digit or a check-table letter.
    """
    if not _is_upn_body(body):
        raise ValueError("UPN body must be 11 digits then a digit or one of " + UPN_CHECK_TABLE)
    total = sum(weight * _VALUE[char] for weight, char in enumerate(body, start=2))
    return UPN_CHECK_TABLE[total % 23]


def is_valid_upn(upn: str) -> bool:
    """True for a well-formed permanent or temporary UPN with the right check letter."""
    if len(upn) != 13 or not _is_upn_body(upn[1:]):
        return False
    return upn[0] == upn_check_letter(upn[1:])


def is_temporary_upn(upn: str) -> bool:
    """True for a valid UPN whose last character is a letter."""
    return is_valid_upn(upn) and upn[12] in _LETTER_VALUE


def _digits(value: int | str, width: int, name: str) -> str:
    text = str(value).zfill(width) if isinstance(value, int) else value
    if len(text) != width or not _is_digits(text):
        raise ValueError(f"{name} must be {width} digits")
    return text


def make_upn(la: int | str, estab: int | str, year2: int | str, serial: int | str) -> str:
    """A permanent UPN: LA (3 digits), establishment (4), allocation year (2), serial (3).

    Integers are zero-padded: ``make_upn(801, 2000, 5, 1)`` is ``"B801200005001"``.
    """
    body = _digits(la, 3, "la") + _digits(estab, 4, "estab") + _digits(year2, 2, "year2")
    body += _digits(serial, 3, "serial")
    return upn_check_letter(body) + body


def make_temporary_upn(
    la: int | str, estab: int | str, year2: int | str, serial: int | str, letter: str
) -> str:
    """A temporary UPN: as :func:`make_upn` but a 2-digit serial and a trailing check-table letter."""
    if len(letter) != 1 or letter not in _LETTER_VALUE:
        raise ValueError("temporary UPN letter must be one of " + UPN_CHECK_TABLE)
    body = _digits(la, 3, "la") + _digits(estab, 4, "estab") + _digits(year2, 2, "year2")
    body += _digits(serial, 2, "serial") + letter
    return upn_check_letter(body) + body


def _uln_sum(digits: str) -> int:
    return sum(weight * _VALUE[c] for weight, c in zip(range(10, 0, -1), digits, strict=False))


def is_valid_uln(uln: str) -> bool:
    """True for 10 digits, first non-zero, whose weighted sum (10..1) is 10 mod 11."""
    if len(uln) != 10 or uln[0] == "0" or not _is_digits(uln):
        return False
    return _uln_sum(uln) % 11 == 10


def uln_check_digit(nine_digits: str) -> str | None:
    """The 10th digit completing ``nine_digits``, or None when the prefix has no valid check digit."""
    if len(nine_digits) != 9 or nine_digits[0] == "0" or not _is_digits(nine_digits):
        raise ValueError("ULN prefix must be 9 digits, the first non-zero")
    check = (10 - _uln_sum(nine_digits)) % 11
    return None if check == 10 else str(check)


def make_uln(nine_digits: str) -> str | None:
    """A ULN from a 9-digit prefix, or None when no check digit makes the prefix valid (1 in 11)."""
    check = uln_check_digit(nine_digits)
    return None if check is None else nine_digits + check
