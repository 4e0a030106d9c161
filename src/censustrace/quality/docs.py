"""Data Docs: GX's own static HTML pages, rendered from sanitised results into ``settings.data_docs_dir``.

The folder has GX's site layout, so the pages' relative links (home, suite page, images) work when it is
served as a whole (the API serves it at ``/data-docs/``):

* ``validations/<suite>/<extract_id>/latest/<suite>.html``: one page per suite per validated extract
  (rewritten when an extract is validated again);
* ``expectations/<suite>.html``: the suites as declared;
* ``index.html`` and ``static/``: a plain home page and GX's images.

Pages are rendered with GX's ``ValidationResultsPageRenderer`` and ``DefaultJinjaPageView`` directly
rather than through a context's site builder, whose index is rebuilt from every stored result on each
build. The renderers are made once per process.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from censustrace.quality.engine import SuiteResult
from censustrace.quality.suites import Suites

RUN_LABEL: Final = "latest"
logger = logging.getLogger(__name__)


def page_path(suite: str, extract_id: str) -> str:
    """A validation page, relative to the Data Docs root (GX layout: suite/run name/run time/batch)."""
    return f"validations/{suite}/{extract_id}/{RUN_LABEL}/{suite}.html"


class _Renderers:
    def __init__(self) -> None:
        from great_expectations.render.renderer.page_renderer import (
            ExpectationSuitePageRenderer,
            ValidationResultsPageRenderer,
        )
        from great_expectations.render.view.view import DefaultJinjaPageView

        self.validation = ValidationResultsPageRenderer()
        self.suite = ExpectationSuitePageRenderer()
        self.view = DefaultJinjaPageView()
        self.lock = threading.Lock()
        self.site_ready: set[tuple[Path, Path]] = set()


_renderers: _Renderers | None = None
_renderers_lock = threading.Lock()


def _get_renderers() -> _Renderers:
    global _renderers
    with _renderers_lock:
        if _renderers is None:
            _renderers = _Renderers()
        return _renderers


def write_pages(
    root: Path, suites: Suites, extract_id: str, results: Sequence[SuiteResult], validated_at: str
) -> tuple[str, ...]:
    """Render one page per suite result; the site's suite pages, index and images once per process.
    Returns the pages' paths relative to ``root``."""
    renderers = _get_renderers()
    pages = []
    with renderers.lock:
        _ensure_site(renderers, root, suites)
        for result in results:
            document = result.document
            document.meta["run_id"] = {"run_name": extract_id, "run_time": validated_at}
            document.meta["active_batch_definition"] = {"data_asset_name": result.table}
            try:
                content = renderers.view.render(renderers.validation.render(document))  # type: ignore[no-untyped-call]
            except Exception:  # a GX renderer bug must not lose the validation: a plain page instead
                logger.exception(
                    "GX could not render the %s page of %s; writing a plain one", result.suite, extract_id
                )
                content = plain_page(result, extract_id, validated_at)
            relative = page_path(result.suite, extract_id)
            _atomic_write(root / relative, offline(content, relative.count("/")))
            pages.append(relative)
    return tuple(pages)


def _ensure_site(renderers: _Renderers, root: Path, suites: Suites) -> None:
    key = (root.resolve(), suites.folder)
    if key in renderers.site_ready:
        return
    import great_expectations.render.view as gx_view

    images = Path(gx_view.__file__).parent / "static" / "images"
    target = root / "static" / "images"
    if images.is_dir() and not target.is_dir():
        shutil.copytree(images, target, dirs_exist_ok=True)
    links = []
    for suite in suites:
        content = renderers.view.render(renderers.suite.render(suite.gx_suite))  # type: ignore[no-untyped-call]
        _atomic_write(root / "expectations" / f"{suite.name}.html", offline(content, 1))
        links.append(
            f'<li><a href="expectations/{html.escape(suite.name)}.html">{html.escape(suite.name)}</a></li>'
        )
    index = (
        "<!doctype html><html><head><meta charset='utf-8'><title>censustrace Data Docs</title></head><body>"
        "<h1>censustrace Data Docs</h1><p>One page per suite for each validated extract, under "
        "<code>validations/&lt;suite&gt;/&lt;extract id&gt;/</code>; the Airflow task and the lineage viewer "
        "link to them. The suites as declared:</p><ul>" + "".join(links) + "</ul></body></html>\n"
    )
    _atomic_write(root / "index.html", offline(index, 0))
    _atomic_write(root / LOCAL_CSS, _CSS)
    renderers.site_ready.add(key)


# GX's page templates pull Bootstrap, jQuery, Vega and a logo from public CDNs. Our pages must work
# offline and send no request elsewhere: external tags are dropped and a local stylesheet linked.
_EXTERNAL_TAG: Final = re.compile(
    r"<script[^>]*\bsrc=[\"']https?://[^>]*>\s*</script>|<(?:link|img)[^>]*\b(?:href|src)=[\"']https?://[^>]*>",
    re.I,
)
_EXTERNAL_URL: Final = re.compile(r"url\(\s*['\"]?https?://[^)]*\)", re.I)
_EXTERNAL_ANCHOR: Final = re.compile(r"<a\b[^>]*\bhref=[\"']https?://[^>]*>", re.I)
LOCAL_CSS: Final = "static/censustrace-docs.css"
_CSS: Final = """body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1b1b1b;line-height:1.4}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #bbb;padding:.25rem .5rem;
vertical-align:top}th{background:#f0f0f0}a{color:#0b5394}.hide,.d-none,.sidebar,.navbar{display:none}
.card{border:1px solid #ddd;margin:.75rem 0;padding:.5rem}
.text-danger{color:#a4000f}.text-success{color:#0a6b2d}
"""


def offline(content: str, depth: int) -> str:
    """``content`` without references to other sites, linking the local stylesheet instead (``depth``:
    how many folders below the Data Docs root the page is)."""
    content = _EXTERNAL_URL.sub("none", _EXTERNAL_TAG.sub("", content))
    content = _EXTERNAL_ANCHOR.sub("<a>", content)  # GX's newsletter and product links
    link = f'<link rel="stylesheet" href="{"../" * depth}{LOCAL_CSS}">'
    return content.replace("</head>", link + "</head>", 1) if "</head>" in content else link + content


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def plain_page(result: SuiteResult, extract_id: str, validated_at: str) -> str:
    """The suite's results as a plain table (counts only), for when GX's renderer fails."""
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                "pass" if r.success else "FAIL",
                r.severity,
                r.code,
                r.name,
                r.unexpected_count if r.error is None else r.error,
                r.element_count,
            )
        )
        + "</tr>"
        for r in result.results
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(result.suite)} {html.escape(extract_id)}</title></head><body>"
        f"<h1>Suite {html.escape(result.suite)}: extract {html.escape(extract_id)}</h1>"
        f"<p>Validated {html.escape(validated_at)}; {result.row_count} rows.</p>"
        "<table><tr><th>result</th><th>severity</th><th>code</th><th>expectation</th><th>unexpected</th>"
        f"<th>of</th></tr>{rows}</table></body></html>\n"
    )


__all__ = ["RUN_LABEL", "page_path", "plain_page", "write_pages"]
