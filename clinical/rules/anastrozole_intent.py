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
    "cancer); risk reduction: IBIS-II (Cuzick 2014 Lancet 383:1041, 2020 Lancet 395:117), ASCO "
    "2019 (Visvanathan JCO 37:3152); off-label in men: TRT practice, Raman & Schlegel 2002 J "
    "Urol (infertility)"
)


def anastrozole_intent(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None:
        if record.unread_medications and not record.current_courses("aromatase-inhibitors"):
            return [_unread(record)]
        return []
    course = assessment.course
    dose = course.dose.description or "dose not stated"
    if course.dose.weekly_mg is not None and "week" not in dose:
        dose = f"{dose}, {course.dose.weekly_mg:g} mg/week"
    intent = assessment.intent
    label = f"{intent.label} (risk reduction)" if assessment.risk_reduction else intent.label
    shorter = f"Anastrozole: intent {label}"
    severity = Severity.INFO
    if assessment.minor:
        summary = fit(
            f"Anastrozole {dose} under 18: off-label paediatric use, intent not TRT or oncology",
            "Anastrozole under 18: off-label paediatric use",
        )
        why = f"Intent unclear: {assessment.explanation}."
    elif intent is Intent.UNCLEAR:
        summary = fit(f"Anastrozole {dose}: intent unclear, document the indication", shorter)
        why = f"Intent unclear: {assessment.explanation}."
    elif assessment.receptor_negative:
        severity = Severity.WARNING
        negative = assessment.receptor_negative[0].text
        summary = fit(
            f"Anastrozole {dose} for ER-negative breast cancer: an AI has no anticancer role",
            "Anastrozole for ER-negative disease: check the indication",
        )
        why = (
            f"Intent **{label}** from: {assessment.explanation}; but the disease is "
            f"estrogen-receptor negative ({negative}) and no ER-positive result is on record: "
            "an aromatase inhibitor has no anticancer role in ER-negative disease."
        )
    else:
        summary = fit(f"Anastrozole {dose}: intent {label}", shorter)
        why = f"Intent **{label}** from: {assessment.explanation}."
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
    for clue in (*assessment.clues, *assessment.receptor_negative):
        refs = refs_by_text.setdefault(clue.text, [])
        if clue.ref not in refs:
            refs.append(clue.ref)
    lines += [f"{text} ({', '.join(refs)})" for text, refs in refs_by_text.items()]
    if course.dose.weekly_mg is None:
        lines.append("The dose could not be read from the order, so dose checks were skipped.")
    clues = (*assessment.clues, *assessment.receptor_negative)
    return [
        Finding(
            rule_id=RULE_ID,
            severity=severity,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=tuple(dict.fromkeys([course.ref, *(clue.ref for clue in clues)])),
            intent=intent,
        )
    ]


def _unread(record: PatientRecord) -> Finding:
    """No aromatase inhibitor read, but a current medication could not be read at all: not a
    silent "no findings", since it may be one."""
    count = len(record.unread_medications)
    return Finding(
        rule_id=RULE_ID,
        severity=Severity.INFO,
        summary=fit(
            f"{count} current medication{'s' if count > 1 else ''} could not be read: whether "
            "the patient takes an aromatase inhibitor is unclear",
            "A current medication could not be read",
        ),
        detail=detail(
            [
                "No aromatase inhibitor was read; the medications below have a code we cannot "
                "read and no name, so whether anastrozole is among them is unclear."
            ],
            SOURCE,
            record.unread_medications,
        ),
        source=SOURCE,
        evidence=tuple(gap.partition(":")[0] for gap in record.unread_medications),
        intent=Intent.UNCLEAR,
        data_gaps=tuple(record.unread_medications),
    )


RULE = Rule(
    id=RULE_ID,
    title="What the anastrozole is for",
    meaning="The inferred intent of anastrozole (oncology suppression, including risk reduction; "
    "TRT modulation; male infertility; or unclear, as under 18) and the evidence for it; a "
    "warning for ER-negative disease, where an AI has no anticancer role.",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(INDICATION_DOCUMENTED, NOT_APPLICABLE),
    check=anastrozole_intent,
)
