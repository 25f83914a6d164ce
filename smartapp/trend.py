"""The estradiol trend the page draws: what is on it, for one patient as of now.

One time axis, three layers from top to bottom:
- estradiol results, with the target band of the intent shaded (TRT modulation and
  fertility: the 20-30 pg/mL practice band and the 20 pg/mL floor; oncology suppression: no
  floor, suppression is the goal; unclear: nothing drawn, and the chart says why);
- total testosterone on the same time axis, when there is any;
- the anastrozole courses as bars with their weekly dose, and testosterone therapy.

Every status is also said in words (labels, titles, the description, the page's table).
`smartapp.trend_svg` lays it out as server-side SVG: no JavaScript, no CDN, works in any
EHR iframe.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from clinical.finding import Intent
from clinical.record import LabResult, MedicationCourse, PatientRecord, format_number
from clinical.settings import Settings
from smartapp.trend_svg import Layout, axis_start, day_text, lanes, render

HISTORY_LIMIT = timedelta(days=5 * 365)  # older results are left off the axis (and said so)

_MODULATION = (Intent.TRT_MODULATION, Intent.FERTILITY)


@dataclass(frozen=True)
class ChartPoint:
    date: datetime
    value: float
    unit: str
    comparator: str | None
    shown: str  # "11 pg/mL", "<5 pg/mL"
    status: str  # critical | low | in-band | high | neutral
    status_text: str  # said in words: "below the 20 pg/mL floor"
    ref: str


@dataclass(frozen=True)
class CourseBar:
    drug: str  # "anastrozole" | "testosterone"
    name: str
    start: datetime | None
    end: datetime | None  # None: ongoing
    weekly_mg: float | None
    dose_text: str  # "0.5 mg twice weekly (1 mg/week)"
    status: str
    ref: str
    current: bool  # a course with no end date that is stopped or completed is not ongoing

    def open_end(self) -> str:
        """How a course without an end date ends: ongoing only while it is current."""
        return "ongoing" if self.current else f"{self.status}, end date not recorded"


@dataclass(frozen=True)
class TrendChart:
    svg: str  # the plot: viewBox x from LEFT to WIDTH
    axis_svg: str  # the left margin, x from 0 to LEFT, the same height and scale
    estradiol: tuple[ChartPoint, ...]
    testosterone: tuple[ChartPoint, ...]
    courses: tuple[CourseBar, ...]
    band: tuple[float, float] | None
    band_text: str
    description: str
    left_out: tuple[str, ...]
    ceiling: float | None = None  # the estradiol ceiling line, drawn for a man on testosterone


def _estradiol_status(
    result: LabResult, intent: Intent | None, on_testosterone: bool, settings: Settings
) -> tuple[str, str]:
    if intent in _MODULATION:
        if result.is_below(settings.estradiol_critical_pg_ml):
            return "critical", f"below {format_number(settings.estradiol_critical_pg_ml)} pg/mL"
        if result.is_below(settings.estradiol_floor_pg_ml):
            return "low", f"below the {format_number(settings.estradiol_floor_pg_ml)} pg/mL floor"
    if on_testosterone and result.is_above(settings.estradiol_ceiling_pg_ml):
        return "high", f"above the {format_number(settings.estradiol_ceiling_pg_ml)} pg/mL ceiling"
    if intent in _MODULATION:
        low, high = settings.estradiol_target_band_pg_ml
        if result.is_below(low) is False and result.is_above(high) is False:
            return "in-band", "in the target band"
    return "neutral", ""


def _points(results: list[LabResult], since: datetime) -> tuple[list[LabResult], int]:
    """Results with a value since `since`, oldest first, and how many older ones were left off."""
    usable = [r for r in results if r.value is not None and r.date >= since]
    older = sum(1 for r in results if r.value is not None and r.date < since)
    return sorted(usable, key=lambda r: r.date), older


def _dose_text(course: MedicationCourse) -> str:
    weekly = course.dose.weekly_mg
    if weekly is None:
        # The core reads doses of aromatase inhibitors only: name the product instead.
        return course.dose.description or course.name or "dose not read"
    per_week = f"{format_number(weekly)} mg/week"
    if course.dose.description and course.dose.description != per_week:
        return f"{course.dose.description} ({per_week})"
    return per_week


def _bar(course: MedicationCourse, drug: str, now: datetime) -> CourseBar:
    return CourseBar(
        drug=drug,
        name=course.name,
        start=course.start,
        end=course.end,
        weekly_mg=course.dose.weekly_mg,
        dose_text=_dose_text(course),
        status=course.status,
        ref=course.ref,
        current=course.is_current(now),
    )


def trend_chart(
    record: PatientRecord, intent: Intent | None, settings: Settings, now: datetime
) -> TrendChart:
    """The chart for one patient as of `now`."""
    since = now - HISTORY_LIMIT
    testosterone_courses = [c for c in record.courses("testosterone-products") if not c.is_draft]
    on_testosterone = any(c.is_current(now) for c in testosterone_courses)
    estradiol_results, older_e2 = _points(record.results("estradiol-serum"), since)
    testosterone_results, older_t = _points(record.results("testosterone-total"), since)

    estradiol = tuple(
        ChartPoint(
            r.date,
            r.value or 0.0,
            r.unit,
            r.comparator,
            r.shown(),
            *_estradiol_status(r, intent, on_testosterone, settings),
            r.ref,
        )
        for r in estradiol_results
    )
    testosterone = tuple(
        ChartPoint(r.date, r.value or 0.0, r.unit, r.comparator, r.shown(), "neutral", "", r.ref)
        for r in testosterone_results
    )
    courses = tuple(
        [_bar(c, "anastrozole", now) for c in record.courses("anastrozole") if not c.is_draft]
        + [_bar(c, "testosterone", now) for c in testosterone_courses]
    )
    left_out = []
    unreadable = [r for r in record.results("estradiol-serum") if r.value is None]
    if unreadable:
        left_out.append(
            f"{len(unreadable)} estradiol result(s) not drawn: no value the chart can place "
            f"({', '.join(r.as_sent or 'no value' for r in unreadable[:3])})"
        )
    if older_e2 or older_t:
        left_out.append(f"{older_e2 + older_t} result(s) older than 5 years not drawn")

    band: tuple[float, float] | None = None
    if intent in _MODULATION:
        band = settings.estradiol_target_band_pg_ml
        band_text = (
            f"Target {format_number(band[0])}–{format_number(band[1])} pg/mL "
            f"({intent.label if intent else ''}: practice target, not guideline-endorsed)"
        )
    elif intent is Intent.ONCOLOGY_SUPPRESSION:
        band_text = "Oncology suppression: low estradiol is the goal, so no floor is drawn"
    elif intent is Intent.UNCLEAR:
        band_text = "Intent unclear: no target band is drawn"
    else:
        band_text = "Not on anastrozole: no target band is drawn"

    description = _describe(estradiol, testosterone, courses, band_text)
    layout = Layout(
        now=now,
        start=axis_start(estradiol, testosterone, courses, now, since),
        end=now + timedelta(days=14),
        has_testosterone=bool(testosterone),
        lanes=lanes(courses),
    )
    # The ceiling goes with the therapy (as the points' status does), not with T results.
    ceiling = settings.estradiol_ceiling_pg_ml if on_testosterone else None
    svg, axis_svg = render(
        layout, estradiol, testosterone, courses, band, band_text, settings, description, ceiling
    )
    return TrendChart(
        svg,
        axis_svg,
        estradiol,
        testosterone,
        courses,
        band,
        band_text,
        description,
        tuple(left_out),
        ceiling,
    )


def _describe(
    estradiol: tuple[ChartPoint, ...],
    testosterone: tuple[ChartPoint, ...],
    courses: tuple[CourseBar, ...],
    band_text: str,
) -> str:
    parts = []
    if estradiol:
        latest = estradiol[-1]
        parts.append(
            f"{len(estradiol)} estradiol result(s) from {day_text(estradiol[0].date)} to "
            f"{day_text(latest.date)}; latest {latest.shown} on {day_text(latest.date)}"
            + (f", {latest.status_text}" if latest.status_text else "")
            + "."
        )
    else:
        parts.append("No estradiol results on record.")
    parts.append(band_text + ".")
    if testosterone:
        latest = testosterone[-1]
        parts.append(
            f"{len(testosterone)} testosterone result(s); latest {latest.shown} on {day_text(latest.date)}."
        )
    for bar in courses:
        since = f"from {day_text(bar.start)}" if bar.start else "start not recorded"
        until = f" to {day_text(bar.end)}" if bar.end else f", {bar.open_end()}"
        parts.append(f"{bar.drug.capitalize()} {bar.dose_text}, {since}{until}.")
    return " ".join(parts)
