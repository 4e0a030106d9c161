"""Charts drawn as SVG on the server: horizontal bars and stacked columns over time.

Colours are the Okabe-Ito palette (told apart with the common colour-vision deficiencies); every bar
carries its value as text and a ``<title>``, and pages put the same numbers in a table beside the chart,
so nothing depends on seeing colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Final

PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
_LABEL_WIDTH: Final = 190
_BAR_HEIGHT: Final = 22
_GAP: Final = 8


def _fmt(value: float, unit: str) -> str:
    text = f"{value:.1f}" if unit == "%" else f"{value:,.0f}"
    return f"{text}{unit}" if unit == "%" else f"{text} {unit}".rstrip()


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    label: str,
    unit: str = "",
    maximum: float | None = None,
    width: int = 640,
) -> str:
    """Horizontal bars, one per ``(label, value)``, in the order given."""
    top = max((value for _, value in items), default=0.0)
    scale_max = maximum if maximum is not None else (top or 1.0)
    plot = width - _LABEL_WIDTH - 90
    height = max(len(items), 1) * (_BAR_HEIGHT + _GAP) + _GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
    ]
    if not items:
        parts.append(f'<text class="chart-empty" x="10" y="{height / 2 + 5:.0f}">No data yet</text>')
    for i, (name, value) in enumerate(items):
        y = _GAP + i * (_BAR_HEIGHT + _GAP)
        length = 0.0 if scale_max <= 0 else max(min(value / scale_max, 1.0), 0.0) * plot
        text = _fmt(value, unit)
        parts.append(
            f'<text class="chart-label" x="{_LABEL_WIDTH - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(name[:28])}</text>"
            f'<rect x="{_LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{_BAR_HEIGHT}" '
            f'fill="{PALETTE[0]}"><title>{escape(name)}: {escape(text)}</title></rect>'
            f'<text class="chart-value" x="{_LABEL_WIDTH + length + 6:.1f}" y="{y + 16}">'
            f"{escape(text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


#: Height of one legend line (12 px text).
LEGEND_ROW = 18


def stacked_columns(
    periods: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    label: str,
    width: int = 640,
    height: int = 260,
) -> str:
    """One column per period, stacked by series (e.g. shares per recipient per month), with a legend of
    one series per line under the plot: long recipient names never run into each other, and the
    drawing grows taller with the number of series instead."""
    names = list(series)
    totals = [sum(series[name][i] for name in names) for i in range(len(periods))]
    top = max(totals, default=0.0) or 1.0
    legend_rows = len(names)
    plot_top, plot_bottom = 10, height - 40
    height += legend_rows * LEGEND_ROW
    plot_left, plot_right = 40, width - 10
    slot = (plot_right - plot_left) / max(len(periods), 1)
    column = min(slot * 0.7, 48)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" aria-label="{escape(label)}">',
        f"<title>{escape(label)}</title>",
        f'<line class="axis" x1="{plot_left}" y1="{plot_bottom}" x2="{plot_right}" y2="{plot_bottom}"/>',
        f'<text class="chart-value" x="{plot_left - 6}" y="{plot_top + 10}" text-anchor="end">'
        f"{top:,.0f}</text>",
        f'<text class="chart-value" x="{plot_left - 6}" y="{plot_bottom}" text-anchor="end">0</text>',
    ]
    if not periods:
        parts.append(
            f'<text class="chart-empty" x="{plot_left + 10}" y="{plot_bottom - 20}">No data yet</text>'
        )
    for i, period in enumerate(periods):
        x = plot_left + i * slot + (slot - column) / 2
        y = float(plot_bottom)
        for j, name in enumerate(names):
            value = series[name][i]
            if value <= 0:
                continue
            h = value / top * (plot_bottom - plot_top)
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{column:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[j % len(PALETTE)]}"><title>{escape(period)}, {escape(name)}: '
                f"{value:,.0f}</title></rect>"
            )
        parts.append(
            f'<text class="chart-label" x="{x + column / 2:.1f}" y="{plot_bottom + 14}" '
            f'text-anchor="middle">{escape(period)}</text>'
        )
    for j, name in enumerate(names):
        lx = plot_left
        ly = plot_bottom + 34 + j * LEGEND_ROW
        parts.append(
            f'<rect x="{lx:.1f}" y="{ly - 10}" width="12" height="12" fill="{PALETTE[j % len(PALETTE)]}"/>'
            f'<text class="chart-label legend-label" x="{lx + 18:.1f}" y="{ly}">{escape(name[:80])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
