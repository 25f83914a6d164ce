"""bone-loss-on-ai: osteoporosis or a low T-score on an AI without bone-protective therapy."""

from __future__ import annotations

from datetime import datetime

from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord, format_number
from clinical.rules.common import condition_lines, day, detail, drug_label, fit, names_of
from clinical.rules.dexa_due import lowest_recent_t_score
from clinical.rules.rule import (
    BONE_THERAPY_ELSEWHERE,
    MANAGED_BY_ONCOLOGY,
    PATIENT_DECLINED,
    Input,
    Rule,
)
from clinical.settings import Settings

RULE_ID = "bone-loss-on-ai"
SOURCE = (
    "ASCO 2019 Rec 3.4 (Shapiro, JCO 37:2916): bisphosphonate or denosumab at T-score <= -2.5; "
    "ATAC 5-year BMD loss (Eastell 2006 JCO)"
)


def bone_loss_on_ai(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    courses = record.current_courses("aromatase-inhibitors")
    if not courses or record.current_courses("bone-protective-therapy"):
        return []
    conditions = record.conditions_in("osteoporosis")
    t_score = lowest_recent_t_score(record)
    osteoporotic_t = t_score is not None and t_score[0] <= settings.osteoporosis_t_score
    if not conditions and not osteoporotic_t:
        return []
    drug = drug_label(courses[0])
    lines = [f"On {names_of(courses)}; no bisphosphonate or denosumab."]
    evidence = [course.ref for course in courses]
    if osteoporotic_t and t_score is not None:
        t_result = next(r for r in record.results("dxa-tscore") if r.ref == t_score[1])
        lines.append(f"{t_result.name}: **{format_number(t_score[0])}** on {day(t_result.date)}")
        evidence.append(t_score[1])
        summary = fit(
            f"T-score {format_number(t_score[0])} on {drug} without bone-protective therapy: "
            "consider bisphosphonate or denosumab",
            f"T-score {format_number(t_score[0])} on {drug} without bone-protective therapy",
        )
    else:
        summary = f"Osteoporosis on {drug} without bone-protective therapy: consider bisphosphonate"
    lines += condition_lines(conditions)  # one line per condition, however often recorded
    evidence += [condition.ref for condition in conditions]
    lines.append("Calcium and vitamin D, and a bisphosphonate or denosumab at osteoporosis doses.")
    assessment = infer_intent(record, now)
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.WARNING,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=tuple(dict.fromkeys(evidence)),
            intent=assessment.intent if assessment else None,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Osteoporosis on an aromatase inhibitor without bone protection",
    meaning="Osteoporosis or a low T-score on an aromatase inhibitor without bone-protective therapy.",
    source=SOURCE,
    reads=frozenset({Input.BONE_DENSITY, Input.CLINIC_GIVEN}),
    override_reasons=(BONE_THERAPY_ELSEWHERE, MANAGED_BY_ONCOLOGY, PATIENT_DECLINED),
    check=bone_loss_on_ai,
)
