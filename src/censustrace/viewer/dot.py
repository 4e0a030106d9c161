"""Graphviz ``dot`` (the Debian package ``graphviz``) as the layout engine: DOT text in, SVG out.

The layout is Graphviz's layered (Sugiyama) algorithm, run on the server: no front-end library, nothing
fetched by the browser. Output is cleaned for inline use (no XML prolog or DOCTYPE, sized by its
``viewBox`` so CSS scales it to its box) and cached by the DOT text, which is deterministic for a graph.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import lru_cache
from typing import Final

from censustrace.errors import CensustraceError

DOT_TIMEOUT_SECONDS: Final = 20
_PROLOG = re.compile(r"<\?xml[^>]*>|<!DOCTYPE[^>]*>|<!--.*?-->", re.S)
_ROOT = re.compile(r"<svg\b[^>]*>", re.S)
_VIEWBOX = re.compile(r'viewBox="([^"]+)"')


class GraphvizMissing(CensustraceError):
    """Graphviz ``dot`` is not installed (``apt-get install graphviz``)."""

    code = "CT-VIEWER-GRAPHVIZ"


def quote(value: str) -> str:
    """A DOT double-quoted string (backslash and quote escaped; newlines kept as ``\\n``)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def dot_binary() -> str:
    found = shutil.which("dot")
    if found is None:
        raise GraphvizMissing("Graphviz is not installed: apt-get install graphviz (the dot command)")
    return found


@lru_cache(maxsize=256)
def render(source: str, *, css_class: str, label: str) -> str:
    """The graph laid out by ``dot`` as an inline ``<svg>`` element string (markup from Graphviz, which
    escapes every label; ``label`` is escaped here)."""
    from html import escape

    done = subprocess.run(  # fixed binary, DOT text on stdin
        [dot_binary(), "-Tsvg"],
        input=source.encode("utf-8"),
        capture_output=True,
        timeout=DOT_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise CensustraceError(
            f"Graphviz could not lay out the graph: {done.stderr.decode('utf-8', 'replace')[:300]}",
            code="CT-VIEWER-GRAPHVIZ",
        )
    svg = _PROLOG.sub("", done.stdout.decode("utf-8")).strip()
    root = _ROOT.search(svg)
    if root is None:
        raise CensustraceError("Graphviz returned no SVG", code="CT-VIEWER-GRAPHVIZ")
    box = _VIEWBOX.search(root.group(0))
    view = box.group(1) if box else "0 0 100 100"
    width, height = (float(v) for v in view.split()[2:4])
    new_root = (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
        f'class="graph {escape(css_class)}" role="group" aria-label="{escape(label)}" viewBox="{view}" '
        f'data-width="{width:.0f}" data-height="{height:.0f}" preserveAspectRatio="xMidYMid meet">'
    )
    return svg[: root.start()] + new_root + svg[root.end() :]
