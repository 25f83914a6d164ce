"""estradiol-low: over-suppression where the intent is modulation or fertility, not suppression."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Intent, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord, format_number
from clinical.rules.common import day, detail, lab_line
from clinical.rules.rule import (
    DOSE_CHANGE_PLANNED,
    MANAGED_BY_SPECIALIST,
    PATIENT_DECLINED,
    WILL_REPEAT,
    Input,
    Rule,
)
from clinical.settings import Settings

RULE_ID = "estradiol-low"
SOURCE = (
    "TRT practice target 20-30 pg/mL (common practice, not guideline-endorsed); Fink 2006 JCEM, "
    "MrOS (osteoporosis with E2 < 10 pg/mL); ARUP 0093247 (LC-MS/MS on aromatase inhibitors)"
)
MODULATION = (Intent.TRT_MODULATION, Intent.FERTILITY)


def estradiol_low(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    # Men only: the floor, the target band and the critical cut-off are male numbers (the
    # TRT target; LC-MS/MS adult male range 10-42 pg/mL; MrOS, older men). Below 20 pg/mL is
    # usual after menopause; a woman with a modulation intent gets dose-intent-mismatch's
    # "check the indication" instead.
    if record.sex.value != "male":
        return []
    assessment = infer_intent(record, now)
    if assessment is None or assessment.intent not in MODULATION:
        return []
    course = assessment.course
    # A draft order is judged on the estradiol it would start from; a running course on
    # results since it started (earlier ones do not show its effect).
    start = assessment.therapy_start
    since = now - settings.estradiol_interval if assessment.new_start or not start else start
    latest = record.latest("estradiol-serum", since=since)
    if latest is None or latest.is_below(settings.estradiol_floor_pg_ml) is not True:
        return []
    critical = latest.is_below(settings.estradiol_critical_pg_ml) is True
    floor = format_number(
        settings.estradiol_critical_pg_ml if critical else settings.estradiol_floor_pg_ml
    )
    label = "TRT" if assessment.intent is Intent.TRT_MODULATION else "fertility"
    if assessment.new_start:
        summary = (
            f"Estradiol {latest.shown()} before starting anastrozole ({label}): "
            f"already below {floor} pg/mL floor"
        )
    elif critical:
        summary = (
            f"Estradiol {latest.shown()} on anastrozole ({label}): below {floor} pg/mL, "
            "severe over-suppression"
        )
    else:
        summary = f"Estradiol {latest.shown()} on anastrozole ({label}): below {floor} pg/mL floor"
    low, high = settings.estradiol_target_band_pg_ml
    lines = [
        lab_line(latest),
        f"Intent {assessment.intent.label}: target band {format_number(low)}-"
        f"{format_number(high)} pg/mL (practice target, not guideline-endorsed).",
        f"Anastrozole {course.dose.description or 'dose not stated'}"
        + (f", since {day(start)}" if start and not assessment.new_start else ""),
    ]
    if critical:
        lines.append(
            f"Below {format_number(settings.estradiol_critical_pg_ml)} pg/mL: severe "
            "over-suppression; bone loss risk (MrOS)."
        )
    ratio = _testosterone_to_estradiol(record, latest.date, latest.value)
    if ratio and assessment.intent is Intent.FERTILITY:
        lines.append(ratio)
    if not latest.method:
        lines.append(
            "Assay not stated: immunoassays read unreliably at these levels; LC-MS/MS preferred."
        )
    lines.append(
        "Consider reducing or holding anastrozole and repeating estradiol with a sensitive assay."
    )
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            summary=summary,
            detail=detail(lines, SOURCE, record.gaps_for("estradiol-serum")),
            source=SOURCE,
            evidence=(latest.ref, course.ref),
            suggested_orders=(orders.ESTRADIOL,),
            intent=assessment.intent,
            data_gaps=tuple(record.gaps_for("estradiol-serum")),
        )
    ]


def _testosterone_to_estradiol(
    record: PatientRecord, when: datetime, estradiol: float | None
) -> str | None:
    """T/E2 (ng/dL over pg/mL) when a total testosterone was drawn the same day."""
    if not estradiol:
        return None
    for result in record.results("testosterone-total"):
        if result.value is not None and result.date.date() == when.date():
            ratio = result.value / estradiol
            return (
                f"Testosterone {result.shown()} the same day: T/E2 ratio {ratio:.0f} "
                "(below 10 is abnormal in infertility work-ups; Raman & Schlegel 2002)."
            )
    return None


RULE = Rule(
    id=RULE_ID,
    title="Estradiol below the floor",
    meaning="Estradiol below the floor where the intent is modulation or fertility, not suppression.",
    source=SOURCE,
    reads=frozenset({Input.ESTRADIOL}),
    override_reasons=(DOSE_CHANGE_PLANNED, WILL_REPEAT, MANAGED_BY_SPECIALIST, PATIENT_DECLINED),
    check=estradiol_low,
)
