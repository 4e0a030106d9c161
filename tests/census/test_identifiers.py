"""UPN and ULN rules from the domain brief, and agreement with python-stdnum where it applies."""

from __future__ import annotations

import random

import pytest
from stdnum.gb import upn as stdnum_upn

from censustrace.census.identifiers import (
    UPN_CHECK_TABLE,
    is_temporary_upn,
    is_valid_uln,
    is_valid_upn,
    make_temporary_upn,
    make_uln,
    make_upn,
    uln_check_digit,
    upn_check_letter,
)


@pytest.mark.parametrize(
    ("upn", "valid"),
    [
        ("B801200005001", True),
        ("P207000016049", True),  # sum 266 -> 13 -> P
        ("Q207000016049", False),  # the widely copied vendor example that says 267 -> Q
        ("B207000016049", False),
        ("A801200005001", False),
        ("X00180001701A", True),  # temporary, pseudo-LA 001: 135 -> 20 -> X
        ("Y00180001701A", False),
        ("b801200005001", False),  # lower case is not stored form
        ("B80120000500", False),  # too short
        ("B8012000050011", False),  # too long
        ("B80120000A001", False),  # letter in the middle
        ("I801200005001", False),  # I is never a check letter
        ("B801200005001 ", False),  # no trimming
    ],
)
def test_upn_vectors(upn: str, valid: bool) -> None:
    assert is_valid_upn(upn) is valid


def test_check_letter_of_the_brief_example_sums_to_266() -> None:
    body = "207000016049"
    assert sum(w * int(c) for w, c in zip(range(2, 14), body, strict=True)) == 266
    assert upn_check_letter(body) == "P"


@pytest.mark.parametrize("letter", ["I", "O", "S"])
def test_temporary_upn_letter_must_come_from_the_check_table(letter: str) -> None:
    body = "00180001701" + letter
    with pytest.raises(ValueError, match="UPN body"):
        upn_check_letter(body)
    assert not any(is_valid_upn(c + body) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with pytest.raises(ValueError, match="letter"):
        make_temporary_upn("001", "8000", 17, 1, letter)


def test_trailing_letter_is_valued_by_its_table_index() -> None:
    # Moving the trailing letter one place along the table adds weight 13 to the sum.
    for value, letter in enumerate(UPN_CHECK_TABLE):
        upn = make_temporary_upn("330", "2001", 26, 7, letter)
        base = make_temporary_upn("330", "2001", 26, 7, "A")
        assert UPN_CHECK_TABLE.index(upn[0]) == (UPN_CHECK_TABLE.index(base[0]) + 13 * value) % 23
        assert is_temporary_upn(upn)


def test_make_upn_pads_and_validates() -> None:
    assert make_upn(801, 2000, 5, 1) == "B801200005001"
    assert make_upn("801", "2000", "05", "001") == "B801200005001"
    assert not is_temporary_upn("B801200005001")
    with pytest.raises(ValueError, match="la"):
        make_upn(8011, 2000, 5, 1)
    with pytest.raises(ValueError, match="serial"):
        make_upn(801, 2000, 5, 1000)
    with pytest.raises(ValueError, match="serial"):
        make_temporary_upn(801, 2000, 5, 100, "A")


def test_one_changed_character_is_always_caught() -> None:
    rng = random.Random(1)
    for _ in range(200):
        upn = make_upn(
            rng.randint(100, 999), rng.randint(1000, 9999), rng.randint(0, 99), rng.randint(0, 999)
        )
        position = rng.randrange(1, 13)
        replacement = str((int(upn[position]) + rng.randint(1, 9)) % 10)
        assert not is_valid_upn(upn[:position] + replacement + upn[position + 1 :])


def test_agrees_with_stdnum_for_permanent_upns_with_known_las() -> None:
    rng = random.Random(2)
    known_las = [201, 330, 331, 801, 886, 938]
    for _ in range(1000):
        la, estab = rng.choice(known_las), rng.randint(0, 9999)
        body = f"{la:03d}{estab:04d}{rng.randint(0, 99):02d}{rng.randint(0, 999):03d}"
        assert upn_check_letter(body) == stdnum_upn.calc_check_digit(body)
        good = upn_check_letter(body) + body
        assert is_valid_upn(good)
        assert stdnum_upn.is_valid(good)
        bad = UPN_CHECK_TABLE[(UPN_CHECK_TABLE.index(good[0]) + 1) % 23] + body
        assert not is_valid_upn(bad)
        assert not stdnum_upn.is_valid(bad)


def test_stdnum_rejects_pseudo_la_temporary_upns_that_we_accept() -> None:
    # Documented difference: stdnum checks the LA against its list.
    assert is_valid_upn("X00180001701A")
    assert not stdnum_upn.is_valid("X00180001701A")
    for letter in UPN_CHECK_TABLE:
        body = "33020012601" + letter
        assert upn_check_letter(body) == stdnum_upn.calc_check_digit(body)


def test_uln_vector() -> None:
    assert is_valid_uln("9276308686")
    assert sum(w * int(c) for w, c in zip(range(10, 0, -1), "9276308686", strict=True)) == 296
    assert make_uln("927630868") == "9276308686"
    for bad in ("9276308687", "0276308686", "927630868", "92763086860", "92763086a6", "９２７６３０８６８６"):
        assert not is_valid_uln(bad), bad


def test_some_uln_prefixes_have_no_check_digit() -> None:
    rng = random.Random(3)
    none_count = 0
    for _ in range(2200):
        prefix = str(rng.randint(100_000_000, 999_999_999))
        uln = make_uln(prefix)
        if uln is None:
            none_count += 1
            assert uln_check_digit(prefix) is None
            assert not any(is_valid_uln(prefix + str(d)) for d in range(10))
        else:
            assert is_valid_uln(uln)
            assert uln.startswith(prefix)
    assert 100 < none_count < 300  # about 1 in 11


def test_uln_prefix_must_be_nine_digits() -> None:
    for bad in ("12345678", "1234567890", "023456789", "12345678x"):
        with pytest.raises(ValueError, match="ULN prefix"):
            make_uln(bad)
