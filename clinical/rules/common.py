"""What several rules share: dates as clinicians read them, the detail layout, due checks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from clinical.fhirdates import DAYS_PER_MONTH
from clinical.record import ConditionEntry, LabResult, MedicationCourse

_AROMATASE_INHIBITORS = ("anastrozole", "letrozole", "exemestane")  # their value sets too


def day(moment: datetime) -> str:
    return moment.date().isoformat()


def months(span: timedelta) -> int:
    return round(span.days / DAYS_PER_MONTH)


def duration(span: timedelta) -> str:
    """A time on a drug as a clinician says it: "10 days", "5 months", "6 years 3 months"
    (never "0 months")."""
    days = span.days
    if days < 60:
        return f"{days} day{'s' if days != 1 else ''}"
    total = months(span)
    if total < 24:
        return f"{total} months"
    years, rest = divmod(total, 12)
    return f"{years} years" + (f" {rest} month{'s' if rest != 1 else ''}" if rest else "")


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def names_of(courses: Iterable[MedicationCourse]) -> str:
    """The courses' names, each once: an order and a statement of one drug are one drug."""
    return ", ".join(dict.fromkeys(course.name or "unnamed medication" for course in courses))


def condition_lines(conditions: Iterable[ConditionEntry]) -> list[str]:
    """One line per condition, however many times the chart records it (a problem-list entry
    and an encounter diagnosis of one code are one condition)."""
    lines: dict[tuple[str, str], str] = {}
    for condition in conditions:
        key = (condition.code, condition.name)
        if key not in lines:
            when = f", {day(condition.recorded)}" if condition.recorded else ""
            code = f" ({condition.code}{when})" if condition.code else ""
            lines[key] = f"{condition.name}{code}"
    return list(lines.values())


def detail(lines: Iterable[str], source: str, gaps: Iterable[str] = ()) -> str:
    """Markdown: the evidence as bullets, data that was left out, then the source."""
    text = "\n".join(f"- {line}" for line in lines if line)
    gap_lines = [f"- {gap}" for gap in gaps]
    if gap_lines:
        text += "\n\n**Left out:**\n" + "\n".join(gap_lines)
    return f"{text}\n\n*Source: {source}*"


def monitoring_gap(
    last: datetime | None,
    *,
    now: datetime,
    interval: timedelta,
    start: datetime | None = None,
    baseline_window: timedelta | None = None,
) -> str | None:
    """Why a periodic test is due, or None when it is not: none on record, none since the
    baseline window before the therapy started, or the last one older than the interval."""
    if last is None:
        return "none on record"
    if now - last > interval:
        return f"last on {day(last)}, {months(now - last)} months ago"
    if start is not None and baseline_window is not None and last < start - baseline_window:
        return f"none at the start of therapy on {day(start)} (last on {day(last)})"
    return None


def lab_line(result: LabResult) -> str:
    """A result as the card shows it, with the assay when the method or the code tells it."""
    assay = f", {result.method}" if result.method else ""
    if not assay and result.assay_rank == 1:
        assay = ", high-sensitivity method"
    status = "" if result.rank == 2 else f", {result.status or 'status unknown'}"
    unit = f" (no unit sent: {result.unit} from {result.code})" if result.unit_from_code else ""
    return (
        f"{result.name or result.code}: **{result.shown()}** on {day(result.date)}"
        f"{assay}{status}{unit}"
    )


def fit(summary: str, shorter: str) -> str:
    """The summary, or a shorter one when it would pass the 140 characters CDS Hooks allows."""
    return summary if len(summary) <= 140 else shorter[:140]


def drug_label(course: MedicationCourse) -> str:
    """The generic name a card speaks of: "anastrozole", not the brand or the product string."""
    for drug in _AROMATASE_INHIBITORS:  # brands (Femara, Aromasin) map to the ingredient
        if drug in course.drugs:
            return drug
    name = course.name.lower()
    return next((drug for drug in _AROMATASE_INHIBITORS if drug in name), "an aromatase inhibitor")
