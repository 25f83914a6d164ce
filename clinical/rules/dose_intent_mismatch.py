"""dose-intent-mismatch: the dose, sex or co-medication does not fit what the anastrozole is for."""

from __future__ import annotations

from datetime import datetime

from clinical.finding import Finding, Intent, OrderAction, ProposedDose, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import detail, fit
from clinical.rules.rule import DOSE_INTENDED, MANAGED_BY_ONCOLOGY, MANAGED_BY_SPECIALIST, Rule
from clinical.settings import Settings

RULE_ID = "dose-intent-mismatch"
SOURCE = (
    "Arimidex PI 2.1 (1 mg once daily); off-label TRT practice 0.25-0.5 mg twice weekly; "
    "ASCO 2020 male breast cancer guideline (Hassett, JCO 38:1849: an AI in men only with a GnRH agonist)"
)
_EPSILON = 0.01


def dose_intent_mismatch(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None or assessment.intent is Intent.UNCLEAR:
        return []
    course, intent = assessment.course, assessment.intent
    weekly = course.dose.weekly_mg
    sex = record.sex.value
    per_week = f"{weekly:g} mg/week " if weekly is not None else ""
    problems: list[tuple[str, str]] = []  # (summary, detail line)
    proposed: ProposedDose | None = None  # the intent's dose, offered on a draft order
    # TRT and fertility are off-label uses in men: in a woman the indication is what to check
    # first, and the male TRT dose range (0.25-0.5 mg twice weekly) is not hers to be held to.
    female_modulation = sex == "female" and intent in (Intent.TRT_MODULATION, Intent.FERTILITY)
    if female_modulation:
        problems.append(
            (
                f"Anastrozole {per_week}for {intent.label} in a female patient: "
                "check the indication",
                f"The evidence points to {intent.label}, an off-label use in men, but sex for "
                "clinical use is female.",
            )
        )
    if weekly is not None:
        dose = f"{course.dose.description} ({weekly:g} mg/week)"
        if weekly > settings.max_weekly_dose_mg + _EPSILON:  # any intent, any sex: first
            proposed = _intent_dose(intent, settings)
            problems.insert(
                0,
                (
                    f"Anastrozole {weekly:g} mg/week: above the labelled 1 mg daily "
                    f"({settings.max_weekly_dose_mg:g} mg/week)",
                    f"{dose} is above the labelled 1 mg once daily; more does not suppress more.",
                ),
            )
        elif (
            intent is Intent.TRT_MODULATION
            and not female_modulation
            and weekly >= settings.oncology_weekly_dose_mg - _EPSILON
        ):
            proposed = _intent_dose(intent, settings)
            problems.append(
                (
                    f"Anastrozole {weekly:g} mg/week in TRT modulation: oncology dose, "
                    "typical 0.5-1 mg/week",
                    f"{dose} is the oncology dose; in TRT the usual dose is 0.25-0.5 mg twice "
                    "weekly, titrated to estradiol. Over-suppression harms bone, lipids, mood.",
                )
            )
        elif (
            intent is Intent.ONCOLOGY_SUPPRESSION
            and weekly < settings.oncology_weekly_dose_mg - _EPSILON
        ):
            proposed = _intent_dose(intent, settings)
            problems.append(
                (
                    f"Anastrozole {weekly:g} mg/week for breast cancer: below the labelled "
                    f"{settings.oncology_weekly_dose_mg:g} mg/week (1 mg daily)",
                    f"{dose} is under the labelled oncology dose of 1 mg once daily.",
                )
            )
    if (
        sex == "male"
        and intent is Intent.ONCOLOGY_SUPPRESSION
        and not record.current_courses("gnrh-agonists")
    ):
        problems.append(
            (
                fit(
                    f"Anastrozole {per_week}for breast cancer in a man without a GnRH agonist: "
                    "AI alone does not suppress estradiol",
                    "Anastrozole for breast cancer in a man without a GnRH agonist",
                ),
                "In men an aromatase inhibitor alone raises LH and testosterone and does not "
                "suppress estradiol reliably; guidelines pair it with a GnRH agonist.",
            )
        )
    if not problems:
        return []
    lines = [f"Intent: {intent.label} ({assessment.explanation})", *(p[1] for p in problems)]
    actions: tuple[OrderAction, ...] = ()
    if proposed is not None and course.is_draft and not female_modulation:
        actions = (
            OrderAction(
                "update", course.ref, f"Change to {proposed.text}", proposed, recommended=True
            ),
        )
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.WARNING,
            summary=problems[0][0],
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=(course.ref,),
            intent=intent,
            order_actions=actions,
        )
    ]


def _intent_dose(intent: Intent, settings: Settings) -> ProposedDose | None:
    """The dose of the intent, to offer in place of a draft's: the labelled 1 mg once daily for
    oncology (Arimidex PI 2.1), the TRT practice dose twice weekly; none for fertility, whose
    reported schedules vary too widely to pick one."""
    if intent is Intent.ONCOLOGY_SUPPRESSION:
        mg = settings.oncology_weekly_dose_mg / 7
        return ProposedDose(mg, 1, 1, "d", f"{mg:g} mg once daily")
    if intent is Intent.TRT_MODULATION:
        mg = settings.trt_proposed_dose_mg
        return ProposedDose(mg, 2, 1, "wk", f"{mg:g} mg twice weekly")
    return None


RULE = Rule(
    id=RULE_ID,
    title="Dose or schedule does not fit the intent",
    meaning="The dose or schedule does not fit the intent or the patient's sex (labelled dose 1 mg daily; TRT modulation 0.25-0.5 mg twice weekly).",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(DOSE_INTENDED, MANAGED_BY_ONCOLOGY, MANAGED_BY_SPECIALIST),
    check=dose_intent_mismatch,
)
