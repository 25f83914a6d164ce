"""What the anastrozole is for, from the evidence in the record, strongest first.

Clinical reference ("Intent: one drug, three purposes"): an indication on the order, then
active Conditions, then co-medication. Sex and dose alone do not decide it: a woman on
anastrozole with no breast-cancer context is "unclear, say so".
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
    "hypogonadism-male": TRT,
    "male-infertility": FERTILITY,
}
# Arimidex PI 2.1: 1 mg once daily. Only used to describe the dose, never to decide intent.
_ONCOLOGY_WEEKLY_MG = 7.0
# Breast cancer counts in any clinical status: adjuvant anastrozole follows treated cancer.
_ANY_STATUS = frozenset({"breast-cancer", "breast-cancer-male", "hormone-receptor-positive"})


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


def therapy_start(record: PatientRecord) -> tuple[datetime | None, bool]:
    """When anastrozole began (`PatientRecord.therapy_start`: a renewal does not restart the
    clock). A draft renewing or changing a running course is not a new start; a draft with
    nothing running starts now."""
    start = record.therapy_start("anastrozole")
    if start is not None:
        return start, False
    if any(c.is_draft for c in record.current_courses("anastrozole")):
        return record.as_of, True
    return None, False


def anastrozole_course(record: PatientRecord) -> MedicationCourse | None:
    """The course judged: a draft first, else the newest; ties go to the first by reference
    (the record's order), so the same chart gives the same finding whatever the order of its
    resources."""
    current = record.current_courses("anastrozole")
    if not current:
        return None
    drafts = [course for course in current if course.is_draft]
    if drafts:
        return drafts[0]
    return max(current, key=lambda c: c.start or record.as_of.replace(year=1900))


def order_clues(record: PatientRecord) -> list[Clue]:
    clues = []
    for course in record.current_courses("anastrozole"):
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
        for group in sorted(condition.groups):
            intent = _INDICATIONS.get(group)
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
_ASSESSED: WeakKeyDictionary[PatientRecord, tuple[datetime, IntentAssessment | None]] = (
    WeakKeyDictionary()
)


def infer_intent(record: PatientRecord, now: datetime) -> IntentAssessment | None:
    """None when the patient is not on anastrozole (current or draft). Read once per record."""
    assessed = _ASSESSED.get(record)
    if assessed is None or assessed[0] != now:
        assessed = _ASSESSED[record] = (now, _infer_intent(record, now))
    return assessed[1]


def _infer_intent(record: PatientRecord, now: datetime) -> IntentAssessment | None:
    assessment = _decide(record, now)
    if assessment is None:
        return None
    start, new = therapy_start(record)
    return replace(assessment, therapy_start=start, new_start=new)


def _decide(record: PatientRecord, now: datetime) -> IntentAssessment | None:
    course = anastrozole_course(record)
    if course is None:
        return None
    levels = [order_clues(record), condition_clues(record), medication_clues(record, now)]
    deciding = next((i for i, clues in enumerate(levels) if clues), None)
    support = supporting_clues(record, course)
    if deciding is None:
        known = "; ".join(clue.text for clue in support)
        return IntentAssessment(
            Intent.UNCLEAR,
            course,
            tuple(support),
            "no indication on the order, no breast cancer, hypogonadism or male infertility "
            "diagnosis, and no testosterone, tamoxifen or fertility co-medication"
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
    return IntentAssessment(intent, course, supporting, explanation)
