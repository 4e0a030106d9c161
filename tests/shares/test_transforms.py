"""Transforms, refused-code suppression and formula-safe cells, value by value (no database)."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest

from censustrace.consent.policy_model import TRANSFORMS as POLICY_TRANSFORMS
from censustrace.csvsafe import safe_cell
from censustrace.shares.errors import ShareError
from censustrace.shares.transforms import (
    TRANSFORMS,
    postcode_area,
    pseudonym_key,
    suppress,
    text,
    transformer,
)

KEY = pseudonym_key(b"secret", "agreement-a")


def test_every_policy_transform_is_implemented() -> None:
    assert set(POLICY_TRANSFORMS) <= set(TRANSFORMS)
    for name in POLICY_TRANSFORMS:
        transformer("dob" if name.startswith("year") else "postcode", name, KEY)


@pytest.mark.parametrize(
    ("transform", "value", "expected"),
    [
        ("none", dt.date(2016, 2, 29), "2016-02-29"),
        ("none", None, ""),
        ("none", True, "true"),
        ("none", "K", "K"),
        ("year_month", dt.date(2016, 2, 29), "2016-02"),
        ("year", dt.date(2016, 2, 29), "2016"),
        ("year", None, ""),
        ("district", "SW1A 1AA", "SW1A"),
        ("district", "b29 6xx", "B29"),
        ("district", "B296XX", "B29"),
        ("sector", "SW1A 1AA", "SW1A 1"),
        ("sector", "M1 1AE", "M1 1"),
        ("district", "not a postcode", ""),
        ("district", None, ""),
    ],
)
def test_transforms(transform: str, value: object, expected: str) -> None:
    assert transformer("field", transform, KEY)(value) == expected


def test_pseudonyms_are_stable_per_agreement_and_differ_between_agreements() -> None:
    first = transformer("upn", "pseudonymise", KEY)
    other = transformer("upn", "pseudonymise", pseudonym_key(b"secret", "agreement-b"))
    assert first("A330200015001") == first("A330200015001")
    assert first("A330200015001") != other("A330200015001")
    assert len(first("A330200015001")) == 64
    assert first(None) == ""


def test_a_date_transform_on_text_is_refused() -> None:
    with pytest.raises(ShareError, match="needs a date") as caught:
        transformer("surname", "year", KEY)("Testington")
    assert caught.value.code == "CT-SHARE-FIELD"
    with pytest.raises(ShareError, match="unknown transform"):
        transformer("dob", "shuffle", KEY)


def test_refused_codes_are_removed_and_counted() -> None:
    refused = frozenset({"REFU", "NOBT"})
    assert suppress("REFU", refused) == (None, True)
    assert suppress("WBRI", refused) == ("WBRI", False)
    assert suppress("REF;GBR;NYO", frozenset({"REF", "NYO"})) == ("GBR", True)
    assert suppress("REF;NYO", frozenset({"REF", "NYO"})) == (None, True)
    assert suppress(None, refused) == (None, False)
    assert suppress("REFU", frozenset()) == ("REFU", False)


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("x")'])
def test_formula_cells_are_made_text(cell: str) -> None:
    safe = safe_cell(cell)
    assert safe == "'" + cell
    buffer = io.StringIO()
    csv.writer(buffer).writerow([safe])
    (read,) = csv.reader(io.StringIO(buffer.getvalue()))
    assert read == [safe]
    assert not read[0].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_ordinary_cells_are_unchanged() -> None:
    for cell in ("Testington", "2016-02", "O'Sample", "", "a=b"):
        assert safe_cell(cell) == cell
    assert text(dt.date(2020, 1, 2)) == "2020-01-02"
    assert postcode_area("  sw1a   1aa ", sector=True) == "SW1A 1"
