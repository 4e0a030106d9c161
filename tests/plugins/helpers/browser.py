"""Browser-test helpers: Debian's chromium (never downloaded) and logging in through the login page."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.plugins.helpers.viewer import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path(os.environ.get("CENSUSTRACE_TEST_CHROMIUM", "/usr/bin/chromium"))


def require_chromium() -> None:
    """Skip the calling test module when chromium is missing (fail instead when ``CI=true``)."""
    if not CHROMIUM.is_file():
        reason = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason}; CI=true: the browser tests must run", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


def log_in(page: Page, name: str, password: str = PASSWORD) -> None:
    from playwright.sync_api import expect

    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F"))
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
