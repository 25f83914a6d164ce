"""dexa-due: no baseline or no recent DXA while on an aromatase inhibitor."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Intent, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord, format_number
from clinical.rules.common import (
    detail,
    drug_label,
    duration,
    fit,
    monitoring_gap,
    months,
    names_of,
)
from clinical.rules.rule import MANAGED_BY_ONCOLOGY, MONITORING_DUE_REASONS, Input, Rule
from clinical.settings import Settings

RULE_ID = "dexa-due"
SOURCE = (
    "ASCO 2019 (Shapiro, JCO 37:2916): DXA at AI start, repeat every 2 years (1 year if "
    "indicated); Arimidex PI 5.2 (BMD decreases); men: baseline and serial DXA on long-term "
    "use (Burnett-Bowie 2009 JCEM: BMD loss in men after a year on anastrozole)"
)


def lowest_recent_t_score(record: PatientRecord) -> tuple[float, str] | None:
    """The lowest T-score of the most recent DXA day, with its reference."""
    results = [r for r in record.results("dxa-tscore") if r.value is not None]
    if not results:
        return None
    newest_day = results[0].date.date()
    lowest = min((r for r in results if r.date.date() == newest_day), key=lambda r: r.value or 0.0)
    return (lowest.value or 0.0), lowest.ref


def dexa_due(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    courses = record.current_courses("aromatase-inhibitors")
    if not courses:
        return []
    # When the AI began (a renewal does not restart it); a draft with nothing running starts now.
    start = record.therapy_start("aromatase-inhibitors")
    if start is None and any(course.is_draft for course in courses):
        start = now
    t_score = lowest_recent_t_score(record)
    low_bone_mass = bool(record.conditions_in("osteopenia")) or (
        t_score is not None and t_score[0] <= settings.low_bone_mass_t_score
    )
    interval = settings.dexa_interval_low_bone_mass if low_bone_mass else settings.dexa_interval
    if record.open_orders("dxa-procedure", since=now - interval):
        return []
    last = record.last_dexa()
    reason = monitoring_gap(
        last.date if last else None,
        now=now,
        interval=interval,
        start=start,
        baseline_window=settings.dexa_baseline_window,
    )
    if reason is None:
        return []
    assessment = infer_intent(record, now)
    # Intent is read for anastrozole; for another AI a breast-cancer diagnosis says oncology.
    if assessment is not None:
        oncology = assessment.intent is Intent.ONCOLOGY_SUPPRESSION
    else:
        oncology = bool(record.conditions_in("breast-cancer", active_only=False))
    exposure = now - start if start else None
    long_use = exposure is not None and exposure >= settings.male_dexa_warning_after
    if record.sex.value == "male" and not oncology and not long_use:
        # Men off oncology: baseline and serial DXA on long-term use, not at the start of a
        # course of a few months (a fertility course); from a year on the AI.
        return []
    if oncology or record.sex.value == "female" or long_use:
        severity = Severity.WARNING
    else:
        severity = Severity.INFO  # sex undetermined, first year: said, not pressed
    drug = drug_label(courses[0])
    summary = fit(f"DXA due on {drug}: {reason}", f"DXA due on {drug}: bone density scan needed")
    running = [course for course in courses if not course.is_draft]
    lines = [
        f"On {names_of(courses)}"
        + (
            f" for {duration(exposure)}"
            if exposure is not None and exposure.days > 0 and running
            else ""
        ),
        f"DXA: {reason}; due every {months(interval)} months"
        + (" (low bone mass)" if low_bone_mass else "")
        + " and at the start of therapy.",
    ]
    if t_score is not None:
        lines.append(f"Lowest T-score on the last DXA: {format_number(t_score[0])}")
    evidence = tuple(course.ref for course in courses) + ((last.ref,) if last else ())
    return [
        Finding(
            rule_id=RULE_ID,
            severity=severity,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=evidence,
            suggested_orders=(orders.DXA,),
            intent=assessment.intent if assessment else None,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="DXA bone density scan due",
    meaning="No baseline or no recent DXA bone density scan while on an aromatase inhibitor "
    "(women from the start; men on long-term use, from a year).",
    source=SOURCE,
    reads=frozenset({Input.BONE_DENSITY, Input.DXA}),
    override_reasons=(*MONITORING_DUE_REASONS, MANAGED_BY_ONCOLOGY),
    check=dexa_due,
)
