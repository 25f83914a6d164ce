"""estradiol-high: estradiol above the ceiling in a man on testosterone therapy."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import ADULT_AGE, infer_intent
from clinical.record import PatientRecord, format_number
from clinical.rules.common import day, detail, lab_line
from clinical.rules.rule import MANAGED_BY_SPECIALIST, PATIENT_DECLINED, WILL_REPEAT, Input, Rule
from clinical.settings import Settings

RULE_ID = "estradiol-high"
SOURCE = (
    "Adult male upper reference limit ~40-43 pg/mL (ARUP 0093247 LC-MS/MS 10-42 pg/mL; hospital "
    "catalogues); Endocrine Society 2018 TRT guideline (Bhasin, JCEM 103:1715)"
)


def estradiol_high(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    # Adult male numbers: not for a boy (delayed puberty is treated with testosterone).
    if record.sex.value != "male" or (record.age is not None and record.age < ADULT_AGE):
        return []
    testosterone = record.current_courses("testosterone-products")
    if not testosterone:
        return []
    # Results since the testosterone began (a renewal does not restart it); a draft starts now.
    start = record.therapy_start("testosterone-products")
    if start is None and any(course.is_draft for course in testosterone):
        start = now
    since = start or now - settings.estradiol_interval
    latest = record.latest("estradiol-serum", since=since)
    if latest is None or latest.is_above(settings.estradiol_ceiling_pg_ml) is not True:
        return []
    ceiling = format_number(settings.estradiol_ceiling_pg_ml)
    # "despite anastrozole" only when he was taking it when the blood was drawn: not for a
    # draft, nor for a course started after the result
    on_ai = [
        course
        for course in record.current_courses("anastrozole")
        if not course.is_draft and course.start is not None and course.start <= latest.date
    ]
    assessment = infer_intent(record, now)
    summary = f"Estradiol {latest.shown()} on testosterone therapy: above {ceiling} pg/mL"
    if on_ai:
        summary += " despite anastrozole"
    lines = [
        lab_line(latest),
        *(
            f"{course.name}" + (f", since {day(course.start)}" if course.start else "")
            for course in testosterone
        ),
        "Repeat with a sensitive (LC-MS/MS) assay and ask about breast tenderness, "
        "gynecomastia, fluid retention; review the testosterone dose and interval first.",
    ]
    if not record.current_courses("anastrozole"):
        lines.append("An aromatase inhibitor in men on TRT is off-label; not for a number alone.")
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=summary,
            detail=detail(lines, SOURCE, record.gaps_for("estradiol-serum")),
            source=SOURCE,
            evidence=(latest.ref, *(course.ref for course in testosterone)),
            suggested_orders=(orders.ESTRADIOL,),
            intent=assessment.intent if assessment else None,
            data_gaps=tuple(record.gaps_for("estradiol-serum")),
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Estradiol above the ceiling on testosterone",
    meaning="Estradiol above the ceiling in a man on testosterone therapy.",
    source=SOURCE,
    reads=frozenset({Input.ESTRADIOL}),
    override_reasons=(WILL_REPEAT, MANAGED_BY_SPECIALIST, PATIENT_DECLINED),
    check=estradiol_high,
)
