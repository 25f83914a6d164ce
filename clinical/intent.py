"""What the anastrozole is for, from the evidence in the record, strongest first.

Clinical reference ("Intent: one drug, three purposes"): an indication on the order, then
active Conditions, then co-medication. Sex and dose alone do not decide it: a woman on
anastrozole with no breast-cancer context is "unclear, say so". Risk reduction in a woman at
high risk (IBIS-II) is an oncology intent; a patient under 18 is never given one (paediatric
use is off-label, and neither TRT nor oncology); a provisional diagnosis decides nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from weakref import WeakKeyDictionary

from clinical.finding import Intent
from clinical.record import MedicationCourse, PatientRecord

ONCOLOGY, TRT, FERTILITY = Intent.ONCOLOGY_SUPPRESSION, Intent.TRT_MODULATION, Intent.FERTILITY

# Condition value sets and the intent each one is evidence for.
_INDICATIONS: dict[str, Intent] = {
    "breast-cancer": ONCOLOGY,
    "breast-cancer-male": ONCOLOGY,
    "hormone-receptor-positive": ONCOLOGY,
    "breast-cancer-risk": ONCOLOGY,
    "hypogonadism-male": TRT,
    "male-infertility": FERTILITY,
}
# Risk reduction: anastrozole 1 mg daily for 5 years in postmenopausal women at increased
# risk (IBIS-II: Cuzick 2014 Lancet 383:1041, 2020 Lancet 395:117; ASCO 2019, Visvanathan
# JCO 37:3152; USPSTF 2019). On the problem list it is evidence in a woman only: a family
# history in a man on testosterone is not a reason for his anastrozole.
RISK = "breast-cancer-risk"
_CANCER = frozenset({"breast-cancer", "breast-cancer-male", "hormone-receptor-positive"})
# Anastrozole in children (pubertal gynecomastia, short stature, precocious puberty) is
# off-label and is neither TRT nor oncology: adult targets and doses do not apply.
ADULT_AGE = 18
# Arimidex PI 2.1: 1 mg once daily. Only used to describe the dose, never to decide intent.
_ONCOLOGY_WEEKLY_MG = 7.0
# Breast cancer counts in any clinical status: adjuvant anastrozole follows treated cancer.
# A high risk too: LCIS removed, or a BRCA variant, stays a risk whatever the status says.
_ANY_STATUS = frozenset(
    {"breast-cancer", "breast-cancer-male", "hormone-receptor-positive", "breast-cancer-risk"}
)


@dataclass(frozen=True, slots=True)
class Clue:
    intent: Intent
    text: str
    ref: str


@dataclass(frozen=True, slots=True)
class IntentAssessment:
    intent: Intent
    course: MedicationCourse  # the anastrozole course judged: a draft first, else the newest
    clues: tuple[Clue, ...]  # the evidence at the level that decided, and below
    explanation: str  # one sentence a clinician can check
    therapy_start: datetime | None = None  # when the patient started anastrozole
    new_start: bool = False  # a draft order with no running course: therapy starts now
    risk_reduction: bool = False  # oncology intent from a high risk, not a cancer (IBIS-II)
    receptor_negative: tuple[Clue, ...] = ()  # ER-negative disease, with no ER-positive result
    minor: bool = False  # under 18: no intent is given, adult numbers do not apply


def therapy_start(record: PatientRecord, drug: str = "anastrozole") -> tuple[datetime | None, bool]:
    """When anastrozole began (`PatientRecord.therapy_start`: a renewal does not restart the
    clock). A draft renewing or changing a running course is not a new start; a draft with
    nothing running starts now."""
    start = record.therapy_start(drug)
    if start is not None:
        return start, False
    if any(c.is_draft for c in record.current_courses(drug)):
        return record.as_of, True
    return None, False


def anastrozole_course(record: PatientRecord, drug: str = "anastrozole") -> MedicationCourse | None:
    """The course judged: a draft first, else the newest; ties go to the first by reference
    (the record's order), so the same chart gives the same finding whatever the order of its
    resources. `drug` "aromatase-inhibitors": any AI's (letrozole, exemestane too)."""
    current = record.current_courses(drug)
    if not current:
        return None
    drafts = [course for course in current if course.is_draft]
    if drafts:
        return drafts[0]
    return max(current, key=lambda c: c.start or record.as_of.replace(year=1900))


def order_clues(record: PatientRecord, drug: str = "anastrozole") -> list[Clue]:
    clues = []
    for course in record.current_courses(drug):
        for group in sorted(course.reasons):
            if group in _INDICATIONS:
                text = f"order indication: {course.reason_text}"
                clues.append(Clue(_INDICATIONS[group], text, course.ref))
                clues.extend(Clue(_INDICATIONS[group], text, ref) for ref in course.reason_refs)
    return clues


def condition_clues(record: PatientRecord) -> list[Clue]:
    clues = []
    # The cancer before the receptor status, then by name: not by the order of the resources.
    rank = {group: index for index, group in enumerate(_INDICATIONS)}
    conditions = sorted(
        record.conditions,
        key=lambda c: (
            min((rank.get(g, len(rank)) for g in c.groups), default=len(rank)),
            c.name,
            c.code,
            c.ref,
        ),
    )
    for condition in conditions:
        if not condition.confirmed:
            continue  # provisional, differential or unconfirmed: decides nothing
        for group in sorted(condition.groups):
            intent = _INDICATIONS.get(group)
            if group == RISK and record.sex.value != "female":
                continue
            if intent and (condition.active or group in _ANY_STATUS):
                status = "" if condition.active else f", {condition.status_text}"
                clues.append(
                    Clue(intent, f"{condition.name} ({condition.code}{status})", condition.ref)
                )
                break
    return clues


def medication_clues(record: PatientRecord, now: datetime) -> list[Clue]:
    clues = []
    for course in record.medications:
        if not course.overlaps_last_year(now):
            continue
        when = "" if course.is_current(now) else f", {course.status}"
        if "testosterone-products" in course.drugs:
            clues.append(Clue(TRT, f"on testosterone: {course.name}{when}", course.ref))
        elif "tamoxifen" in course.drugs:
            clues.append(Clue(ONCOLOGY, f"tamoxifen: {course.name}{when}", course.ref))
        elif "gnrh-agonists" in course.drugs and record.sex.value == "female":
            clues.append(Clue(ONCOLOGY, f"ovarian suppression: {course.name}{when}", course.ref))
        elif course.drugs & {"clomiphene", "hcg"}:
            clues.append(Clue(FERTILITY, f"fertility treatment: {course.name}{when}", course.ref))
    return clues


def supporting_clues(record: PatientRecord, course: MedicationCourse) -> list[Clue]:
    """Sex and dose pattern: the weakest evidence. They support an intent decided above and
    are said when the intent is unclear, but never decide it alone (docs/rules.md, "Intent")."""
    clues = []
    sex = record.sex.value
    age = f", {record.age} years" if record.age is not None else ""
    if sex == "female":
        clues.append(Clue(ONCOLOGY, f"female{age}", record.patient_ref))
    elif sex == "male":
        clues.append(Clue(TRT, f"male{age}", record.patient_ref))
    weekly = course.dose.weekly_mg
    if weekly is not None:
        if weekly >= _ONCOLOGY_WEEKLY_MG:
            text = f"{course.dose.description}: the oncology dose"
            clues.append(Clue(ONCOLOGY, text, course.ref))
        else:
            text = f"{course.dose.description}: a modulation dose"
            clues.append(Clue(TRT, text, course.ref))
    return clues


# Every rule asks for the intent: it is decided once per record and moment, and forgotten with
# the record (the cache holds it weakly).
_ASSESSED: WeakKeyDictionary[PatientRecord, dict[tuple[datetime, str], IntentAssessment | None]] = (
    WeakKeyDictionary()
)


def infer_intent(
    record: PatientRecord, now: datetime, drug: str = "anastrozole"
) -> IntentAssessment | None:
    """None when the patient is not on anastrozole (current or draft). Read once per record.
    `drug` "aromatase-inhibitors": the intent of whichever AI is judged (the class rules)."""
    assessed = _ASSESSED.get(record)
    if assessed is None:
        assessed = _ASSESSED[record] = {}
    key = (now, drug)
    if key not in assessed:
        if drug != "anastrozole" and all(
            "anastrozole" in course.drugs for course in record.current_courses(drug)
        ):  # only anastrozole among the AIs: the class's intent is anastrozole's
            assessed[key] = infer_intent(record, now)
        else:
            assessed[key] = _infer_intent(record, now, drug)
    return assessed[key]


def _infer_intent(record: PatientRecord, now: datetime, drug: str) -> IntentAssessment | None:
    assessment = _decide(record, now, drug)
    if assessment is None:
        return None
    start, new = therapy_start(record, drug)
    return replace(assessment, therapy_start=start, new_start=new)


def _unclear_because(record: PatientRecord, course: MedicationCourse) -> str:
    """Why no level names an intent, in words that match the chart: an order with an
    indication we cannot read as one is not "no indication on the order"."""
    if course.reason_text:
        order = f"the order's indication ({course.reason_text}) names no intent we read"
    else:
        order = "no indication on the order"
    provisional = [
        c for c in record.conditions if not c.confirmed and c.groups & _INDICATIONS.keys()
    ]
    said = "; ".join(dict.fromkeys(f"{c.name} ({c.code}, {c.status_text})" for c in provisional))
    return (
        f"{order}, no breast cancer, high breast-cancer risk, hypogonadism or male infertility "
        "diagnosis, and no testosterone, tamoxifen or fertility co-medication"
        + (f"; not confirmed, so not used: {said}" if said else "")
    )


def _minor(record: PatientRecord, course: MedicationCourse) -> IntentAssessment:
    """Under 18: no intent, said why. Paediatric anastrozole (pubertal gynecomastia, short
    stature, peripheral precocious puberty) is off-label and is not TRT or oncology."""
    context = [
        Clue(Intent.UNCLEAR, f"{c.name} ({c.code})", c.ref)
        for c in record.conditions
        if c.active and c.confirmed and "gynecomastia" in c.groups
    ]
    return IntentAssessment(
        Intent.UNCLEAR,
        course,
        tuple(context),
        f"under 18 ({record.age} years): anastrozole in children (pubertal gynecomastia, short "
        "stature, precocious puberty) is off-label and is neither TRT nor oncology; adult "
        "estradiol targets and dose ranges do not apply",
        minor=True,
    )


def _receptor_negative(record: PatientRecord) -> tuple[Clue, ...]:
    """ER-negative disease with no ER- or HR-positive result: an AI has no anticancer role."""
    if record.conditions_in("hormone-receptor-positive", active_only=False, confirmed_only=True):
        return ()
    return tuple(
        Clue(ONCOLOGY, f"{c.name} ({c.code})" if c.code else c.name, c.ref)
        for c in record.conditions_in(
            "hormone-receptor-negative", active_only=False, confirmed_only=True
        )
    )


def _decide(record: PatientRecord, now: datetime, drug: str) -> IntentAssessment | None:
    course = anastrozole_course(record, drug)
    if course is None:
        return None
    if record.age is not None and record.age < ADULT_AGE:
        return _minor(record, course)
    levels = [order_clues(record, drug), condition_clues(record), medication_clues(record, now)]
    deciding = next((i for i, clues in enumerate(levels) if clues), None)
    support = supporting_clues(record, course)
    if deciding is None:
        known = "; ".join(clue.text for clue in support)
        return IntentAssessment(
            Intent.UNCLEAR,
            course,
            tuple(support),
            _unclear_because(record, course)
            + (f" (known: {known}; sex and dose alone do not decide it)" if known else ""),
        )
    candidates = {clue.intent for clue in levels[deciding]}
    used = list(levels[deciding])
    # TRT and fertility (both modulation in men) may be told apart by weaker evidence: a
    # hypogonadal man with infertility on clomiphene is fertility. A tie involving breast
    # cancer is never tipped by weaker evidence: it stays unclear for a human to settle.
    if candidates == {TRT, FERTILITY}:
        for weaker in levels[deciding + 1 :]:
            narrowed = candidates & {clue.intent for clue in weaker}
            if len(narrowed) == 1:
                candidates = narrowed
                used.extend(clue for clue in weaker if clue.intent in narrowed)
                break
    if len(candidates) > 1:
        names = " and ".join(sorted(intent.label for intent in candidates))
        return IntentAssessment(
            Intent.UNCLEAR, course, tuple(used), f"the evidence points to both {names}"
        )
    intent = candidates.pop()
    # Sex and dose are named when they agree (male supports fertility as much as TRT).
    agreeing = [
        clue
        for clue in support
        if clue.intent == intent or (intent is FERTILITY and clue.text.startswith("male"))
    ]
    supporting = tuple(clue for clue in used if clue.intent == intent) + tuple(agreeing)
    explanation = "; ".join(dict.fromkeys(c.text for c in supporting))
    risk = intent is ONCOLOGY and _is_risk_reduction(record, levels[deciding])
    if risk:
        explanation = f"risk reduction (IBIS-II): {explanation}"
    negative = _receptor_negative(record) if intent is ONCOLOGY and not risk else ()
    return IntentAssessment(
        intent, course, supporting, explanation, risk_reduction=risk, receptor_negative=negative
    )


def _is_risk_reduction(record: PatientRecord, deciding: list[Clue]) -> bool:
    """Oncology from a high risk alone: the evidence that decided names a risk (a Condition or
    an order's indication), and no breast cancer is confirmed on the chart or named by the
    order (a cancer is treatment, whatever else is recorded)."""
    if any(c.confirmed and c.groups & _CANCER for c in record.conditions):
        return False
    refs = {clue.ref for clue in deciding}
    by_condition = any(RISK in c.groups for c in record.conditions if c.ref in refs)
    by_order = any(
        RISK in course.reasons and not course.reasons & _CANCER
        for course in record.medications
        if course.ref in refs
    )
    return by_condition or by_order
