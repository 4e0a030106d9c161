"""The share page's "Where it came from": a grouped, layered lineage graph that stays readable from 3 to
20,000 received files, and the paged table of those files.

Siblings are grouped (see :mod:`censustrace.lineage.store.upstream`): one node for the received files
("2,000 census files from 450 schools"), one for the archived extracts, one per job's tables, one for
the share file; runs are the labelled edges. The received files can be expanded by local authority
(``by=la``, the first 3 digits of the LAESTAB) or by school (``by=school``; at most ``MAX_SPLIT`` nodes,
the rest in one "more schools" node). Graphviz lays it out twice, left to right for wide screens and top
to bottom for narrow ones; CSS shows the one that fits, so it is legible at first paint.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sqlalchemy.engine import Connection

from censustrace.lineage.store.upstream import Group, GroupKey, Upstream, upstream
from censustrace.viewer import dot
from censustrace.viewer.lineage_views import fill_census_details, short_name, source_row

Json = dict[str, Any]
Href = Callable[..., str]
PAGE_SIZE: Final = 50
MAX_SPLIT: Final = 40
#: Characters per line inside a node: keeps nodes narrow enough for a phone.
WRAP: Final = 26
EXPANSIONS: Final = ("", "la", "school")
#: Okabe-Ito-derived fills with dark strokes (contrast with black text above 7:1).
_STYLE: Final = {
    "source": ("#e8f1f8", "#1d4f91"),
    "extract": ("#eef7ee", "#00703c"),
    "table": ("#f3f2f1", "#1b1b1b"),
    "share": ("#fff7bf", "#1b1b1b"),
    "blocked": ("#f6d7d2", "#b10e1e"),
}


def _wrap(text: str, width: int = WRAP) -> list[str]:
    """Lines of at most ``width`` characters, broken after commas or spaces (narrow nodes)."""
    lines: list[str] = []
    current = ""
    for word in text.replace(", ", ", \0").replace(" ", " \0").split("\0"):
        if current and len(current) + len(word) > width:
            lines.append(current.rstrip())
            current = ""
        current += word
    if current.strip():
        lines.append(current.rstrip())
    return lines


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


@dataclass
class GraphNode:
    id: str
    kind: str
    title: str
    lines: list[str]
    #: What the detail panel shows: (label, value) pairs and links (label, href).
    facts: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)


def _table(name: str) -> str:
    """``/path/warehouse.db.pupil`` or ``public.pupil`` -> ``pupil``."""
    return short_name(name).rsplit(".", 1)[-1]


def _job_short(job: str) -> str:
    return job.rsplit(".", 1)[-1] if job else ""


def _group_node(group: Group, up: Upstream, start_label: str, href: Href, share_id: str) -> GraphNode:
    node_id = "g-{}-{}-{}".format(*group.key).replace("--", "-s")
    if group.contains_start:
        return GraphNode(
            node_id, "share", f"Share file {start_label}", ["Share file", *_wrap(start_label)], []
        )
    if not group.writer:
        schools = len([s for s in up.schools if s])
        files = _plural(group.versions, "census file")
        line = f"{files} from {_plural(schools, 'school')}" if schools else files
        facts = [("Files", f"{group.versions:,}"), ("Schools", f"{schools:,}")]
        las = Counter(s[:3] for s in up.schools if s)
        if las:
            facts.append(("Local authorities", ", ".join(sorted(las))))
        links = [
            ("Show by local authority", href("share", share_id=share_id, by="la")),
            ("Show by school", href("share", share_id=share_id, by="school")),
            ("List the files", "#sources-heading"),
        ]
        return GraphNode(node_id, "source", "Received files", ["Received files", *_wrap(line)], facts, links)
    job = _job_short(group.writer)
    if not group.tables:
        return GraphNode(
            node_id,
            "extract",
            "Extracts",
            ["Extracts", _plural(group.versions, "archived file"), f"by {job}"],
            [("Files", f"{group.versions:,}"), ("Written by", group.writer)],
        )
    names = [_table(t) for t in sorted(group.tables)]
    shown = _wrap(", ".join(names)) if len(names) <= 3 else [f"{len(names)} tables"]
    title = "Warehouse tables" if "stag" not in job else "Staging tables"
    facts = [("Written by", group.writer)]
    facts += [(_table(t), _plural(n, "version")) for t, n in sorted(group.tables.items())]
    lines = [title, *shown, f"{_plural(group.versions, 'version')}, by {job}"]
    return GraphNode(node_id, "table", title, lines, facts)


def _split_sources(node: GraphNode, up: Upstream, by: str) -> list[GraphNode]:
    """The received-files node split by local authority or school."""
    counts: Counter[str] = Counter()
    for laestab, n in up.schools.items():
        counts[(laestab[:3] if by == "la" else laestab) if laestab else ""] += n
    ordered = sorted(counts.items(), key=lambda kv: (kv[0] == "", kv[0]))
    nodes: list[GraphNode] = []
    for key, n in ordered[:MAX_SPLIT]:
        what = ("LA " if by == "la" else "school ") + key if key else "school not recorded"
        nodes.append(
            GraphNode(
                f"{node.id}-{by}-{key or 'unknown'}",
                "source",
                f"Received files, {what}",
                [what[:1].upper() + what[1:], _plural(n, "census file")],
                [("Files", f"{n:,}")],
            )
        )
    rest = ordered[MAX_SPLIT:]
    if rest:
        files = sum(n for _, n in rest)
        nodes.append(
            GraphNode(
                f"{node.id}-{by}-more",
                "source",
                "More received files",
                [f"{len(rest):,} more {'LAs' if by == 'la' else 'schools'}", _plural(files, "census file")],
                [("Files", f"{files:,}")],
            )
        )
    return nodes


def _dot(nodes: list[GraphNode], edges: list[tuple[str, str, str]], rankdir: str, prefix: str) -> str:
    lines = [
        "digraph lineage {",
        f"rankdir={rankdir}; nodesep=0.25; ranksep={'0.55' if rankdir == 'LR' else '0.35'}; pad=0.1;",
        'node [shape=box, style="rounded,filled", fontname="DejaVu Sans", fontsize=13, margin="0.15,0.08", '
        "penwidth=2];",
        'edge [fontname="DejaVu Sans", fontsize=11, color="#505a5f", fontcolor="#1b1b1b", penwidth=1.5];',
    ]
    for node in nodes:
        fill, stroke = _STYLE.get(node.kind, _STYLE["table"])
        label = "\n".join(node.lines)
        lines.append(
            f"{dot.quote(prefix + node.id)} [id={dot.quote(prefix + node.id)}, label={dot.quote(label)}, "
            f"fillcolor={dot.quote(fill)}, "
            f"color={dot.quote(stroke)}, class={dot.quote('gnode gnode-' + node.kind)}, "
            f"URL={dot.quote('#node-' + node.id)}, tooltip={dot.quote(node.title)}];"
        )
    for origin, target, label in edges:
        # The job and its run count are the edge's tooltip, not a label: labels in the gaps between
        # layers would make the drawing twice as wide (and its text half as large once fitted).
        lines.append(
            f"{dot.quote(prefix + origin)} -> {dot.quote(prefix + target)} [tooltip={dot.quote(label)}];"
        )
    lines.append("}")
    return "\n".join(lines)


def graph_model(up: Upstream, *, start_label: str, share_id: str, by: str, href: Href) -> Json:
    nodes: dict[GroupKey, list[GraphNode]] = {}
    for key, group in sorted(up.groups.items(), key=lambda kv: kv[1].first_version):
        node = _group_node(group, up, start_label, href, share_id)
        nodes[key] = (
            _split_sources(node, up, by)
            if by in ("la", "school") and not group.writer and not group.contains_start
            else [node]
        )
    edges: list[tuple[str, str, str]] = []
    for edge in up.edges:
        label = f"{edge.job}: {_plural(edge.runs, 'run')}"
        for origin in nodes.get(edge.origin, []):
            for target in nodes.get(edge.target, []):
                edges.append((origin.id, target.id, label))
    flat = [node for group_nodes in nodes.values() for node in group_nodes]
    label = f"Lineage of the share file back to {_plural(up.source_count, 'received file')}"
    return {
        "nodes": flat,
        "svg_wide": dot.render(_dot(flat, edges, "LR", "w-"), css_class="graph-wide", label=label),
        "svg_narrow": dot.render(_dot(flat, edges, "TB", "n-"), css_class="graph-narrow", label=label),
        "label": label,
    }


def share_lineage(
    conn: Connection,
    start_version: int,
    *,
    share_id: str,
    start_label: str,
    by: str,
    page: int,
    href: Href,
) -> Json:
    """Everything "Where it came from" shows: the grouped graph and one page of the received files."""
    up = upstream(conn, start_version, offset=(max(page, 1) - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    pages = max(1, -(-up.source_count // PAGE_SIZE))
    if page > pages:  # past the end: show the last page
        page = pages
        up = upstream(conn, start_version, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    rows = up.page
    from censustrace.lineage.store.queries import merged_facets
    from censustrace.lineage.store.tables import facets

    found = merged_facets(
        conn, facets.c.dataset_version_id, [r["version_id"] for r in rows], "dataset_version"
    )
    sources = [source_row({**r, "facets": found.get(r["version_id"], {})}) for r in rows]
    fill_census_details(conn, sources)
    return {
        **graph_model(up, start_label=start_label, share_id=share_id, by=by, href=href),
        "by": by,
        "sources": sources,
        "source_count": up.source_count,
        "page": page,
        "pages": pages,
        "page_size": PAGE_SIZE,
        "schools": len([s for s in up.schools if s]),
    }
