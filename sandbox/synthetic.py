"""Synthetic FHIR R4 patient bundles of any size, shaped like a real EHR export, for benchmarks.

One man on testosterone (TRT) with anastrozole 0.5 mg twice weekly, hypertension and a
statin, and about ten years of lab draws and vital signs. Deterministic for a given seed.
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

FHIR_BASE = "https://fhir.example-ehr.org/R4"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
REFERENCE_RANGE_MEANING = "http://terminology.hl7.org/CodeSystem/referencerange-meaning"
LAB_ORDER_CODES = "https://fhir.example-ehr.org/CodeSystem/lab-order-code"

HISTORY = timedelta(days=3653)  # about ten years of results
VISIT_SPACING = timedelta(days=91)  # a quarterly TRT follow-up, until the history is full


# LOINC long common names, as labs send them in Coding.display, and the lab's local code.
DISPLAY = {
    "TESTE2PSA": "Testosterone, estradiol and PSA",
    "2243-4": "Estradiol (E2) [Mass/volume] in Serum or Plasma",
    "2986-8": "Testosterone [Mass/volume] in Serum or Plasma",
    "2857-1": "Prostate specific Ag [Mass/volume] in Serum or Plasma",
    "1742-6": "Alanine aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "1920-8": "Aspartate aminotransferase [Enzymatic activity/volume] in Serum or Plasma",
    "6768-6": "Alkaline phosphatase [Enzymatic activity/volume] in Serum or Plasma",
    "1975-2": "Bilirubin.total [Mass/volume] in Serum or Plasma",
    "1751-7": "Albumin [Mass/volume] in Serum or Plasma",
    "2093-3": "Cholesterol [Mass/volume] in Serum or Plasma",
    "2085-9": "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
    "2571-8": "Triglyceride [Mass/volume] in Serum or Plasma",
    "13457-7": "Cholesterol in LDL [Mass/volume] in Serum or Plasma by calculation",
    "4548-4": "Hemoglobin A1c/Hemoglobin.total in Blood",
    "3016-3": "Thyrotropin [Units/volume] in Serum or Plasma",
    "85354-9": "Blood pressure panel with all children optional",
    "8480-6": "Systolic blood pressure",
    "8462-4": "Diastolic blood pressure",
    "29463-7": "Body weight",
    "8867-4": "Heart rate",
    "4544-3": "Hematocrit [Volume Fraction] of Blood by Automated count",
    "718-7": "Hemoglobin [Mass/volume] in Blood",
    "6690-2": "Leukocytes [#/volume] in Blood by Automated count",
    "789-8": "Erythrocytes [#/volume] in Blood by Automated count",
    "787-2": "MCV [Entitic volume] by Automated count",
    "785-6": "MCH [Entitic mass] by Automated count",
    "786-4": "MCHC [Mass/volume] by Automated count",
    "788-0": "Erythrocyte distribution width [Ratio] by Automated count",
    "777-3": "Platelets [#/volume] in Blood by Automated count",
    "2951-2": "Sodium [Moles/volume] in Serum or Plasma",
    "2823-3": "Potassium [Moles/volume] in Serum or Plasma",
    "2075-0": "Chloride [Moles/volume] in Serum or Plasma",
    "2028-9": "Carbon dioxide, total [Moles/volume] in Serum or Plasma",
    "3094-0": "Urea nitrogen [Mass/volume] in Serum or Plasma",
    "2160-0": "Creatinine [Mass/volume] in Serum or Plasma",
    "2345-7": "Glucose [Mass/volume] in Serum or Plasma",
    "17861-6": "Calcium [Mass/volume] in Serum or Plasma",
    "24325-3": "Hepatic function 2000 panel - Serum or Plasma",
    "24331-1": "Lipid 1996 panel - Serum or Plasma",
    "58410-2": "CBC panel - Blood by Automated count",
    "51990-0": "Basic metabolic panel - Blood",
}


@dataclass(frozen=True)
class Analyte:
    """A lab or vital sign: its LOINC code, UCUM unit and a plausible adult male range."""

    loinc: str
    text: str  # the lab's own short name, sent as CodeableConcept.text
    unit: str
    low: float  # reference range; simulated values fall around it
    high: float
    decimals: int = 0
    spread: float = 0.25  # simulated values stray this fraction of the range beyond it

    @property
    def display(self) -> str:
        return DISPLAY[self.loinc]


@dataclass(frozen=True)
class Panel:
    """Analytes ordered together; `report` is the DiagnosticReport code, None for vitals."""

    name: str
    analytes: tuple[Analyte, ...]
    report: tuple[str, str] | None  # (system, code) of the DiagnosticReport
    every: float  # share of visits that draw this panel (the latest visit draws them all)
    category: str = "laboratory"


# Adult male reference ranges of a large US reference lab.
HORMONES = Panel(
    "hormones",
    (
        Analyte("2243-4", "Estradiol", "pg/mL", 10, 40),
        Analyte("2986-8", "Testosterone, total", "ng/dL", 264, 916),
        Analyte("2857-1", "PSA", "ng/mL", 0, 4, 2, 0.1),
    ),
    (LAB_ORDER_CODES, "TESTE2PSA"),
    0.6,
)
HEPATIC = Panel(
    "hepatic",
    (
        Analyte("1742-6", "ALT", "U/L", 7, 56),
        Analyte("1920-8", "AST", "U/L", 10, 40),
        Analyte("6768-6", "Alkaline phosphatase", "U/L", 44, 147),
        Analyte("1975-2", "Bilirubin, total", "mg/dL", 0.1, 1.2, 1),
        Analyte("1751-7", "Albumin", "g/dL", 3.5, 5.0, 1),
    ),
    (LOINC, "24325-3"),
    0.5,
)
LIPIDS = Panel(
    "lipids",
    (
        Analyte("2093-3", "Cholesterol, total", "mg/dL", 125, 200),
        Analyte("2085-9", "HDL cholesterol", "mg/dL", 40, 80),
        Analyte("2571-8", "Triglycerides", "mg/dL", 40, 150),
        Analyte("13457-7", "LDL cholesterol (calculated)", "mg/dL", 50, 100),
    ),
    (LOINC, "24331-1"),
    0.4,
)
GLYCEMIC = Panel(
    "hba1c", (Analyte("4548-4", "Hemoglobin A1c", "%", 4.0, 5.6, 1),), (LOINC, "4548-4"), 0.4
)
THYROID = Panel(
    "tsh", (Analyte("3016-3", "TSH", "m[IU]/L", 0.45, 4.5, 2),), (LOINC, "3016-3"), 0.15
)
VITALS = Panel(
    "vitals",
    (
        Analyte("85354-9", "Blood pressure", "mm[Hg]", 0, 0),  # values in its components
        Analyte("29463-7", "Weight", "kg", 82, 92, 1, 0.0),
        Analyte("8867-4", "Heart rate", "/min", 55, 85),
    ),
    None,
    1.0,
    category="vital-signs",
)
CBC = Panel(
    "cbc",
    (
        Analyte("4544-3", "Hematocrit", "%", 38.3, 48.6, 1, 0.4),
        Analyte("718-7", "Hemoglobin", "g/dL", 13.2, 16.6, 1),
        Analyte("6690-2", "WBC", "10*3/uL", 3.4, 9.6, 1),
        Analyte("789-8", "RBC", "10*6/uL", 4.35, 5.65, 2),
        Analyte("787-2", "MCV", "fL", 78.2, 97.9, 1),
        Analyte("785-6", "MCH", "pg", 25.4, 34.6, 1),
        Analyte("786-4", "MCHC", "g/dL", 31.5, 36.5, 1),
        Analyte("788-0", "RDW", "%", 11.8, 15.6, 1),
        Analyte("777-3", "Platelets", "10*3/uL", 135, 317),
    ),
    (LOINC, "58410-2"),
    1.0,
)
BMP = Panel(
    "bmp",
    (
        Analyte("2951-2", "Sodium", "mmol/L", 135, 145),
        Analyte("2823-3", "Potassium", "mmol/L", 3.6, 5.2, 1),
        Analyte("2075-0", "Chloride", "mmol/L", 98, 107),
        Analyte("2028-9", "CO2", "mmol/L", 22, 29),
        Analyte("3094-0", "BUN", "mg/dL", 6, 20),
        Analyte("2160-0", "Creatinine", "mg/dL", 0.74, 1.35, 2),
        Analyte("2345-7", "Glucose", "mg/dL", 70, 99),
        Analyte("17861-6", "Calcium", "mg/dL", 8.6, 10.3, 1),
    ),
    (LOINC, "51990-0"),
    1.0,
)
# Order within a visit: what the rules read first, so that a small bundle still holds them.
PANELS = (HORMONES, HEPATIC, LIPIDS, GLYCEMIC, VITALS, CBC, BMP, THYROID)
BLOOD_PRESSURE = VITALS.analytes[0]

LAB = {"reference": "Organization/org-quest-east", "display": "Quest Diagnostics East"}
CLINIC = {
    "reference": "Organization/org-riverside-mens-health",
    "display": "Riverside Men's Health Clinic",
}
PRESCRIBER = {"reference": "Practitioner/pract-4417", "display": "Daniel Okafor, MD"}
NURSE = {"reference": "Practitioner/pract-5902", "display": "Maria Lopez, RN"}

MEDICATIONS: tuple[dict[str, Any], ...] = (
    {
        "rxnorm": "835840",
        "display": "testosterone cypionate 200 MG/ML Injectable Solution",
        "text": "Testosterone cypionate 200 mg/mL IM solution",
        "dose": (100, "mg"),
        "repeat": {"frequency": 1, "period": 1, "periodUnit": "wk"},
        "route": ("78421000", "Intramuscular route (qualifier value)"),
        "sig": "Inject 100 mg (0.5 mL) into the muscle once a week",
        "years_ago": 3.2,
        "reason": ("E29.1", "Testicular hypofunction"),
        "dispense": (10, "mL", 140),
    },
    {
        "rxnorm": "199224",
        "display": "anastrozole 1 MG Oral Tablet",
        "text": "Anastrozole 1 mg tablet",
        "dose": (0.5, "mg"),
        "repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"},
        "route": ("26643006", "Oral route (qualifier value)"),
        "sig": "Take 0.5 mg (half a tablet) by mouth twice a week",
        "years_ago": 2.1,
        "reason": None,
        "dispense": (13, "{tbl}", 91),
    },
    {
        "rxnorm": "314076",
        "display": "lisinopril 10 MG Oral Tablet",
        "text": "Lisinopril 10 mg tablet",
        "dose": (10, "mg"),
        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d"},
        "route": ("26643006", "Oral route (qualifier value)"),
        "sig": "Take 1 tablet (10 mg) by mouth once daily",
        "years_ago": 6.5,
        "reason": ("I10", "Essential (primary) hypertension"),
        "dispense": (90, "{tbl}", 90),
    },
    {
        "rxnorm": "617310",
        "display": "atorvastatin 20 MG Oral Tablet",
        "text": "Atorvastatin 20 mg tablet",
        "dose": (20, "mg"),
        "repeat": {"frequency": 1, "period": 1, "periodUnit": "d", "when": ["HS"]},
        "route": ("26643006", "Oral route (qualifier value)"),
        "sig": "Take 1 tablet (20 mg) by mouth at bedtime",
        "years_ago": 4.8,
        "reason": None,
        "dispense": (90, "{tbl}", 90),
    },
)
CONDITIONS = (
    ("E29.1", "Testicular hypofunction", 3.3),
    ("I10", "Essential (primary) hypertension", 6.6),
)
FIXED_RESOURCES = 1 + len(MEDICATIONS) + len(CONDITIONS)  # Patient, orders, problems


def make_patient_bundle(n_resources: int, *, seed: int = 0, now: datetime) -> dict[str, Any]:
    """A searchset Bundle of exactly `n_resources` entries (the Patient included) for one man
    on TRT and anastrozole; the rest beyond orders and problems are results and reports."""
    if n_resources <= FIXED_RESOURCES:
        raise ValueError(f"n_resources must be more than {FIXED_RESOURCES}, got {n_resources}")
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    builder = _Builder(random.Random(seed), now)
    results_and_reports = n_resources - FIXED_RESOURCES
    # About one report per 40 results, as when a few panels come with a report resource.
    n_reports = results_and_reports // 40 if results_and_reports >= 10 else 0
    resources = [
        builder.patient(),
        *(builder.medication_request(medication) for medication in MEDICATIONS),
        *(builder.condition(*condition) for condition in CONDITIONS),
    ]
    observations, drawn_panels = builder.observations(results_and_reports - n_reports)
    resources += observations
    resources += builder.reports(drawn_panels, n_reports)
    return {
        "resourceType": "Bundle",
        "id": builder.uuid(),
        "meta": {"lastUpdated": _instant(now)},
        "type": "searchset",
        "total": len(resources),
        "link": [
            {"relation": "self", "url": f"{FHIR_BASE}/Patient/{builder.patient_id}/$everything"}
        ],
        "entry": [
            {
                "fullUrl": f"{FHIR_BASE}/{resource['resourceType']}/{resource['id']}",
                "resource": resource,
                "search": {"mode": "match"},
            }
            for resource in resources
        ],
    }


def bundle_bytes(n: int, seed: int, now: datetime) -> bytes:
    """`make_patient_bundle` serialised as an EHR would send it."""
    return orjson.dumps(make_patient_bundle(n, seed=seed, now=now))


@dataclass(frozen=True)
class _DrawnPanel:
    """One panel drawn at one visit: what a DiagnosticReport would group."""

    panel: Panel
    when: datetime
    result_ids: tuple[str, ...]


class _Builder:
    def __init__(self, rng: random.Random, now: datetime) -> None:
        self.rng = rng
        self.now = now
        self.patient_id = self.uuid()
        self.subject = {"reference": f"Patient/{self.patient_id}", "display": "Robert J. Hale"}

    def uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def meta(self, when: datetime) -> dict[str, Any]:
        updated = when + timedelta(minutes=self.rng.randint(30, 60 * 24 * 3))
        return {"versionId": "1", "lastUpdated": _instant(min(updated, self.now))}

    def patient(self) -> dict[str, Any]:
        born = (self.now - timedelta(days=365.25 * 52 + self.rng.randint(0, 300))).date()
        return {
            "resourceType": "Patient",
            "id": self.patient_id,
            "meta": self.meta(self.now - HISTORY),
            "extension": [
                {
                    "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
                    "valueCode": "M",
                }
            ],
            "identifier": [
                {
                    "use": "usual",
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                "code": "MR",
                                "display": "Medical record number",
                            }
                        ],
                        "text": "MRN",
                    },
                    "system": "https://fhir.example-ehr.org/sid/mrn",
                    "value": str(self.rng.randint(10_000_000, 99_999_999)),
                }
            ],
            "active": True,
            "name": [{"use": "official", "family": "Hale", "given": ["Robert", "James"]}],
            "telecom": [
                {"system": "phone", "value": "555-0142", "use": "mobile"},
                {"system": "email", "value": "robert.hale@example.com"},
            ],
            "gender": "male",
            "birthDate": born.isoformat(),
            "address": [
                {
                    "use": "home",
                    "line": ["418 Maple Avenue"],
                    "city": "Springfield",
                    "state": "IL",
                    "postalCode": "62704",
                    "country": "US",
                }
            ],
            "communication": [
                {
                    "language": {
                        "coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}],
                        "text": "English",
                    },
                    "preferred": True,
                }
            ],
            "generalPractitioner": [PRESCRIBER],
            "managingOrganization": CLINIC,
        }

    def medication_request(self, medication: dict[str, Any]) -> dict[str, Any]:
        authored = self.now - timedelta(days=365.25 * medication["years_ago"])
        # The current order is the latest renewal; the course started at `authored`.
        renewed = self.now - timedelta(days=self.rng.randint(20, 80))
        dose_value, dose_unit = medication["dose"]
        quantity, quantity_unit, supply_days = medication["dispense"]
        route_code, route_display = medication["route"]
        request: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": self.uuid(),
            "meta": self.meta(renewed),
            "status": "active",
            "intent": "order",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/"
                            "medicationrequest-category",
                            "code": "outpatient",
                            "display": "Outpatient",
                        }
                    ],
                    "text": "Outpatient",
                }
            ],
            "medicationCodeableConcept": {
                "coding": [
                    {
                        "system": RXNORM,
                        "code": medication["rxnorm"],
                        "display": medication["display"],
                    }
                ],
                "text": medication["text"],
            },
            "subject": self.subject,
            "authoredOn": _instant(authored),
            "requester": PRESCRIBER,
            "dosageInstruction": [
                {
                    "sequence": 1,
                    "text": medication["sig"],
                    "timing": {"repeat": medication["repeat"]},
                    "route": {
                        "coding": [{"system": SNOMED, "code": route_code, "display": route_display}]
                    },
                    "doseAndRate": [
                        {
                            "type": {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/"
                                        "dose-rate-type",
                                        "code": "ordered",
                                        "display": "Ordered",
                                    }
                                ]
                            },
                            "doseQuantity": _quantity(dose_value, dose_unit),
                        }
                    ],
                }
            ],
            "dispenseRequest": {
                "validityPeriod": {
                    "start": renewed.date().isoformat(),
                    "end": (renewed + timedelta(days=365)).date().isoformat(),
                },
                "numberOfRepeatsAllowed": 3,
                "quantity": _quantity(quantity, quantity_unit),
                "expectedSupplyDuration": {
                    "value": supply_days,
                    "unit": "days",
                    "system": UCUM,
                    "code": "d",
                },
            },
        }
        if medication["reason"]:
            code, display = medication["reason"]
            request["reasonCode"] = [
                {"coding": [{"system": ICD10CM, "code": code, "display": display}], "text": display}
            ]
        return request

    def condition(self, icd10: str, display: str, years_ago: float) -> dict[str, Any]:
        onset = self.now - timedelta(days=365.25 * years_ago)
        return {
            "resourceType": "Condition",
            "id": self.uuid(),
            "meta": self.meta(onset),
            "clinicalStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "code": "active",
                        "display": "Active",
                    }
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                        "display": "Confirmed",
                    }
                ]
            },
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                            "code": "problem-list-item",
                            "display": "Problem List Item",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": ICD10CM, "code": icd10, "display": display}],
                "text": display,
            },
            "subject": self.subject,
            "onsetDateTime": onset.date().isoformat(),
            "recordedDate": _instant(onset),
            "recorder": PRESCRIBER,
        }

    def observations(self, count: int) -> tuple[list[dict[str, Any]], list[_DrawnPanel]]:
        """`count` results from visits going back from last month, quarterly or closer, until
        the visits fill about ten years; each visit draws some panels and the vitals."""
        visits: list[list[Panel]] = []
        planned = 0
        while planned < count:
            latest = not visits
            panels = [p for p in PANELS if latest or self.rng.random() < p.every]
            visits.append(panels)
            planned += sum(len(p.analytes) for p in panels)
        spacing = min(VISIT_SPACING, HISTORY / max(len(visits) - 1, 1))
        latest_visit = self.now - timedelta(days=self.rng.randint(5, 20))
        observations: list[dict[str, Any]] = []
        drawn: list[_DrawnPanel] = []
        for index, panels in enumerate(visits):
            jitter = timedelta(days=self.rng.uniform(-0.3, 0.3) * spacing.days)
            day = (latest_visit - index * spacing + (jitter if index else timedelta())).replace(
                hour=self.rng.randint(7, 11),
                minute=self.rng.choice((0, 10, 20, 30, 40, 50)),
                second=0,
                microsecond=0,
            )
            encounter = {"reference": f"Encounter/{self.uuid()}"}
            for panel in panels:
                ids = []
                for analyte in panel.analytes:
                    if len(observations) == count:
                        break
                    observation = self.observation(analyte, panel, day, encounter)
                    observations.append(observation)
                    ids.append(observation["id"])
                if ids:
                    drawn.append(_DrawnPanel(panel, day, tuple(ids)))
        return observations, drawn

    def observation(
        self, analyte: Analyte, panel: Panel, when: datetime, encounter: dict[str, str]
    ) -> dict[str, Any]:
        is_lab = panel.category == "laboratory"
        issued = when + timedelta(hours=self.rng.randint(3, 30)) if is_lab else when
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "id": self.uuid(),
            "meta": self.meta(issued),
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": OBSERVATION_CATEGORY,
                            "code": panel.category,
                            "display": "Laboratory" if is_lab else "Vital Signs",
                        }
                    ],
                    "text": "Laboratory" if is_lab else "Vital Signs",
                }
            ],
            "code": {
                "coding": [{"system": LOINC, "code": analyte.loinc, "display": analyte.display}],
                "text": analyte.text,
            },
            "subject": self.subject,
            "encounter": encounter,
            "effectiveDateTime": _instant(when),
            "issued": _instant(min(issued, self.now)),
            "performer": [LAB if is_lab else NURSE],
        }
        if analyte is BLOOD_PRESSURE:
            observation["component"] = [
                self.blood_pressure_component("8480-6", 118, 142),
                self.blood_pressure_component("8462-4", 72, 92),
            ]
            return observation
        value = self.value(analyte)
        observation["valueQuantity"] = _quantity(value, analyte.unit)
        if is_lab:
            observation["interpretation"] = [_interpretation(value, analyte)]
            observation["referenceRange"] = [_reference_range(analyte)]
        return observation

    def blood_pressure_component(self, loinc: str, low: int, high: int) -> dict[str, Any]:
        display = DISPLAY[loinc]
        return {
            "code": {
                "coding": [{"system": LOINC, "code": loinc, "display": display}],
                "text": display,
            },
            "valueQuantity": _quantity(self.rng.randint(low, high), "mm[Hg]"),
        }

    def value(self, analyte: Analyte) -> float | int:
        width = analyte.high - analyte.low
        value = self.rng.uniform(
            analyte.low - analyte.spread * width, analyte.high + analyte.spread * width
        )
        # Out-of-range results stay plausible: not below 60% of the lower limit, and positive.
        value = max(value, 0.6 * analyte.low, 10**-analyte.decimals)
        return round(value, analyte.decimals) if analyte.decimals else round(value)

    def reports(self, drawn: list[_DrawnPanel], count: int) -> list[dict[str, Any]]:
        """`count` DiagnosticReports for the latest lab panels drawn."""
        reportable = [d for d in drawn if d.panel.report is not None]
        if len(reportable) < count:
            raise AssertionError(f"only {len(reportable)} panels for {count} reports")
        return [self.report(drawn_panel) for drawn_panel in reportable[:count]]

    def report(self, drawn: _DrawnPanel) -> dict[str, Any]:
        assert drawn.panel.report is not None
        system, code = drawn.panel.report
        display = DISPLAY[code]
        issued = drawn.when + timedelta(hours=self.rng.randint(4, 30))
        return {
            "resourceType": "DiagnosticReport",
            "id": self.uuid(),
            "meta": self.meta(issued),
            "status": "final",
            "category": [
                {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                            "code": "LAB",
                            "display": "Laboratory",
                        }
                    ]
                }
            ],
            "code": {
                "coding": [{"system": system, "code": code, "display": display}],
                "text": display,
            },
            "subject": self.subject,
            "effectiveDateTime": _instant(drawn.when),
            "issued": _instant(min(issued, self.now)),
            "performer": [LAB],
            "result": [{"reference": f"Observation/{result}"} for result in drawn.result_ids],
        }


def _instant(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _quantity(value: float | int, unit: str) -> dict[str, Any]:
    human = {
        "{tbl}": "tablet",
        "10*3/uL": "K/uL",
        "10*6/uL": "M/uL",
        "m[IU]/L": "mIU/L",
        "mm[Hg]": "mmHg",
        "/min": "beats/minute",
    }.get(unit, unit)
    return {"value": value, "unit": human, "system": UCUM, "code": unit}


def _interpretation(value: float, analyte: Analyte) -> dict[str, Any]:
    if value < analyte.low:
        code, display = "L", "Low"
    elif value > analyte.high:
        code, display = "H", "High"
    else:
        code, display = "N", "Normal"
    return {
        "coding": [{"system": INTERPRETATION, "code": code, "display": display}],
        "text": display,
    }


def _reference_range(analyte: Analyte) -> dict[str, Any]:
    low, high = (_quantity(bound, analyte.unit) for bound in (analyte.low, analyte.high))
    unit = low["unit"]
    return {
        "low": low,
        "high": high,
        "type": {
            "coding": [
                {"system": REFERENCE_RANGE_MEANING, "code": "normal", "display": "Normal Range"}
            ]
        },
        "text": f"{analyte.low}-{analyte.high} {unit}",
    }


# The discovery prefetch key that carries each resource type of a synthetic patient.
PREFETCH_KEY_OF = {
    "Patient": "patient",
    "MedicationRequest": "medicationRequests",
    "MedicationStatement": "medicationStatements",
    "Condition": "conditions",
    "Observation": "estradiol",
    "Procedure": "procedures",
    "DiagnosticReport": "diagnosticReports",
    "ServiceRequest": "dxaOrders",
    "ImagingStudy": "boneDensityImaging",
}


def prefetch_for(resources: list[dict[str, Any]], keys: list[str]) -> dict[str, Any]:
    """CDS Hooks prefetch values for a synthetic patient: every discovery key (`keys`) present,
    the Patient as itself, the rest as searchset-like Bundles under their key, else null."""
    prefetch: dict[str, Any] = dict.fromkeys(keys)
    for resource in resources:
        key = PREFETCH_KEY_OF[resource["resourceType"]]
        if resource["resourceType"] == "Patient":
            prefetch[key] = resource
        else:
            prefetch[key] = prefetch[key] or {"resourceType": "Bundle", "entry": []}
            prefetch[key]["entry"].append({"resource": resource})
    return prefetch


# ---------------------------------------------------------------------------------------------
# A population, for measuring `anastrozole-cds population` (sandbox/sample_export.py --patients)


@dataclass(frozen=True)
class PopulationMix:
    """Who is in a generated population, per 1,000 patients, and what each one holds.

    Most patients are on neither an aromatase inhibitor nor testosterone (the rules then
    apply to no one), and most Observations are vital signs and results no rule reads, as in
    a health system's export: 45 on anastrozole for breast cancer, 10 on letrozole, 15 men on
    testosterone (5 of them with anastrozole), the rest on common drugs."""

    anastrozole_oncology: int = 45
    letrozole: int = 10
    testosterone: int = 10
    testosterone_with_anastrozole: int = 5
    visits: int = 4  # each with 5 vital signs and 2 routine labs the rules do not read
    yearly_labs: int = 2  # glucose and total cholesterol: read by the rules
    conditions: int = 3
    other_orders: int = 4
    procedures: int = 2
    encounters: int = 2


_COMMON_DRUGS = (
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("617310", "atorvastatin 20 MG Oral Tablet"),
    ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
    ("198053", "omeprazole 20 MG Delayed Release Oral Capsule"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("966247", "levothyroxine sodium 0.05 MG Oral Tablet"),
)
_COMMON_CONDITIONS = (
    ("I10", "Essential (primary) hypertension"),
    ("E78.5", "Hyperlipidemia, unspecified"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("K21.9", "Gastro-esophageal reflux disease without esophagitis"),
    ("M54.50", "Low back pain, unspecified"),
    ("J45.909", "Unspecified asthma, uncomplicated"),
)
_VITALS = (
    ("8480-6", "Systolic blood pressure", "mm[Hg]", 110, 150),
    ("8462-4", "Diastolic blood pressure", "mm[Hg]", 65, 95),
    ("8867-4", "Heart rate", "/min", 55, 95),
    ("29463-7", "Body weight", "kg", 55, 110),
    ("39156-5", "Body mass index (BMI) [Ratio]", "kg/m2", 19, 38),
)
_ROUTINE_LABS = (
    ("718-7", "Hemoglobin", "g/dL", 11, 17),
    ("2160-0", "Creatinine", "mg/dL", 0.6, 1.3),
)
_READ_LABS = (
    ("2345-7", "Glucose", "mg/dL", 70, 140),
    ("2093-3", "Cholesterol, total", "mg/dL", 140, 260),
)
_DRUG_OF_INTEREST = {
    "anastrozole": ("199224", "anastrozole 1 MG Oral Tablet"),
    "letrozole": ("200064", "letrozole 2.5 MG Oral Tablet"),
    "testosterone": ("835840", "testosterone cypionate 200 MG/ML Injectable Solution"),
}


def population_patient(
    number: int, rng: random.Random, now: datetime, mix: PopulationMix = PopulationMix()
) -> list[dict[str, Any]]:
    """One patient of a generated population: its resources, as an export holds them."""
    patient_id = f"pop-{number:07d}"
    subject = {"reference": f"Patient/{patient_id}"}
    share = number % 1000  # the mix, spread evenly over every thousand patients
    groups = (
        ("anastrozole-oncology", mix.anastrozole_oncology),
        ("letrozole", mix.letrozole),
        ("testosterone", mix.testosterone),
        ("testosterone+anastrozole", mix.testosterone_with_anastrozole),
    )
    group, edge = "none", 0
    for name, size in groups:
        if edge <= share < edge + size:
            group = name
        edge += size
    female = group in ("anastrozole-oncology", "letrozole") or (
        not group.startswith("testosterone") and rng.random() < 0.55
    )
    born = now.date().replace(year=now.year - rng.randint(25, 85))
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": patient_id,
            "meta": {"lastUpdated": _instant(now - timedelta(days=rng.randint(1, 900)))},
            "identifier": [
                {
                    "system": "https://fhir.example-ehr.org/sid/mrn",
                    "value": f"{10_000_000 + number}",
                }
            ],
            "name": [{"family": f"Family{number % 997}", "given": [f"Given{number % 389}"]}],
            "gender": "female" if female else "male",
            "birthDate": born.isoformat(),
            "address": [{"city": "Springfield", "state": "IL", "postalCode": "62704"}],
        }
    ]
    counter = itertools.count()

    def resource_id(kind: str) -> str:
        return f"{patient_id}-{kind}-{next(counter)}"

    def when(days_back: int) -> str:
        return _instant(now - timedelta(days=days_back, minutes=rng.randint(0, 600)))

    codes = rng.sample(_COMMON_CONDITIONS, mix.conditions)
    if group in ("anastrozole-oncology", "letrozole"):
        codes[0] = ("C50.911", "Malignant neoplasm of unspecified site of right female breast")
    elif group.startswith("testosterone"):
        codes[0] = ("E29.1", "Testicular hypofunction")
    for code, display in codes:
        resources.append(
            {
                "resourceType": "Condition",
                "id": resource_id("cond"),
                "clinicalStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                            "code": "active",
                        }
                    ]
                },
                "verificationStatus": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                            "code": "confirmed",
                        }
                    ]
                },
                "code": {
                    "coding": [{"system": ICD10CM, "code": code, "display": display}],
                    "text": display,
                },
                "subject": subject,
                "onsetDateTime": when(rng.randint(400, 3000))[:10],
            }
        )
    drugs = rng.sample(_COMMON_DRUGS, mix.other_orders)
    if group == "anastrozole-oncology":
        drugs[0] = _DRUG_OF_INTEREST["anastrozole"]
    elif group == "letrozole":
        drugs[0] = _DRUG_OF_INTEREST["letrozole"]
    elif group.startswith("testosterone"):
        drugs[0] = _DRUG_OF_INTEREST["testosterone"]
        if group.endswith("anastrozole"):
            drugs[1] = _DRUG_OF_INTEREST["anastrozole"]
    for code, display in drugs:
        resources.append(
            {
                "resourceType": "MedicationRequest",
                "id": resource_id("mr"),
                "status": "active",
                "intent": "order",
                "medicationCodeableConcept": {
                    "coding": [{"system": RXNORM, "code": code, "display": display}],
                    "text": display,
                },
                "subject": subject,
                "authoredOn": when(rng.randint(60, 700)),
                "dosageInstruction": [
                    {
                        "text": "as directed",
                        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    }
                ],
            }
        )
    for visit in range(mix.visits):
        day = rng.randint(visit * 90, visit * 90 + 80)
        measured = [(*v, "vital-signs") for v in _VITALS] + [
            (*lab, "laboratory") for lab in _ROUTINE_LABS
        ]
        if visit < mix.yearly_labs:
            measured += [(*lab, "laboratory") for lab in _READ_LABS[:1] + _READ_LABS[1:]][
                visit : visit + 1
            ]
        for loinc, text, unit, low, high, category in measured:
            resources.append(
                _population_observation(
                    resource_id("obs"),
                    subject,
                    loinc,
                    text,
                    unit,
                    rng.uniform(low, high),
                    category,
                    when(day),
                )
            )
    for _ in range(mix.procedures):
        resources.append(
            {
                "resourceType": "Procedure",
                "id": resource_id("proc"),
                "status": "completed",
                "code": {
                    "coding": [
                        {"system": SNOMED, "code": "410620009", "display": "Well child visit"}
                    ]
                },
                "subject": subject,
                "performedDateTime": when(rng.randint(30, 900)),
            }
        )
    resources.append(
        {
            "resourceType": "DiagnosticReport",
            "id": resource_id("dr"),
            "status": "final",
            "code": {
                "coding": [{"system": LOINC, "code": "58410-2", "display": DISPLAY["58410-2"]}]
            },
            "subject": subject,
            "effectiveDateTime": when(rng.randint(10, 300)),
        }
    )
    for _ in range(mix.encounters):
        resources.append(
            {
                "resourceType": "Encounter",
                "id": resource_id("enc"),
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
                "subject": subject,
                "period": {"start": when(rng.randint(10, 700))},
            }
        )
    if group != "none":  # what the rules look for, on those they apply to
        resources.append(
            _population_observation(
                resource_id("obs"),
                subject,
                "2243-4",
                "Estradiol",
                "pg/mL",
                rng.uniform(5, 45),
                "laboratory",
                when(rng.randint(20, 300)),
            )
        )
        resources.append(
            _population_observation(
                resource_id("obs"),
                subject,
                "1742-6",
                "ALT",
                "U/L",
                rng.uniform(10, 70),
                "laboratory",
                when(rng.randint(20, 300)),
            )
        )
    return resources


def _population_observation(
    observation_id: str,
    subject: dict[str, str],
    loinc: str,
    text: str,
    unit: str,
    value: float,
    category: str,
    effective: str,
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": LOINC, "code": loinc, "display": text}], "text": text},
        "subject": subject,
        "effectiveDateTime": effective,
        "valueQuantity": _quantity(round(value, 1), unit),
    }
