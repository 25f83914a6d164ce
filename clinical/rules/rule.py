"""What a rule is: its id (the cards' contract), its title and meaning in a clinician's words,
its source, the data it reads, and the reasons a clinician may give for not following it.

Every face reads rules from here: the cards (title, override reasons), the SMART app (title),
the service (which rules to withhold when data is missing), the docs and the tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clinical.finding import Finding
    from clinical.record import PatientRecord
    from clinical.settings import Settings


class Input(StrEnum):
    """A slice of the chart a rule reads. When a slice is missing or incomplete, the rules
    that read it are withheld rather than judged on "none on record"."""

    PATIENT = "patient"  # sex for clinical use, age
    MEDICATIONS = "medications"  # orders, statements and administrations of the drugs
    CONDITIONS = "conditions"  # the problem list
    ESTRADIOL = "estradiol"
    LIVER_TESTS = "liver-tests"  # hepatic panel, transaminases, bilirubin
    LIPID_TESTS = "lipid-tests"
    GLYCEMIC_TESTS = "glycemic-tests"  # HbA1c, glucose
    BONE_DENSITY = "bone-density"  # DXA results: BMD and T-scores
    DXA = "dxa"  # DXA studies done (procedures, reports, imaging) or ordered
    SURGICAL_MENOPAUSE = "surgical-menopause"  # bilateral oophorectomy
    MENOPAUSE_TESTS = "menopause-tests"  # FSH and the last menstrual period
    # Doses given in clinic (MedicationAdministration): a GnRH agonist depot, denosumab or
    # zoledronic acid is often recorded nowhere else; read by the rules that say "without" one.
    CLINIC_GIVEN = "clinic-given"


# What every rule reads: without it no rule can be judged.
CORE_INPUTS = frozenset({Input.PATIENT, Input.MEDICATIONS, Input.CONDITIONS})


@dataclass(frozen=True, slots=True)
class OverrideReason:
    """A reason a clinician may give for not following a card, coded so it can be counted."""

    code: str
    display: str


MANAGED_BY_ONCOLOGY = OverrideReason("managed-by-oncology", "Managed by oncology")
MANAGED_BY_SPECIALIST = OverrideReason("managed-by-specialist", "Managed by another specialist")
PATIENT_DECLINED = OverrideReason("patient-declined", "Patient declined")
ALREADY_SCHEDULED = OverrideReason("already-scheduled", "Already scheduled elsewhere")
RESULT_ELSEWHERE = OverrideReason("result-elsewhere", "Recent result not in this record")
INDICATION_DOCUMENTED = OverrideReason("indication-documented", "Indication documented elsewhere")
DOSE_INTENDED = OverrideReason("dose-intended", "Dose is intended")
DOSE_CHANGE_PLANNED = OverrideReason("dose-change-planned", "Dose change already planned")
WILL_REPEAT = OverrideReason("will-repeat-test", "Will repeat the test")
BENEFIT_OUTWEIGHS_RISK = OverrideReason("benefit-outweighs-risk", "Benefit outweighs risk")
SWITCHING_THERAPY = OverrideReason("switching-therapy", "Switching therapy, not combining")
BONE_THERAPY_ELSEWHERE = OverrideReason(
    "bone-therapy-elsewhere", "Bone-protective therapy given elsewhere"
)
MENOPAUSE_DOCUMENTED = OverrideReason(
    "menopause-documented", "Menopause or ovarian suppression documented elsewhere"
)
SEX_REVIEWED = OverrideReason("sex-reviewed", "Sex for clinical use reviewed")
NOT_APPLICABLE = OverrideReason("not-applicable", "Not applicable to this patient")

MONITORING_DUE_REASONS = (ALREADY_SCHEDULED, RESULT_ELSEWHERE, PATIENT_DECLINED)

Check = Callable[["PatientRecord", "Settings", datetime], list["Finding"]]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str  # card source.topic.code: EHR admins configure against it, never renamed
    title: str  # what a card's topic and the app's heading say
    meaning: str  # one sentence: when the rule speaks
    source: str  # the guideline, label or study behind it
    reads: frozenset[Input]  # besides CORE_INPUTS, which every rule reads
    override_reasons: tuple[OverrideReason, ...]
    check: Check

    @property
    def inputs(self) -> frozenset[Input]:
        """Everything the rule reads: its own slices and the core ones."""
        return CORE_INPUTS | self.reads
