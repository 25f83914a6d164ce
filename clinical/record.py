"""The patient record the rules read: results, medication courses, conditions, procedures,
sex for clinical use, each as of one moment. Built from FHIR by `clinical.reader`.

Frozen values and plain lists: a rule reads a record, never changes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import NamedTuple

from clinical.dosage import Dose
from clinical.fhirdates import age_in_years

# The value sets the record holds, by what they are: results, drugs, conditions.
LAB_VALUESETS = frozenset(
    {
        "estradiol-serum",
        "testosterone-total",
        "testosterone-free",
        "shbg",
        "lh",
        "fsh",
        "hepatic-function-panel",
        "liver-transaminases",
        "bilirubin-total",
        "lipid-panel",
        "lipid-panel-evidence",
        "glucose-fasting",
        "hba1c",
        "insulin",
        "hematocrit",
        "psa",
        "dxa-bmd-observations",
        "dxa-tscore",
        "alkaline-phosphatase",
    }
)
DRUG_VALUESETS = frozenset(
    {
        "aromatase-inhibitors",
        "anastrozole",
        "letrozole",
        "exemestane",
        "tamoxifen",
        "toremifene",
        "testosterone-products",
        "estrogen-containing-therapy",
        "gnrh-agonists",
        "clomiphene",
        "hcg",
        "bone-protective-therapy",
    }
)
CONDITION_VALUESETS = frozenset(
    {
        "breast-cancer",
        "breast-cancer-male",
        "hormone-receptor-positive",
        "hypogonadism-male",
        "male-infertility",
        "gynecomastia",
        "postmenopausal",
        "premenopausal",
        "bilateral-oophorectomy",
        "menopause-symptoms",
        "amenorrhea",
        "chemotherapy-history",
        "breast-cancer-risk",
        "hormone-receptor-negative",
        "cholestatic-liver-disease",
        "osteoporosis",
        "osteopenia",
        "nafld",
        "long-term-ai-use",
    }
)
DEXA = "dxa-procedure"
ORDERABLE_VALUESETS = LAB_VALUESETS | {DEXA}
# Value sets of a drug class, not of one ingredient: two drugs of a class are told apart by
# their own value sets (anastrozole, letrozole, exemestane).
DRUG_CLASSES = frozenset({"aromatase-inhibitors"})

# Observation and DiagnosticReport status: final results are preferred over preliminary ones on a day.
_OBSERVATION_RANK = {"final": 2, "amended": 2, "corrected": 2, "appended": 2, "preliminary": 1}
_REPORT_RANK = {**_OBSERVATION_RANK, "partial": 1}
# Current: an order active, on hold or in draft; a statement active or intended; an
# administration in progress (an infusion) or on hold.
_CURRENT_MED_STATUS = frozenset({"active", "on-hold", "draft", "intended", "in-progress"})

# Courses of one drug with no gap longer than this between them are one therapy: persistence
# is measured by the gaps between refills (Sikka 2005, Am J Manag Care 11:449; Cramer 2008,
# Value Health 11:44). 90 days, one 90-day supply, is our default.
REFILL_GAP = timedelta(days=90)
# A past course whose end is not recorded is taken to have run at most a year: a prescription
# with its refills runs no longer for a non-controlled drug in most US states.
UNRECORDED_COURSE_LENGTH = timedelta(days=365)


class LabResult(NamedTuple):
    """One result. A NamedTuple, not a frozen dataclass: it is built for every lab on the hot
    path, and constructs about ten times faster (benchmarks/)."""

    code: str
    name: str
    date: datetime
    status: str
    value: float | None  # in `unit`; None when not a number or the unit is unknown
    unit: str  # canonical unit when converted, else the unit as sent
    comparator: str | None  # "<", "<=", ">", ">=" for results like "<5"
    sent: tuple[str | None, float | None, str]  # (comparator, number, unit or text) as sent
    reference_high: float | None  # upper limit of normal, same unit as value (compared kinds)
    method: str
    ref: str  # "Observation/123" (or the DiagnosticReport holding a contained result)
    unit_unknown: bool = False
    unit_from_code: bool = False  # no unit sent: the code's own unit was used (estradiol)
    # the lab's postmenopausal interval (low, high) in `unit`, when its referenceRange gives one
    postmenopausal_range: tuple[float | None, float | None] | None = None
    assay_rank: int = 0  # 2 mass spectrometry (LC-MS/MS), 1 a sensitive method, 0 other or unsaid

    @property
    def rank(self) -> int:
        return _REPORT_RANK.get(self.status, 1)

    @property
    def as_sent(self) -> str:
        """The result as the lab sent it: "55 pmol/L", "<5 pg/mL"."""
        return sent_text(self.sent)

    def is_below(self, bound: float) -> bool | None:
        """Whether the true value is below `bound`; None when a "<x" result cannot tell."""
        if self.value is None:
            return None
        if self.comparator in ("<", "<="):
            return True if self.value <= bound else None
        if self.comparator in (">", ">="):
            return False if self.value >= bound else None
        return self.value < bound

    def is_above(self, bound: float) -> bool | None:
        if self.value is None:
            return None
        if self.comparator in (">", ">="):
            return True if self.value >= bound else None
        if self.comparator in ("<", "<="):
            return False if self.value <= bound else None
        return self.value > bound

    def shown(self) -> str:
        """The value as a clinician reads it: "11 pg/mL", "<5 pg/mL"; converted, with the
        result as the lab sent it, to match the report: "11.99 pg/mL (44 pmol/L)"."""
        if self.value is None:
            return self.as_sent or "no value"
        unit = f" {self.unit}" if self.unit else ""
        _, sent_number, sent_unit = self.sent
        converted = (
            sent_number is not None
            and bool(sent_unit)
            and _unit_key(sent_unit) != _unit_key(self.unit)
        )
        # A converted value is shown with no more precision than the lab sent: 55 pmol/L is
        # "15 pg/mL", not "14.98".
        number = (
            format_to_precision(self.value, sent_number)
            if converted and sent_number is not None
            else format_number(self.value)
        )
        shown = f"{self.comparator or ''}{number}{unit}"
        if converted:
            shown += f" ({self.as_sent})"
        return shown


@dataclass(frozen=True, slots=True)
class MedicationCourse:
    drugs: frozenset[str]  # value-set names: {"anastrozole", "aromatase-inhibitors"}
    name: str
    status: str
    start: datetime | None
    end: datetime | None
    dose: Dose
    reasons: frozenset[str]  # condition value sets named by reasonCode / reasonReference
    reason_text: str
    matched_by: str  # "code" or "text"
    ref: str
    reason_refs: tuple[str, ...] = ()  # Conditions named by reasonReference
    covered_until: datetime | None = None  # a completed long-acting dose: its interval's end
    stopped_by: str = ""  # a later List or statement that says it was stopped, in words

    @property
    def is_draft(self) -> bool:
        return self.status == "draft"

    @property
    def ingredients(self) -> frozenset[str]:
        """The drug's own value sets, without its class: {"anastrozole"}, {"tamoxifen"}."""
        return self.drugs - DRUG_CLASSES

    def is_current(self, now: datetime) -> bool:
        if self.status not in _CURRENT_MED_STATUS:
            return self.covered_until is not None and self.covered_until >= now
        return self.end is None or self.end >= now

    def overlaps_last_year(self, now: datetime) -> bool:
        """Current, or ended within the last year (recent co-medication still tells intent)."""
        if self.is_current(now):
            return True
        end = self.end or self.start
        return end is not None and (now - end).days <= 365


@dataclass(frozen=True, slots=True)
class ConditionEntry:
    groups: frozenset[str]
    code: str  # "ICD-10-CM C50.911"
    name: str
    active: bool
    status_text: str  # clinicalStatus as sent, for the evidence
    recorded: datetime | None
    ref: str
    # verificationStatus provisional, differential or unconfirmed: said, but it decides nothing
    confirmed: bool = True


@dataclass(frozen=True, slots=True)
class Event:
    """A dated fact: a DEXA done, a procedure, a test ordered."""

    groups: frozenset[str]
    name: str
    date: datetime | None
    status: str
    ref: str


@dataclass(frozen=True, slots=True)
class SexForClinicalUse:
    value: str | None  # "female", "male", or None when undetermined
    basis: str  # how it was decided, said to the clinician
    recorded_parameter: str = ""  # the current sex parameter for clinical use, when one is


@dataclass(eq=False)  # one record is one reading of a chart: compared by identity
class PatientRecord:
    """What the rules read about one patient, as of `as_of`."""

    as_of: datetime
    patient_ref: str = ""
    patient_name: str = ""
    birth_date: date | None = None
    sex: SexForClinicalUse = field(default_factory=lambda: SexForClinicalUse(None, "no Patient"))
    labs: dict[str, list[LabResult]] = field(default_factory=dict)
    medications: list[MedicationCourse] = field(default_factory=list)  # by reference
    conditions: list[ConditionEntry] = field(default_factory=list)
    procedures: list[Event] = field(default_factory=list)
    dexa: list[Event] = field(default_factory=list)
    orders: list[Event] = field(default_factory=list)
    last_menstrual_periods: list[Event] = field(default_factory=list)  # date: the LMP itself
    deceased: str = ""  # how the record says the patient died ("deceasedDateTime 2024-03-01")
    # current medications that could not be read (an unknown code and no name), said on findings
    unread_medications: list[str] = field(default_factory=list)
    data_gaps: list[str] = field(default_factory=list)
    gaps_by_valueset: dict[str, list[str]] = field(default_factory=dict)

    @property
    def age(self) -> int | None:
        return age_in_years(self.birth_date, self.as_of.date()) if self.birth_date else None

    def results(self, valueset: str) -> list[LabResult]:
        """Results of a value set, newest first (final preferred over preliminary on a day)."""
        return self.labs.get(valueset, [])

    def latest(self, valueset: str, since: datetime | None = None) -> LabResult | None:
        """The newest result with a usable value, on or after `since`."""
        for result in self.results(valueset):
            if since is not None and result.date < since:
                return None
            if result.value is not None:
                return result
        return None

    def latest_done(self, *valuesets: str) -> LabResult | None:
        """The newest result of any of the value sets, value or not (the test was done)."""
        newest: LabResult | None = None
        for valueset in valuesets:
            results = self.results(valueset)
            if results and (newest is None or results[0].date > newest.date):
                newest = results[0]
        return newest

    def courses(self, drug: str) -> list[MedicationCourse]:
        return [course for course in self.medications if drug in course.drugs]

    def current_courses(self, drug: str) -> list[MedicationCourse]:
        return [c for c in self.medications if drug in c.drugs and c.is_current(self.as_of)]

    def therapy_start(self, drug: str) -> datetime | None:
        """When the running therapy with `drug` began: the earliest start of its running
        courses (drafts aside), reaching back over earlier courses that ran up to it with no
        gap longer than REFILL_GAP, so a renewal written as a new order, the old one closed,
        does not restart the clock. None when no running course has a start."""
        running = [c for c in self.current_courses(drug) if not c.is_draft]
        starts = [c.start for c in running if c.start is not None]
        if not starts:
            return None
        start = min(starts)
        earlier = [
            c
            for c in self.courses(drug)
            if c.start is not None and not (c.is_current(self.as_of) and not c.is_draft)
        ]
        for course in sorted(earlier, key=lambda c: c.start or start, reverse=True):
            if course.start is None or course.start >= start:
                continue
            covered_until = course.end or later(course.start, UNRECORDED_COURSE_LENGTH)
            if covered_until >= start - REFILL_GAP:
                start = course.start
        return start

    def conditions_in(
        self, group: str, *, active_only: bool = True, confirmed_only: bool = False
    ) -> list[ConditionEntry]:
        return [
            c
            for c in self.conditions
            if group in c.groups
            and (c.active or not active_only)
            and (c.confirmed or not confirmed_only)
        ]

    def last_dexa(self) -> Event | None:
        dated = [event for event in self.dexa if event.date is not None]
        return max(dated, key=lambda event: event.date or self.as_of) if dated else None

    def open_orders(self, group: str, since: datetime | None = None) -> list[Event]:
        """Active or draft orders of a group; with `since`, only those written on or after
        it (or undated): an order left open for longer than a test's interval is not one
        that is still coming, and must not silence its reminder for ever."""
        return [
            order
            for order in self.orders
            if group in order.groups
            and (since is None or order.date is None or order.date >= since)
        ]

    def gaps_for(self, *valuesets: str) -> list[str]:
        """What was left out of these value sets' results, and why."""
        gaps = (gap for valueset in valuesets for gap in self.gaps_by_valueset.get(valueset, ()))
        return list(dict.fromkeys(gaps))


def newest_first(result: LabResult) -> tuple[date, int, datetime, int, str, str]:
    """Sort key (reversed): by day, final over preliminary on a day, then by time; at one
    time the more specific assay (LC-MS/MS over an immunoassay), then by reference and code,
    so that the order the resources came in never decides."""
    return (
        result.date.date(),
        _REPORT_RANK.get(result.status, 1),
        result.date,
        result.assay_rank,
        result.ref,
        result.code,
    )


def _unit_key(unit: str) -> str:
    return unit.replace(" ", "").lower()


def sent_text(sent: tuple[str | None, float | None, str]) -> str:
    comparator, number, unit = sent
    if number is None:
        return unit
    return f"{comparator or ''}{format_number(number)} {unit}".strip()


def later(moment: datetime, delta: timedelta) -> datetime:
    try:
        return moment + delta
    except OverflowError:  # year 9999
        return datetime.max.replace(tzinfo=moment.tzinfo)


def significant_digits(number: float) -> int:
    """How many significant digits a number as a lab writes it has: 55 -> 2, 0.52 -> 2,
    150 -> 3, 14.98 -> 4 (trailing zeros of a whole number count)."""
    digits = format_number(number).lstrip("-").replace(".", "").lstrip("0")
    return max(1, len(digits))


def format_to_precision(value: float, like: float) -> str:
    """`value` with no more decimals than the significant digits of `like` allow (a converted
    result shown with the precision the lab sent): 14.98 like 55 -> "15", 49.03 like 180 ->
    "49.0". The whole part is never rounded away: 3 ukat/L is 180 U/L, not 200."""
    if value == 0 or not math.isfinite(value) or abs(value) >= 1e7:
        return format_number(value)
    decimals = max(0, significant_digits(like) - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{min(decimals, 6)}f}"
    return "0" if text.lstrip("-").strip("0.") == "" else text


def format_number(value: float) -> str:
    """A result as a clinician reads it: "11", "14.98", "0.5". A number beyond any lab's range
    (1e90, sent by mistake) in three significant digits, so that a card stays short."""
    if abs(value) >= 1e7:
        return f"{value:.3g}"
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text != "-0" else "0"
