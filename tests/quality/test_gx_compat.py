"""The GX compatibility memo: applied on the GX versions it was verified on, skipped on any other."""

from __future__ import annotations

import logging

import great_expectations as gx
import pytest
from great_expectations.expectations.expectation import Expectation

from censustrace.quality import gx_compat


@pytest.mark.parametrize(
    ("version", "applies"),
    [
        ("1.24.0", True),
        ("1.24.1", True),
        ("1.24.10rc1", True),
        ("1.23.4", False),
        ("1.25.0", False),
        ("2.24.0", False),
        ("1.2", False),
        ("", False),
        ("dev", False),
    ],
)
def test_the_memo_applies_to_verified_versions_only(version: str, applies: bool) -> None:
    assert gx_compat.memo_applies(version) is applies


def test_installed_gx_is_patched_within_the_block_and_put_back() -> None:
    assert gx_compat.memo_applies(gx.__version__)  # pyproject pins the verified release
    before = Expectation.__dict__["configuration"]
    with gx_compat.configurations_memoised():
        assert Expectation.__dict__["configuration"] is not before
    assert Expectation.__dict__["configuration"] is before


def test_an_unverified_gx_is_left_as_shipped_with_a_coded_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(gx, "__version__", "1.99.0")
    before = Expectation.__dict__["configuration"]
    with caplog.at_level(logging.WARNING, logger=gx_compat.__name__):
        with gx_compat.configurations_memoised():
            assert Expectation.__dict__["configuration"] is before
        with gx_compat.configurations_memoised():
            pass
    assert Expectation.__dict__["configuration"] is before
    warnings = [r.getMessage() for r in caplog.records if r.name == gx_compat.__name__]
    assert len(warnings) == 1  # once per version, not per validation
    assert warnings[0].startswith(f"{gx_compat.SKIPPED}: great_expectations 1.99.0 ")
