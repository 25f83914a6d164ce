"""anastrozole-intent: what the anastrozole is for, and the evidence that says so."""

from __future__ import annotations

from datetime import datetime

from clinical.finding import Finding, Intent, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import day, detail, fit
from clinical.rules.rule import INDICATION_DOCUMENTED, NOT_APPLICABLE, Rule
from clinical.settings import Settings

RULE_ID = "anastrozole-intent"
SOURCE = (
    "Arimidex (anastrozole) US prescribing information, indications (postmenopausal HR+ breast "
    "cancer); off-label in men: TRT practice, Raman & Schlegel 2002 J Urol (infertility)"
)


def anastrozole_intent(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None:
        return []
    course = assessment.course
    dose = course.dose.description or "dose not stated"
    if course.dose.weekly_mg is not None and "week" not in dose:
        dose = f"{dose}, {course.dose.weekly_mg:g} mg/week"
    intent = assessment.intent
    shorter = f"Anastrozole: intent {intent.label}"
    if intent is Intent.UNCLEAR:
        summary = fit(f"Anastrozole {dose}: intent unclear, document the indication", shorter)
        why = f"Intent unclear: {assessment.explanation}."
    else:
        summary = fit(f"Anastrozole {dose}: intent {intent.label}", shorter)
        why = f"Intent **{intent.label}** from: {assessment.explanation}."
    start = assessment.therapy_start
    started = f"on anastrozole since {day(start)}" if start else "start date not recorded"
    if assessment.new_start:
        started = "draft order: starts now"
    elif course.is_draft:
        started = f"draft order; {started}"
    lines = [
        f"{course.name} ({started}; {course.status}; matched by {course.matched_by})",
        why,
    ]
    refs_by_text: dict[str, list[str]] = {}
    for clue in assessment.clues:
        refs_by_text.setdefault(clue.text, []).append(clue.ref)
    lines += [f"{text} ({', '.join(refs)})" for text, refs in refs_by_text.items()]
    if course.dose.weekly_mg is None:
        lines.append("The dose could not be read from the order, so dose checks were skipped.")
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=tuple(dict.fromkeys([course.ref, *(clue.ref for clue in assessment.clues)])),
            intent=intent,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="What the anastrozole is for",
    meaning="The inferred intent of anastrozole (oncology suppression, TRT modulation, male infertility, or unclear) and the evidence for it.",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(INDICATION_DOCUMENTED, NOT_APPLICABLE),
    check=anastrozole_intent,
)
