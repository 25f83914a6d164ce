"""sex-undetermined: sex for clinical use unknown or conflicting, so sex-specific advice is withheld."""

from __future__ import annotations

from datetime import datetime

from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import detail, drug_label
from clinical.rules.rule import NOT_APPLICABLE, SEX_REVIEWED, Rule
from clinical.settings import Settings

RULE_ID = "sex-undetermined"
SOURCE = (
    "HL7 Sex Parameter for Clinical Use extension (US Core 8, Gender Harmony); sex-specific "
    "thresholds are not guessed when the record is silent or conflicting"
)


def sex_undetermined(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    courses = sorted(
        record.current_courses("aromatase-inhibitors"),
        key=lambda c: ("anastrozole" not in c.drugs, c.ref),
    )
    if record.sex.value is not None or not courses:
        return []
    lines = [
        f"Sex for clinical use could not be determined: {record.sex.basis}.",
        "Estradiol floors and ceilings, the premenopausal check and sex-based dose checks are "
        "withheld; monitoring reminders still apply.",
        (
            f"Review the recorded sex parameter for clinical use ({record.sex.recorded_parameter}):"
            " female-typical or male-typical gives them."
            if record.sex.recorded_parameter
            else "Record a sex parameter for clinical use (female-typical or male-typical) to "
            "get them."
        ),
    ]
    assessment = infer_intent(record, now)
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            # the drug the patient is on: "letrozole advice" on letrozole, not "anastrozole"
            summary=f"Sex for clinical use undetermined: sex-specific {drug_label(courses[0])} "
            "advice withheld",
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=(record.patient_ref,) if record.patient_ref else (),
            intent=assessment.intent if assessment else None,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Sex for clinical use undetermined",
    meaning="Sex for clinical use is unknown or conflicting: sex-specific advice is withheld.",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(SEX_REVIEWED, NOT_APPLICABLE),
    check=sex_undetermined,
)
