"""Real browser tests: Playwright driving Debian's chromium (headless, never downloaded) against the
viewer served by uvicorn over a home filled by the real pipeline code. Screenshots are kept under
``test-artifacts/viewer/`` (git-ignored)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from censustrace.viewer import auth
from tests.plugins.helpers.browser import CHROMIUM, log_in, require_chromium
from tests.plugins.helpers.viewer import ARTIFACTS, PASSWORD, Server, loaded_pupil_table

pytestmark = pytest.mark.browser
require_chromium()

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where chromium's sandbox cannot start.
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: Server, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    new_page = context.new_page()
    yield new_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    new_page.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def test_log_in_and_see_the_overview(page: Page) -> None:
    log_in(page, "clara")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator(".who")).to_contain_text("clara (compliance)")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ct_session"]["httpOnly"]
    assert cookies["ct_session"]["sameSite"] == "Lax"


def test_wrong_password_shows_one_message(page: Page) -> None:
    log_in(page, "audrey", "not my password")
    expect(page.get_by_role("alert")).to_have_text(auth.WRONG_LOGIN)
    log_in(page, "no-such-user", PASSWORD)
    expect(page.get_by_role("alert")).to_have_text(auth.WRONG_LOGIN)


def test_a_form_without_its_csrf_token_is_refused(page: Page) -> None:
    page.goto("/login")
    page.evaluate("document.querySelector('input[name=csrf_token]').remove()")
    page.get_by_label("User name").fill("clara")
    page.get_by_label("Password").fill(PASSWORD)
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as sent:
        page.get_by_role("button", name="Log in").click()
    assert sent.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("CSRF")


def test_engineer_is_refused_the_access_log(page: Page) -> None:
    log_in(page, "ed")
    expect(page.get_by_role("link", name="Access log")).to_have_count(0)
    response = page.goto("/access-log")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not allowed")).to_be_visible()


def test_search_then_trace_a_dataset_to_its_file_checksum(page: Page, server: Server) -> None:
    namespace, name, version, sha = loaded_pupil_table(server.home)
    log_in(page, "audrey")
    page.get_by_label("Find a dataset or job by name").fill("<b>pupil</b>")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=re.compile("Results for"))).to_contain_text("<b>pupil</b>")
    page.goto("/search?q=.pupil")
    page.get_by_role("link", name=name).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    page.goto(f"/dataset?ns={namespace}&name={name}&version={version}")
    page.get_by_role("link", name="Trace this version back to the received files").click()
    graph = page.locator("svg.graph")
    expect(graph).to_be_visible()
    expect(graph.locator(".node-source").first).to_be_visible()
    expect(graph).to_contain_text(f"sha256 {sha[:16]}")
    assert sha in (graph.text_content() or "")
    expect(page.locator("table.sources")).to_contain_text(sha)


def test_keyboard_only_user_can_log_in_and_reach_the_graph_nodes(page: Page, server: Server) -> None:
    page.goto("/login")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(4):  # the site name link, then the form
        if page.evaluate("document.activeElement.id") == "username":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "username"
    page.keyboard.type("clara")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "password"
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for field in page.locator("input:not([type=hidden])").all():
        field_id = field.get_attribute("id")
        assert field_id
        assert page.locator(f"label[for={field_id}]").count() == 1
    namespace, name, version, _sha = loaded_pupil_table(server.home)
    page.goto(f"/trace?ns={namespace}&name={name}&version={version}")
    first_node = page.locator("svg.graph a.node-link").first
    first_node.focus()
    assert page.evaluate("document.activeElement.closest('svg') !== null")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/(dataset|runs/)"))


def test_register_to_share_to_source_files_and_subject_access_pdf(page: Page, server: Server) -> None:
    from tests.plugins.helpers.viewer import disclosed_upn
    from tests.viewer.pipeline import ALLOWED

    share_id = server.home.filled.shares[ALLOWED]
    log_in(page, "clara")
    page.get_by_role("link", name="Share register").click()
    page.get_by_label("Status", exact=True).select_option("delivered")
    page.get_by_role("button", name="Filter").click()
    with page.expect_download() as csv_download:
        page.get_by_role("link", name="Download CSV").click()
    assert "Share,Status" in Path(csv_download.value.path()).read_text()
    page.get_by_role("link", name=share_id).click()
    graph = page.locator("svg.graph:visible")
    expect(graph.locator("g.gnode-source").first).to_be_visible()
    loaded = {o.sha256 for o in server.home.filled.loaded}
    shown = page.locator("table.sources").text_content() or ""
    assert any(sha in shown for sha in loaded)
    page.get_by_role("link", name="Subject access").click()
    upn = disclosed_upn(server.home)
    page.get_by_label("Pupil's UPN").fill(upn.lower())
    page.get_by_role("button", name="Look up", exact=True).click()
    expect(page.get_by_role("heading", name="1 share(s) included this pupil")).to_be_visible()
    assert upn not in page.url
    with page.expect_download() as pdf_download:
        page.get_by_role("button", name="Download PDF").click()
    assert Path(pdf_download.value.path()).read_bytes().startswith(b"%PDF")
    page.get_by_role("link", name="Record of processing").click()
    expect(page.get_by_role("heading", name=re.compile("Article 30"))).to_be_visible()
    page.get_by_role("link", name="Access log").click()
    expect(page.locator("table")).to_contain_text("subject_access.pdf")
