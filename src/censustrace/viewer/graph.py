"""A small layered graph layout drawn as SVG on the server: data flows left to right.

Layers by longest path from the sources (nodes with nothing upstream), so received files stand in the
first column and the traced output in the last; the order inside a layer is improved by a few
barycentre sweeps, which keeps most edges short and uncrossed for the tree-like shapes lineage has.
Every label is escaped; each node is a link (keyboard-focusable) with its full text in a ``<title>``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Final

NODE_WIDTH: Final = 250
NODE_HEIGHT: Final = 58
GAP_X: Final = 70
GAP_Y: Final = 18
MARGIN: Final = 12
LINE_CHARS: Final = 36
#: Beyond this many nodes a drawing helps nobody (and costs time): callers show tables instead.
MAX_NODES: Final = 400


@dataclass
class Node:
    id: str
    #: CSS class suffix: "source" (a received file), "dataset", "run", "target", "share", "blocked".
    kind: str
    lines: Sequence[str]
    title: str
    href: str | None = None


@dataclass
class Layout:
    layers: list[list[str]]
    positions: dict[str, tuple[float, float]] = field(default_factory=dict)
    width: float = 0
    height: float = 0


def _layers(ids: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    preds: dict[str, set[str]] = defaultdict(set)
    succs: dict[str, set[str]] = defaultdict(set)
    for origin, target in edges:
        if origin != target:
            preds[target].add(origin)
            succs[origin].add(target)
    indegree = {node: len(preds[node]) for node in ids}
    layer = dict.fromkeys(ids, 0)
    ready = [node for node in ids if indegree[node] == 0]
    done: set[str] = set()
    while ready:
        node = ready.pop()
        done.add(node)
        for nxt in succs[node]:
            layer[nxt] = max(layer[nxt], layer[node] + 1)
            indegree[nxt] -= 1
            if indegree[nxt] == 0:
                ready.append(nxt)
    # Nodes on a cycle never reach indegree 0: put them after everything they can see.
    for node in ids:
        if node not in done:
            layer[node] = max((layer[p] + 1 for p in preds[node] if p in done), default=0)
    return layer


def layout(nodes: Sequence[Node], edges: Sequence[tuple[str, str]], sweeps: int = 4) -> Layout:
    ids = [node.id for node in nodes]
    known = set(ids)
    edges = [(a, b) for a, b in edges if a in known and b in known]
    layer_of = _layers(ids, edges)
    count = max(layer_of.values(), default=-1) + 1
    layers: list[list[str]] = [[] for _ in range(count)]
    for item in sorted(nodes, key=lambda n: (" ".join(n.lines), n.id)):
        layers[layer_of[item.id]].append(item.id)
    preds: dict[str, list[str]] = defaultdict(list)
    succs: dict[str, list[str]] = defaultdict(list)
    for origin, target in edges:
        preds[target].append(origin)
        succs[origin].append(target)

    def reorder(layer: list[str], neighbours: dict[str, list[str]], index: dict[str, int]) -> list[str]:
        def key(node: str) -> tuple[float, int]:
            placed = [index[n] for n in neighbours[node] if n in index]
            return (sum(placed) / len(placed) if placed else float(layer.index(node)), layer.index(node))

        return sorted(layer, key=key)

    for _ in range(sweeps):
        for i in range(1, count):
            index = {node: pos for pos, node in enumerate(layers[i - 1])}
            layers[i] = reorder(layers[i], preds, index)
        for i in range(count - 2, -1, -1):
            index = {node: pos for pos, node in enumerate(layers[i + 1])}
            layers[i] = reorder(layers[i], succs, index)

    tallest = max((len(layer) for layer in layers), default=0)
    height = 2 * MARGIN + tallest * NODE_HEIGHT + max(tallest - 1, 0) * GAP_Y
    result = Layout(layers=layers, height=height)
    result.width = 2 * MARGIN + count * NODE_WIDTH + max(count - 1, 0) * GAP_X
    for column, layer in enumerate(layers):
        used = len(layer) * NODE_HEIGHT + max(len(layer) - 1, 0) * GAP_Y
        top = MARGIN + (height - 2 * MARGIN - used) / 2
        for row, node_id in enumerate(layer):
            x = MARGIN + column * (NODE_WIDTH + GAP_X)
            result.positions[node_id] = (x, top + row * (NODE_HEIGHT + GAP_Y))
    return result


def _clip(text: str, limit: int = LINE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_svg(
    nodes: Sequence[Node], edges: Iterable[tuple[str, str]], *, label: str, description: str = ""
) -> str:
    """The graph as an ``<svg>`` element (a string of safe markup)."""
    edge_list = list(edges)
    placed = layout(nodes, edge_list)
    by_id = {node.id: node for node in nodes}
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" role="group" '
        f'width="{placed.width:.0f}" height="{placed.height:.0f}" '
        f'viewBox="0 0 {placed.width:.0f} {placed.height:.0f}" aria-label="{escape(label)}">',
        f"<desc>{escape(description or label)}</desc>",
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" class="arrow"/>'
        "</marker></defs>",
        '<g class="edges">',
    ]
    for origin, target in edge_list:
        if origin not in placed.positions or target not in placed.positions:
            continue
        x1, y1 = placed.positions[origin]
        x2, y2 = placed.positions[target]
        sx, sy = x1 + NODE_WIDTH, y1 + NODE_HEIGHT / 2
        tx, ty = x2, y2 + NODE_HEIGHT / 2
        bend = max((tx - sx) / 2, 20)
        parts.append(
            f'<path class="edge" marker-end="url(#arrow)" '
            f'd="M {sx:.1f} {sy:.1f} C {sx + bend:.1f} {sy:.1f}, '
            f'{tx - bend:.1f} {ty:.1f}, {tx:.1f} {ty:.1f}"/>'
        )
    parts.append('</g><g class="nodes">')
    for layer in placed.layers:
        for node_id in layer:
            node = by_id[node_id]
            x, y = placed.positions[node_id]
            inner = [
                f"<title>{escape(node.title)}</title>",
                f'<rect class="node node-{escape(node.kind)}" x="{x:.1f}" y="{y:.1f}" rx="6" '
                f'width="{NODE_WIDTH}" height="{NODE_HEIGHT}"/>',
            ]
            for i, line in enumerate(node.lines[:3]):
                css = "node-kind" if i == 0 else "node-text"
                baseline = y + 17 + i * 16
                inner.append(
                    f'<text class="{css}" x="{x + 10:.1f}" y="{baseline:.1f}">{escape(_clip(line))}</text>'
                )
            body = "".join(inner)
            if node.href:
                parts.append(
                    f'<a class="node-link" href="{escape(node.href)}" aria-label="{escape(node.title)}">'
                    f"{body}</a>"
                )
            else:
                parts.append(f'<g class="node-box" tabindex="0" aria-label="{escape(node.title)}">{body}</g>')
    parts.append("</g></svg>")
    return "".join(parts)
