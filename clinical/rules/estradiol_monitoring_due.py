"""estradiol-monitoring-due: anastrozole for modulation or fertility without a recent estradiol."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord, format_number
from clinical.rules.common import day, detail, fit, lab_line, monitoring_gap
from clinical.rules.estradiol_low import MODULATION
from clinical.rules.rule import MANAGED_BY_SPECIALIST, MONITORING_DUE_REASONS, Input, Rule
from clinical.settings import Settings

RULE_ID = "estradiol-monitoring-due"
SOURCE = (
    "TRT practice: anastrozole titrated to estradiol about every 3 months (no guideline interval); "
    "ARUP 0093247 (LC-MS/MS on aromatase inhibitors)"
)


def estradiol_monitoring_due(
    record: PatientRecord, settings: Settings, now: datetime
) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None or assessment.intent not in MODULATION:
        return []
    if record.open_orders("estradiol-serum", since=now - settings.estradiol_interval):
        return []  # already ordered
    course = assessment.course
    start = None if assessment.new_start else assessment.therapy_start
    if start is not None and now - start < settings.estradiol_grace:
        return []  # too soon after starting for a result to mean anything
    floor = settings.estradiol_floor_pg_ml
    # A result counts when it can tell whether estradiol is under the floor: "<30" cannot.
    informative = [
        r
        for r in record.results("estradiol-serum")
        if r.value is not None
        and r.is_below(floor) is not None
        and (start is None or r.date >= start)
    ]
    last = informative[0].date if informative else None
    reason = monitoring_gap(last, now=now, interval=settings.estradiol_interval)
    if reason is None:
        return []
    # Drawn, but with nothing to compare ("Not detected", an unknown unit): said as such, never
    # as "none"; the data gaps below name each one.
    unreadable = any(
        r.value is None and (start is None or r.date >= start)
        for r in record.results("estradiol-serum")
    )
    if last is None and start is not None:
        readable = "none readable" if unreadable else "none"
        reason = f"{readable} since anastrozole started on {day(start)}"
    elif last is None and unreadable:
        reason = "none readable on record"
    if assessment.new_start:
        reason = f"no baseline before starting anastrozole ({reason})"
    days = settings.estradiol_interval.days
    summary = fit(
        f"Estradiol due on anastrozole ({assessment.intent.label}): {reason}",
        f"Estradiol due on anastrozole ({assessment.intent.label}): none in {days} days",
    )
    lines = [
        f"Anastrozole {course.dose.description or ''} for {assessment.intent.label}: estradiol "
        f"every {days} days to titrate the dose (target {format_number(floor)}+ pg/mL).",
        f"Estradiol: {reason}.",
    ]
    uninformative = [
        r
        for r in record.results("estradiol-serum")
        if r.value is not None and r.is_below(floor) is None
    ]
    if uninformative:
        lines.append(
            f"{lab_line(uninformative[0])}: cannot tell whether estradiol is under "
            f"{format_number(floor)} pg/mL; use a sensitive (LC-MS/MS) assay."
        )
    gaps = record.gaps_for("estradiol-serum")
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=summary,
            detail=detail(lines, SOURCE, gaps),
            source=SOURCE,
            evidence=(course.ref, *(r.ref for r in informative[:1])),
            suggested_orders=(orders.ESTRADIOL,),
            intent=assessment.intent,
            data_gaps=tuple(gaps),
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Estradiol check due",
    meaning="On anastrozole for modulation or fertility and no recent estradiol result.",
    source=SOURCE,
    reads=frozenset({Input.ESTRADIOL}),
    override_reasons=(*MONITORING_DUE_REASONS, MANAGED_BY_SPECIALIST),
    check=estradiol_monitoring_due,
)
