"""What several rules share: dates as clinicians read them, the detail layout, due checks."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from clinical.fhirdates import DAYS_PER_MONTH
from clinical.record import LabResult, MedicationCourse

_AROMATASE_INHIBITORS = ("anastrozole", "letrozole", "exemestane")


def day(moment: datetime) -> str:
    return moment.date().isoformat()


def months(span: timedelta) -> int:
    return round(span.days / DAYS_PER_MONTH)


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
    assay = f", {result.method}" if result.method else ""
    status = "" if result.rank == 2 else f", {result.status or 'status unknown'}"
    return (
        f"{result.name or result.code}: **{result.shown()}** on {day(result.date)}{assay}{status}"
    )


def fit(summary: str, shorter: str) -> str:
    """The summary, or a shorter one when it would pass the 140 characters CDS Hooks allows."""
    return summary if len(summary) <= 140 else shorter[:140]


def drug_label(course: MedicationCourse) -> str:
    """The generic name a card speaks of: "anastrozole", not the brand or the product string."""
    name = course.name.lower()
    if "anastrozole" in course.drugs:
        return "anastrozole"
    return next((drug for drug in _AROMATASE_INHIBITORS if drug in name), "an aromatase inhibitor")
