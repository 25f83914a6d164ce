"""How the trend is laid out as SVG: the axes, the scales, the lanes of courses.

Each result is a `<circle>` with `data-value`, `data-date` and `data-unit`; each course a
`<rect>` with `data-start`, `data-end` and `data-weekly-mg`. The chart has a `<title>` and a
`<desc>`; the page also shows the numbers as a table. Colours come from CSS classes.

The left margin (the y axes' numbers and units, the course lanes' names) is a second SVG,
`axis_svg`, drawn in the same units: the page keeps it in view while a narrow chart scrolls
sideways, so the newest results are never read without their scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import TYPE_CHECKING

from clinical.fhirdates import DAYS_PER_MONTH
from clinical.record import format_number
from clinical.settings import Settings

if TYPE_CHECKING:
    from smartapp.trend import ChartPoint, CourseBar

WIDTH = 960
LEFT, RIGHT = 100, 96  # the right margin holds the reference lines' labels
PLOT_WIDTH = WIDTH - LEFT - RIGHT
ESTRADIOL_HEIGHT = 210
TESTOSTERONE_HEIGHT = 110
LANE_HEIGHT = 26
MAX_LABELLED_POINTS = 16


Scale = Callable[[float], float]


def day_text(moment: datetime | None) -> str:
    return moment.date().isoformat() if moment else ""


Scale = Callable[[float], float]


# -- layout -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    now: datetime
    start: datetime
    end: datetime
    has_testosterone: bool
    lanes: dict[str, list[list[CourseBar]]]  # drug -> rows of non-overlapping bars

    def x(self, moment: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        offset = (moment - self.start).total_seconds() / span
        return LEFT + max(0.0, min(1.0, offset)) * PLOT_WIDTH


def axis_start(
    estradiol: tuple[ChartPoint, ...],
    testosterone: tuple[ChartPoint, ...],
    courses: tuple[CourseBar, ...],
    now: datetime,
    since: datetime,
) -> datetime:
    moments = [p.date for p in (*estradiol, *testosterone)]
    moments += [c.start for c in courses if c.drug == "anastrozole" and c.start]
    if not moments:
        return now - timedelta(days=365)
    first = max(min(moments), since)
    return min(first - timedelta(days=30), now - timedelta(days=90))


def lanes(courses: tuple[CourseBar, ...]) -> dict[str, list[list[CourseBar]]]:
    lanes: dict[str, list[list[CourseBar]]] = {}
    for drug in ("anastrozole", "testosterone"):
        rows: list[list[CourseBar]] = []
        # Undated courses first; FHIR dates are parsed timezone-aware, so the stand-in is too.
        bars = sorted(
            (c for c in courses if c.drug == drug),
            key=lambda c: c.start or datetime.min.replace(tzinfo=UTC),
        )
        for bar in bars:
            for row in rows:
                last = row[-1]
                if last.end is not None and bar.start is not None and last.end <= bar.start:
                    row.append(bar)
                    break
            else:
                rows.append([bar])
        if rows:
            lanes[drug] = rows
    return lanes


def _nice_step(top: float, ticks: int = 5) -> float:
    raw = top / ticks
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _time_ticks(start: datetime, end: datetime) -> list[tuple[datetime, str]]:
    months = max(1, round((end - start).days / DAYS_PER_MONTH))
    every = next(step for step in (1, 2, 3, 6, 12, 24) if months / step <= 10)
    ticks = []
    year, month = start.year, start.month + 1
    if month > 12:
        year, month = year + 1, 1
    while True:
        moment = start.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
        if moment > end:
            break
        if (month - 1) % every == 0:
            label = str(year) if every >= 12 else moment.strftime("%b %Y")
            ticks.append((moment, label))
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return ticks


def _f(value: float) -> str:
    return f"{value:.1f}"


# -- SVG ----------------------------------------------------------------------------------------


def render(
    layout: Layout,
    estradiol: tuple[ChartPoint, ...],
    testosterone: tuple[ChartPoint, ...],
    courses: tuple[CourseBar, ...],
    band: tuple[float, float] | None,
    band_text: str,
    settings: Settings,
    description: str,
    ceiling: float | None,
) -> tuple[str, str]:
    """The plot and its left margin (the axis column), as two SVGs of the same height."""
    out: list[str] = []
    axis: list[str] = []  # what the panels put in the left margin
    y = 30.0
    e2_top = y
    y += ESTRADIOL_HEIGHT
    t_top = y + 34
    if layout.has_testosterone:
        y = t_top + TESTOSTERONE_HEIGHT
    lanes_top = y + 34
    lane_rows = sum(len(rows) for rows in layout.lanes.values())
    lanes_height = max(1, lane_rows) * (LANE_HEIGHT + 8) + 8
    axis_y = lanes_top + lanes_height
    height = axis_y + 34

    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend-chart" role="img" '
        f'viewBox="{LEFT} 0 {WIDTH - LEFT} {_f(height)}" aria-labelledby="trend-title trend-desc" '
        f'data-start="{day_text(layout.start)}" data-end="{day_text(layout.end)}">'
    )
    out.append('<title id="trend-title">Estradiol over time, with anastrozole courses</title>')
    out.append(f'<desc id="trend-desc">{escape(description)}</desc>')

    # time grid and ticks, across every panel
    out.append('<g class="time-grid" aria-hidden="true">')
    for moment, label in _time_ticks(layout.start, layout.end):
        x = layout.x(moment)
        out.append(
            f'<line class="grid" x1="{_f(x)}" y1="{_f(e2_top)}" x2="{_f(x)}" y2="{_f(axis_y)}"/>'
        )
        out.append(
            f'<text class="tick tick-x" x="{_f(x)}" y="{_f(axis_y + 20)}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<line class="axis" x1="{LEFT}" y1="{_f(axis_y)}" x2="{WIDTH - RIGHT}" y2="{_f(axis_y)}"/>'
    )
    out.append("</g>")

    out.extend(
        _estradiol_panel(
            layout, estradiol, band, band_text, settings, e2_top, axis, ceiling=ceiling
        )
    )
    if layout.has_testosterone:
        out.extend(_testosterone_panel(layout, testosterone, t_top, axis))
    out.extend(_lanes_svg(layout, lanes_top, axis))

    today = layout.x(layout.now)
    out.append(
        f'<g class="today"><line x1="{_f(today)}" y1="{_f(e2_top - 6)}" x2="{_f(today)}" '
        f'y2="{_f(axis_y)}"/><text class="today-label" x="{_f(today - 4)}" y="{_f(e2_top - 10)}" '
        f'text-anchor="end">Today</text></g>'
    )
    out.append("</svg>")
    axis_svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trend-axis" aria-hidden="true" '
        f'viewBox="0 0 {LEFT} {_f(height)}">{"".join(axis)}</svg>'
    )
    return "".join(out), axis_svg


def _y_scale(top_value: float, panel_top: float, panel_height: float) -> Scale:
    def y(value: float) -> float:
        return panel_top + panel_height - (value / top_value) * panel_height

    return y


def _y_axis(
    title: str,
    unit: str,
    top_value: float,
    step: float,
    panel_top: float,
    panel_height: float,
    y: Scale,
    axis: list[str],
) -> list[str]:
    """The panel's title and grid lines in the plot; its numbers, its unit (turned along the
    axis) and the axis line in the left margin, `axis`."""
    out = [
        f'<text class="panel-title" x="{LEFT}" y="{_f(panel_top - 10)}">{escape(title)}</text>',
        '<g class="y-grid" aria-hidden="true">',
    ]
    middle = _f(panel_top + panel_height / 2)
    axis.append(
        f'<g class="y-axis"><text class="axis-unit" x="16" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 16 {middle})">{escape(unit)}</text>'
    )
    value = 0.0
    while value <= top_value + 1e-9:
        ty = y(value)
        out.append(
            f'<line class="grid grid-y" x1="{LEFT}" y1="{_f(ty)}" x2="{WIDTH - RIGHT}" y2="{_f(ty)}"/>'
        )
        axis.append(
            f'<text class="tick tick-y" x="{LEFT - 8}" y="{_f(ty + 4)}" text-anchor="end">'
            f"{format_number(value)}</text>"
        )
        value += step
    out.append("</g>")
    axis.append(  # at the margin's right edge, inside it
        f'<line class="axis" x1="{LEFT - 0.5}" y1="{_f(panel_top)}" x2="{LEFT - 0.5}" '
        f'y2="{_f(panel_top + panel_height)}"/></g>'
    )
    return out


def _scale_top(values: list[float], minimum: float) -> tuple[float, float]:
    highest = max([*values, minimum])
    step = _nice_step(highest * 1.12)
    return step * math.ceil(highest * 1.12 / step), step


def _estradiol_panel(
    layout: Layout,
    points: tuple[ChartPoint, ...],
    band: tuple[float, float] | None,
    band_text: str,
    settings: Settings,
    top: float,
    axis: list[str],
    *,
    ceiling: float | None,
) -> list[str]:
    reference_lines = [ceiling] if ceiling is not None else []
    if band:
        reference_lines += [band[1], settings.estradiol_floor_pg_ml]
    top_value, step = _scale_top([p.value for p in points] + reference_lines, 40.0)
    y = _y_scale(top_value, top, ESTRADIOL_HEIGHT)
    out = _y_axis("Estradiol (pg/mL)", "pg/mL", top_value, step, top, ESTRADIOL_HEIGHT, y, axis)
    out.append('<g class="estradiol">')
    right = WIDTH - RIGHT
    if band:
        low, high = band
        out.append(
            f'<rect class="band" x="{LEFT}" y="{_f(y(high))}" width="{PLOT_WIDTH}" '
            f'height="{_f(y(low) - y(high))}" data-low="{format_number(low)}" '
            f'data-high="{format_number(high)}"><title>{escape(band_text)}</title></rect>'
        )
        out.append(
            f'<text class="band-label" x="{right + 6}" y="{_f((y(high) + y(low)) / 2 + 4)}">'
            f"target {format_number(low)}–{format_number(high)}</text>"
        )
        floor = settings.estradiol_floor_pg_ml
        out.append(
            f'<line class="floor" x1="{LEFT}" y1="{_f(y(floor))}" x2="{right}" y2="{_f(y(floor))}"/>'
            f'<text class="line-label floor-label" x="{right + 6}" y="{_f(y(floor) + 12)}">'
            f"floor {format_number(floor)}</text>"
        )
        critical = settings.estradiol_critical_pg_ml
        out.append(
            f'<line class="critical-line" x1="{LEFT}" y1="{_f(y(critical))}" x2="{right}" '
            f'y2="{_f(y(critical))}"/><text class="line-label critical-label" x="{right + 6}" '
            f'y="{_f(y(critical) + 4)}">critical {format_number(critical)}</text>'
        )
    if ceiling is not None:
        out.append(
            f'<line class="ceiling" x1="{LEFT}" y1="{_f(y(ceiling))}" x2="{right}" '
            f'y2="{_f(y(ceiling))}"/><text class="line-label" x="{right + 6}" '
            f'y="{_f(y(ceiling) + 4)}">ceiling {format_number(ceiling)}</text>'
        )
    if not points:  # an empty panel must say so, not look like a chart with nothing low
        out.append(
            f'<text class="band-note empty-note" x="{LEFT + PLOT_WIDTH / 2:.1f}" '
            f'y="{_f(top + ESTRADIOL_HEIGHT / 2)}" text-anchor="middle">'
            "No estradiol results on record</text>"
        )
    out.extend(_series(layout, points, y, "estradiol"))
    out.append("</g>")
    return out


def _testosterone_panel(
    layout: Layout, points: tuple[ChartPoint, ...], top: float, axis: list[str]
) -> list[str]:
    top_value, _ = _scale_top([p.value for p in points], 100.0)
    step = _nice_step(top_value, 3)
    y = _y_scale(top_value, top, TESTOSTERONE_HEIGHT)
    unit = points[0].unit if points else "ng/dL"
    out = _y_axis(
        f"Total testosterone ({unit})", unit, top_value, step, top, TESTOSTERONE_HEIGHT, y, axis
    )
    out.append('<g class="testosterone">')
    out.extend(_series(layout, points, y, "testosterone"))
    out.append("</g>")
    return out


def _series(layout: Layout, points: tuple[ChartPoint, ...], y: Scale, series: str) -> list[str]:
    out: list[str] = []
    if len(points) > 1:
        coords = " ".join(f"{_f(layout.x(p.date))},{_f(y(p.value))}" for p in points)
        out.append(f'<polyline class="trend-line trend-{series}" points="{coords}"/>')
    labelled = len(points) <= MAX_LABELLED_POINTS
    for index, point in enumerate(points):
        cx, cy = layout.x(point.date), y(point.value)
        hollow = " point-bound" if point.comparator else ""
        words = f"{point.shown} on {day_text(point.date)}" + (
            f", {point.status_text}" if point.status_text else ""
        )
        comparator = f' data-comparator="{escape(point.comparator)}"' if point.comparator else ""
        out.append(
            f'<circle class="point point-{series} point-{point.status}{hollow}" '
            f'cx="{_f(cx)}" cy="{_f(cy)}" r="5.5" data-series="{series}" '
            f'data-value="{format_number(point.value)}" data-date="{day_text(point.date)}" '
            f'data-unit="{escape(point.unit)}" data-status="{point.status}"{comparator} '
            f'data-ref="{escape(point.ref)}"><title>{escape(words)}</title></circle>'
        )
        if labelled or index == len(points) - 1:
            value_text = f"{point.comparator or ''}{format_number(point.value)}"
            out.append(
                f'<text class="point-label point-label-{point.status}" x="{_f(cx)}" '
                f'y="{_f(cy - 10)}" text-anchor="middle" aria-hidden="true">{escape(value_text)}</text>'
            )
    return out


def _lanes_svg(layout: Layout, top: float, axis: list[str]) -> list[str]:
    """The course bars in the plot; each lane's name in the left margin, `axis`."""
    out = ['<g class="courses">']
    row_y = top
    titles = {"anastrozole": "Anastrozole", "testosterone": "Testosterone"}
    if not layout.lanes:
        out.append(
            f'<text class="band-note" x="{LEFT + 10}" y="{_f(top + 18)}">'
            "No anastrozole or testosterone courses on record</text>"
        )
    for drug, rows in layout.lanes.items():
        for row_index, row in enumerate(rows):
            if row_index == 0:
                axis.append(
                    f'<text class="lane-title" x="{LEFT - 8}" y="{_f(row_y + 17)}" '
                    f'text-anchor="end">{escape(titles[drug])}</text>'
                )
            for bar in row:
                out.append(_bar_svg(layout, bar, row_y))
            row_y += LANE_HEIGHT + 8
    out.append("</g>")
    return out


def _bar_svg(layout: Layout, bar: CourseBar, y: float) -> str:
    start = bar.start or layout.start
    end = bar.end or layout.now
    x1, x2 = layout.x(max(start, layout.start)), layout.x(min(end, layout.end))
    width = max(3.0, x2 - x1)
    clipped = bar.start is None or bar.start < layout.start
    since = f"since {day_text(bar.start)}" if bar.start else "start not recorded"
    until = f"until {day_text(bar.end)}" if bar.end else bar.open_end()
    words = f"{bar.name}: {bar.dose_text}, {since}, {until} ({bar.status})"
    label = bar.dose_text + (f" · since {day_text(bar.start)}" if clipped and bar.start else "")
    if bar.end is None and not bar.current:
        label += f" · {bar.status}, end not recorded"
    inside = width > 7.2 * len(label) + 16
    label_x = x1 + 8 if inside else x2 + 6
    if not inside and label_x + 7.2 * len(label) > WIDTH - RIGHT:
        label_x, anchor = x1 - 6, "end"
    else:
        anchor = "start"
    weekly = (
        f' data-weekly-mg="{format_number(bar.weekly_mg)}"' if bar.weekly_mg is not None else ""
    )
    return (
        f'<g class="course course-{bar.drug} course-{escape(bar.status)}">'
        f'<rect x="{_f(x1)}" y="{_f(y)}" width="{_f(width)}" height="{LANE_HEIGHT}" rx="4" '
        f'data-drug="{bar.drug}" data-start="{day_text(bar.start)}" data-end="{day_text(bar.end)}"'
        f'{weekly} data-ref="{escape(bar.ref)}"><title>{escape(words)}</title></rect>'
        f'<text class="course-label{" course-label-inside" if inside else ""}" x="{_f(label_x)}" '
        f'y="{_f(y + 17.5)}" text-anchor="{anchor}" aria-hidden="true">{escape(label)}</text></g>'
    )
