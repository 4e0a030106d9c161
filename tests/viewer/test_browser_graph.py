"""Real browser tests of the share page's lineage graph and of the viewer inside a real Airflow API
server: Playwright driving Debian's chromium (headless, never downloaded) at 1,400 px and 390 px wide.
Screenshots go to ``test-artifacts/viewer/``."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from censustrace.config import Settings
from tests.plugins.helpers.browser import CHROMIUM, log_in, require_chromium
from tests.plugins.helpers.viewer import ARTIFACTS, Server

from .pipeline import ALLOWED, BLOCKED

pytestmark = pytest.mark.browser
require_chromium()

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
WIDTHS = {"wide": (1400, 900), "narrow": (390, 844)}
#: Smallest rendered height of a node's text line, in CSS pixels, we call legible.
LEGIBLE_PX = 9.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert CHROMIUM.is_file()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def new_page(browser: Browser, base_url: str, size: str) -> Page:
    width, height = WIDTHS[size]
    return browser.new_context(base_url=base_url, viewport={"width": width, "height": height}).new_page()


def view_box(svg: Locator) -> list[float]:
    return [float(v) for v in (svg.get_attribute("viewBox") or "").split()]


def shot(page: Page, name: str, *, full_page: bool = False) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=full_page)


def graph_nodes_at_first_paint(page: Page) -> list[dict[str, float]]:
    """Boxes of the visible graph's nodes and of their text lines, the graph box and the viewport, read
    right after load (no scrolling, no clicks)."""
    result: list[dict[str, float]] = page.evaluate(
        """() => {
        const svg = Array.from(document.querySelectorAll('svg.graph'))
          .find(s => s.getBoundingClientRect().width > 0);
        const view = svg.closest('.graph-view').getBoundingClientRect();
        return Array.from(svg.querySelectorAll('g.node')).map(g => {
          const b = g.getBoundingClientRect();
          const lines = Array.from(g.querySelectorAll('text')).map(t => t.getBoundingClientRect().height);
          return {left: b.left, top: b.top, right: b.right, bottom: b.bottom, text: Math.min(...lines),
                  vl: view.left, vt: view.top, vr: view.right, vb: view.bottom,
                  w: window.innerWidth, h: window.innerHeight};
        });
    }"""
    )
    return result


@pytest.mark.parametrize("size", list(WIDTHS))
def test_graph_is_on_screen_and_legible_at_first_paint(browser: Browser, server: Server, size: str) -> None:
    page = new_page(browser, server.url, size)
    log_in(page, "clara")
    page.goto(f"/shares/{server.home.filled.shares[ALLOWED]}")
    nodes = graph_nodes_at_first_paint(page)
    shot(page, f"share-graph-first-paint-{size}")
    assert len(nodes) == 5  # received files, extracts, staging tables, warehouse tables, share file
    for n in nodes:
        assert n["left"] >= 0
        assert n["top"] >= 0
        assert n["right"] <= n["w"]
        assert n["bottom"] <= n["h"], "a node is below the fold at first paint"
        assert n["vl"] - 1 <= n["left"]
        assert n["right"] <= n["vr"] + 1
        assert n["vt"] - 1 <= n["top"]
        assert n["bottom"] <= n["vb"] + 1
        assert n["text"] >= LEGIBLE_PX, f"node text {n['text']:.1f}px high"
    page.context.close()


@pytest.mark.parametrize("size", list(WIDTHS))
def test_grouped_files_expand_by_school_and_the_panel_explains_a_node(
    browser: Browser, server: Server, size: str
) -> None:
    page = new_page(browser, server.url, size)
    log_in(page, "audrey")
    page.goto(f"/shares/{server.home.filled.shares[ALLOWED]}")
    svg = page.locator("svg.graph:visible")
    received = svg.locator("g.gnode-source a")
    expect(received).to_have_count(1)
    # Keyboard: Tab into the graph, Enter on the received files opens their details.
    received.focus()
    page.keyboard.press("Enter")
    panel = page.locator(".graph-panel .node-detail.selected")
    expect(panel).to_be_visible()
    expect(panel.get_by_role("heading")).to_have_text("Received files")
    expect(page.locator("[data-zoom=focus]")).to_be_enabled()
    before = view_box(svg)
    page.locator("[data-zoom=focus]").click()
    assert view_box(svg)[2] <= before[2]  # never zoomed out
    # The selected node is now in the middle of the view.
    node, view = received.bounding_box(), page.locator(".graph-view").bounding_box()
    assert node is not None
    assert view is not None
    assert abs((node["x"] + node["width"] / 2) - (view["x"] + view["width"] / 2)) < 3
    assert abs((node["y"] + node["height"] / 2) - (view["y"] + view["height"] / 2)) < 3
    page.locator("[data-zoom=fit]").click()
    assert view_box(svg) == pytest.approx(before, abs=0.1)
    page.locator("[data-zoom=in]").click()
    assert view_box(svg)[2] < before[2]
    shot(page, f"share-graph-panel-{size}")
    panel.get_by_role("link", name="Show by school").click()
    expect(page).to_have_url(re.compile(r"by=school"))
    schools = page.locator("svg.graph:visible g.gnode-source")
    count = int(page.locator("table.sources tbody tr").count())
    expect(schools).to_have_count(count)  # the demo share: one file per school
    for n in graph_nodes_at_first_paint(page):
        assert n["bottom"] <= n["vb"] + 1
        assert n["right"] <= n["vr"] + 1
    shot(page, f"share-graph-by-school-{size}")
    page.context.close()


def test_blocked_share_and_print_stylesheet(browser: Browser, server: Server) -> None:
    page = new_page(browser, server.url, "wide")
    log_in(page, "clara")
    page.goto(f"/shares/{server.home.filled.shares[BLOCKED]}")
    expect(page.get_by_role("heading", name="Why it was not sent")).to_be_visible()
    expect(page.get_by_role("heading", name="What would have been sent")).to_be_visible()
    expect(page.get_by_text("Fields sent and how")).to_have_count(0)
    # Human times with their zone: no ISO stamps, no nanoseconds.
    body = page.locator("main").inner_text()
    assert "T" not in "".join(t for t in body.split() if t[:4].isdigit() and "-" in t)
    expect(page.locator("main time").first).to_contain_text("GMT")
    shot(page, "share-blocked-wide", full_page=True)
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    expect(page.locator(".print-only")).to_be_visible()
    page.pdf(path=str(ARTIFACTS / "share-blocked-print.pdf"))
    page.emulate_media(media="screen")
    page.goto("/subject-access")
    page.emulate_media(media="print")
    expect(page.locator(".site-header")).to_be_hidden()
    page.pdf(path=str(ARTIFACTS / "subject-access-print.pdf"))
    page.context.close()


@pytest.mark.parametrize("size", list(WIDTHS))
def test_chart_legend_labels_do_not_overlap(browser: Browser, server: Server, size: str) -> None:
    page = new_page(browser, server.url, size)
    log_in(page, "clara")
    boxes = page.evaluate(
        """() => Array.from(document.querySelectorAll('svg.chart .legend-label')).map(t => {
            const b = t.getBoundingClientRect(); return [b.left, b.top, b.right, b.bottom]; })"""
    )
    assert boxes
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], f"{a} overlaps {b}"
    shot(page, f"overview-charts-{size}", full_page=True)
    page.context.close()


# Inside a real Airflow API server -------------------------------------------------------------------------
AIRFLOW_USER, AIRFLOW_PASSWORD = "alice", "a long airflow password 1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def airflow_server(
    airflow_db: Settings, server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """``airflow api-server`` (SimpleAuthManager, this repository's plugins) on a free port, over the
    viewer home the other tests use; always killed at the end (its whole process group)."""
    folder = tmp_path_factory.mktemp("airflow-api")
    passwords = folder / "passwords.json"
    passwords.write_text(json.dumps({AIRFLOW_USER: AIRFLOW_PASSWORD}))
    port = free_port()
    home = server.home.settings
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO / "src"),
        "CENSUSTRACE_HOME": str(home.home),
        "CENSUSTRACE_PUPIL_KEY_SECRET": "viewer-tests",
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{AIRFLOW_USER}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": "censustrace-test-jwt-secret-" + "x" * 40,
    }
    log = (folder / "api-server.log").open("wb")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "airflow"),
            "api-server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"airflow api-server exited: {(folder / 'api-server.log').read_text()[-3000:]}"
                )
            try:
                if httpx.get(f"{url}/censustrace/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    "airflow api-server not up after 180 s: "
                    + (folder / "api-server.log").read_text()[-3000:]
                )
            time.sleep(1)
        yield url
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        log.close()


@pytest.mark.parametrize("size", list(WIDTHS))
def test_inside_airflow_one_login_is_enough(
    browser: Browser, airflow_server: str, server: Server, size: str
) -> None:
    share_id = server.home.filled.shares[ALLOWED]
    page = new_page(browser, airflow_server, size)
    page.goto(f"/censustrace/shares/{share_id}")
    # Airflow's login page, not the viewer's.
    expect(page).to_have_url(re.compile(r"/auth/login"))
    page.locator("input[name=username]").fill(AIRFLOW_USER)
    page.locator("input[name=password]").fill(AIRFLOW_PASSWORD)
    shot(page, f"airflow-login-{size}")
    page.locator("button[type=submit]").click()
    expect(page).to_have_url(re.compile(f"/censustrace/shares/{share_id}$"), timeout=30_000)
    expect(page.locator(".who")).to_contain_text(f"airflow:{AIRFLOW_USER} (compliance)")
    expect(page.locator("input#password")).to_have_count(0)
    nodes = graph_nodes_at_first_paint(page)
    assert len(nodes) == 5
    shot(page, f"airflow-mounted-share-{size}")
    # Every viewer page now, including compliance-only ones, with no further login.
    page.goto("/censustrace/access-log")
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert "/login" not in page.url
    page.context.close()
