"""The override report's charts as plain SVG: stacked bars, with a title, a description, axis
labels and a legend, laid out here and loading nothing.

Why not a charting library: pygal writes an inline <script> into every chart (its config),
even with its JavaScript switched off, and by default links a script on a remote host; the
report is one HTML file with no script at all. matplotlib's SVG would do, but it brings
numpy, pillow and fonttools (about 60 MB) into a server install for two bar charts. The
product already lays out its SMART trend graph as SVG by hand (smartapp/trend_svg.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

FONT = "font-family:system-ui,sans-serif"


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    colour: str
    values: tuple[float, ...]  # one per category


def _attr(text: str) -> str:
    return escape(text, quote=True)


def _legend(series: Sequence[Series], x: float, y: float) -> list[str]:
    parts = []
    for index, one in enumerate(series):
        left = x + index * 150
        parts.append(
            f'<rect x="{left:.0f}" y="{y - 10:.0f}" width="12" height="12" fill="{one.colour}"/>'
            f'<text x="{left + 17:.0f}" y="{y:.0f}" font-size="12">{escape(one.name)}</text>'
        )
    return parts


def _frame(chart_id: str, title: str, description: str, width: float, height: float) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{_attr(chart_id)}" '
        f'role="img" aria-labelledby="{_attr(chart_id)}-title {_attr(chart_id)}-desc" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'style="{FONT}">'
        f'<title id="{_attr(chart_id)}-title">{escape(title)}</title>'
        f'<desc id="{_attr(chart_id)}-desc">{escape(description)}</desc>'
    )


def horizontal_bars(
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    percent: bool = False,
) -> str:
    """One bar per category, its series stacked left to right; `percent`: each bar is the
    category's share (its series over their sum), so bars of rules seen rarely compare."""
    label_width, bar_width, row = 250.0, 420.0, 24.0
    width, top = label_width + bar_width + 70, 40.0
    height = top + row * max(len(categories), 1) + 40
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    scale = max(totals, default=0) or 1.0
    parts = [_frame(chart_id, title, description, width, height)]
    parts += _legend(series, label_width, 18)
    for index, category in enumerate(categories):
        y = top + index * row
        parts.append(
            f'<text x="{label_width - 8:.0f}" y="{y + 15:.0f}" font-size="12" '
            f'text-anchor="end">{escape(category)}</text>'
        )
        x, total = label_width, totals[index]
        for one in series:
            value = one.values[index]
            share = (value / total if total else 0.0) if percent else value / scale
            length = share * bar_width
            if length > 0:
                parts.append(
                    f'<rect x="{x:.1f}" y="{y + 3:.0f}" width="{length:.1f}" height="{row - 7:.0f}" '
                    f'fill="{one.colour}"><title>{escape(category)}: {escape(one.name)} '
                    f"{_number(value)}</title></rect>"
                )
            x += length
        parts.append(
            f'<text x="{x + 6:.1f}" y="{y + 15:.0f}" font-size="11" fill="#374151">'
            f"{_number(total)}</text>"
        )
    axis = "share of the cards shown" if percent else "number"
    parts.append(
        f'<text x="{label_width + bar_width / 2:.0f}" y="{height - 12:.0f}" font-size="11" '
        f'text-anchor="middle" fill="#374151">{axis}</text></svg>'
    )
    return "".join(parts)


def columns(
    chart_id: str,
    title: str,
    description: str,
    categories: Sequence[str],
    series: Sequence[Series],
) -> str:
    """One column per category (a week), its series stacked bottom to top, with a y axis."""
    left, plot_height = 50.0, 220.0
    column = min(60.0, max(26.0, 560.0 / max(len(categories), 1)))
    width = max(left + column * max(len(categories), 1) + 30, 640.0)
    top = 40.0
    height = top + plot_height + 70
    totals = [sum(s.values[i] for s in series) for i in range(len(categories))]
    scale = _nice_top(max(totals, default=0))
    parts = [_frame(chart_id, title, description, width, height)]
    parts += _legend(series, left, 18)
    base = top + plot_height
    for tick in range(5):
        value = scale * tick / 4
        y = base - plot_height * tick / 4
        parts.append(
            f'<line x1="{left:.0f}" x2="{width - 20:.0f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#e5e7eb"/><text x="{left - 6:.0f}" y="{y + 4:.1f}" font-size="11" '
            f'text-anchor="end" fill="#374151">{_number(round(value))}</text>'
        )
    for index, category in enumerate(categories):
        x = left + index * column
        y = base
        for one in series:
            value = one.values[index]
            length = value / scale * plot_height
            if length > 0:
                y -= length
                parts.append(
                    f'<rect x="{x + 4:.1f}" y="{y:.1f}" width="{column - 8:.1f}" '
                    f'height="{length:.1f}" fill="{one.colour}"><title>{escape(category)}: '
                    f"{escape(one.name)} {_number(value)}</title></rect>"
                )
        parts.append(
            f'<text x="{x + column / 2:.1f}" y="{base + 16:.0f}" font-size="10" '
            f'text-anchor="end" transform="rotate(-40 {x + column / 2:.1f} {base + 16:.0f})">'
            f"{escape(category)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice_top(largest: float) -> float:
    """The top of the y axis: four steps of 1, 2 or 5 times a power of ten."""
    if largest <= 0:
        return 4.0
    step = largest / 4
    power = 10 ** math.floor(math.log10(step))
    nice = next(m * power for m in (1, 2, 5, 10) if m * power >= step)
    return float(max(nice, 1) * 4)


def _number(value: float) -> str:
    return f"{value:g}" if value != int(value) else str(int(value))
