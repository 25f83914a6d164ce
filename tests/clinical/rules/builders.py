"""Tiny builders of literal FHIR R4 resources for the per-rule tests, and a way to run a rule.

Every date is relative to NOW, so a test reads as "an estradiol 30 days ago"; `ago(n)` gives the
exact instant n days before NOW, which is what the threshold-edge tests need.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from clinical.finding import Finding
from clinical.reader import SPCU_URL, build_record
from clinical.record import PatientRecord
from clinical.settings import Settings

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
UCUM = "http://unitsofmeasure.org"
PCS = "http://www.cms.gov/Medicare/Coding/ICD10"

Resource = dict[str, Any]
Code = tuple[str, str, str]  # (system, code, display)
Rule = Callable[[PatientRecord, Settings, datetime], list[Finding]]

# Conditions
BREAST_CANCER: Code = (ICD10CM, "C50.911", "Malignant neoplasm of right female breast")
HYPOGONADISM: Code = (ICD10CM, "E29.1", "Testicular hypofunction")
MALE_INFERTILITY: Code = (ICD10CM, "N46.9", "Male infertility, unspecified")
OSTEOPOROSIS: Code = (ICD10CM, "M81.0", "Age-related osteoporosis")
OSTEOPENIA: Code = (ICD10CM, "M85.80", "Other specified disorders of bone density")
POSTMENOPAUSAL: Code = (SNOMED, "76498008", "Postmenopausal state (finding)")
PREMENOPAUSAL: Code = (SNOMED, "22636003", "Premenopausal state (finding)")
HYPERTENSION: Code = (ICD10CM, "I10", "Essential (primary) hypertension")

# Drugs
ANASTROZOLE: Code = (RXNORM, "199224", "anastrozole 1 MG Oral Tablet")
LETROZOLE: Code = (RXNORM, "200064", "letrozole 2.5 MG Oral Tablet")
TESTOSTERONE: Code = (RXNORM, "835829", "testosterone cypionate 100 MG/ML Injectable Solution")
TAMOXIFEN: Code = (RXNORM, "313195", "tamoxifen 20 MG Oral Tablet")
ESTRADIOL_PATCH: Code = (RXNORM, "1149632", "84 HR estradiol 0.00313 MG/HR Transdermal System")
LEUPROLIDE: Code = (RXNORM, "1115457", "1 ML leuprolide acetate 3.75 MG/ML Prefilled Syringe")
GOSERELIN: Code = (RXNORM, "310592", "goserelin 3.6 MG Drug Implant")
CLOMIPHENE: Code = (RXNORM, "1093060", "clomiphene citrate 50 MG Oral Tablet")
ALENDRONATE: Code = (RXNORM, "904419", "alendronic acid 10 MG Oral Tablet")

# Labs (LOINC)
ESTRADIOL = "2243-4"
TESTOSTERONE_TOTAL = "2986-8"
ALT = "1742-6"
AST = "1920-8"
BILIRUBIN = "1975-2"
HEPATIC_PANEL = "24325-3"
LIPID_PANEL = "24331-1"
TOTAL_CHOLESTEROL = "2093-3"
LDL = "13457-7"
HDL = "2085-9"
TRIGLYCERIDES = "2571-8"
HBA1C = "4548-4"
GLUCOSE = "2345-7"
T_SCORE_SPINE = "38267-1"
T_SCORE_HIP = "38264-8"

# Procedures
DXA: Code = (CPT, "77080", "DXA bone density study, axial skeleton")
BILATERAL_OOPHORECTOMY: Code = (SNOMED, "76876009", "Excision of bilateral ovaries (procedure)")


def ago(days: float) -> str:
    """The instant `days` before NOW, as a FHIR dateTime."""
    return (NOW - timedelta(days=days)).isoformat()


def ahead(days: float) -> str:
    return (NOW + timedelta(days=days)).isoformat()


def born_years_ago(years: int, days_later: int = 0) -> str:
    """A birthDate making the patient exactly `years` old at NOW (younger by `days_later`)."""
    birthday = date(NOW.year - years, NOW.month, NOW.day) + timedelta(days=days_later)
    return birthday.isoformat()


def by_name(text: str) -> Code:
    """A drug known only by its name, as in a compounded or free-text order."""
    return ("", "", text)


def concept(code: Code) -> dict[str, Any]:
    system, value, display = code
    return {"coding": [{"system": system, "code": value, "display": display}], "text": display}


# -- Patient ---------------------------------------------------------------------------------


def patient(
    gender: str | None = "male",
    *,
    age: int | None = 46,
    sex_parameter: str | None = None,
    birth_date: str | None = None,
    pid: str = "pt",
) -> Resource:
    resource: Resource = {"resourceType": "Patient", "id": pid}
    if gender is not None:
        resource["gender"] = gender
    if birth_date is not None:
        resource["birthDate"] = birth_date
    elif age is not None:
        resource["birthDate"] = born_years_ago(age, days_later=-100)
    if sex_parameter is not None:
        resource["extension"] = [
            {
                "url": SPCU_URL,
                "extension": [
                    {
                        "url": "value",
                        "valueCodeableConcept": {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/sex-parameter-for-clinical-use",
                                    "code": sex_parameter,
                                }
                            ]
                        },
                    }
                ],
            }
        ]
    return resource


def man(**fields: Any) -> Resource:
    return patient("male", **fields)


def woman(**fields: Any) -> Resource:
    return patient("female", **{"age": 66, **fields})


# -- Conditions ------------------------------------------------------------------------------


def condition(
    code: Code,
    *,
    rid: str | None = None,
    clinical_status: str | None = "active",
    verification: str | None = "confirmed",
) -> Resource:
    resource: Resource = {
        "resourceType": "Condition",
        "id": rid or f"cond-{code[1].lower().replace('.', '')}",
        "code": concept(code),
        "subject": {"reference": "Patient/pt"},
        "recordedDate": "2024-01-09",
    }
    if clinical_status is not None:
        resource["clinicalStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical_status,
                }
            ]
        }
    if verification is not None:
        resource["verificationStatus"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                    "code": verification,
                }
            ]
        }
    return resource


# -- Medications -----------------------------------------------------------------------------


def medication(
    code: Code,
    *,
    rid: str,
    status: str = "active",
    start: str | None = None,
    end: str | None = None,
    mg: float | None = None,
    times: int = 1,
    period: float = 1,
    period_unit: str = "d",
    reasons: Iterable[Code] = (),
    reason_refs: Iterable[str] = (),
    text_only: bool = False,
) -> Resource:
    """A MedicationRequest; a draft starts now whatever its dates (as the record reads it)."""
    resource: Resource = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "subject": {"reference": "Patient/pt"},
        "medicationCodeableConcept": {"text": code[2]} if text_only else concept(code),
    }
    if start is not None:
        resource["authoredOn"] = start
    if end is not None:
        resource["dispenseRequest"] = {"validityPeriod": {"end": end}}
    if mg is not None:
        resource["dosageInstruction"] = [
            {
                "timing": {
                    "repeat": {"frequency": times, "period": period, "periodUnit": period_unit}
                },
                "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg"}}],
            }
        ]
    reasons = list(reasons)
    if reasons:
        resource["reasonCode"] = [concept(reason) for reason in reasons]
    refs = list(reason_refs)
    if refs:
        resource["reasonReference"] = [{"reference": ref} for ref in refs]
    return resource


def statement(
    code: Code, *, rid: str, status: str = "active", start: str | None, end: str | None = None
) -> Resource:
    """A MedicationStatement: what the patient takes, from `start` to `end`."""
    period: dict[str, str] = {} if start is None else {"start": start}
    if end is not None:
        period["end"] = end
    return {
        "resourceType": "MedicationStatement",
        "id": rid,
        "status": status,
        "subject": {"reference": "Patient/pt"},
        "medicationCodeableConcept": concept(code),
        "effectivePeriod": period,
    }


def anastrozole(
    *,
    rid: str = "ana",
    status: str = "active",
    start: str | None = None,
    mg: float = 0.5,
    times: int = 2,
    period: float = 1,
    period_unit: str = "wk",
    **fields: Any,
) -> Resource:
    """Anastrozole, by default 0.5 mg twice weekly (1 mg/week, the TRT-practice dose), started
    200 days ago."""
    return medication(
        ANASTROZOLE,
        rid=rid,
        status=status,
        start=start if start is not None else ago(200),
        mg=mg,
        times=times,
        period=period,
        period_unit=period_unit,
        **fields,
    )


def anastrozole_daily(**fields: Any) -> Resource:
    """Anastrozole 1 mg once daily (7 mg/week, the labelled oncology dose)."""
    return anastrozole(**{"mg": 1, "times": 1, "period_unit": "d", **fields})


def trt_course(
    *, rid: str = "trt", status: str = "active", start: str | None = None, **fields: Any
) -> Resource:
    return medication(
        TESTOSTERONE,
        rid=rid,
        status=status,
        start=start if start is not None else ago(400),
        **fields,
    )


def drug(code: Code, rid: str, *, start: str | None = None, **fields: Any) -> Resource:
    """Any other co-medication, started a year ago unless told."""
    return medication(code, rid=rid, start=start if start is not None else ago(365), **fields)


# -- Observations ----------------------------------------------------------------------------


def lab(
    loinc: str,
    value: float | None = None,
    unit: str = "",
    *,
    rid: str,
    when: str,
    status: str = "final",
    comparator: str | None = None,
    value_string: str | None = None,
    reference_high: float | None = None,
    display: str | None = None,
) -> Resource:
    """An Observation coded by LOINC alone (display is optional in FHIR) unless told."""
    coding = {"system": LOINC, "code": loinc}
    if display is not None:
        coding["display"] = display
    resource: Resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": status,
        "code": {"coding": [coding]},
        "subject": {"reference": "Patient/pt"},
        "effectiveDateTime": when,
    }
    if value_string is not None:
        resource["valueString"] = value_string
    elif value is not None:
        quantity: dict[str, Any] = {"value": value, "unit": unit, "system": UCUM, "code": unit}
        if comparator is not None:
            quantity["comparator"] = comparator
        resource["valueQuantity"] = quantity
    if reference_high is not None:
        resource["referenceRange"] = [
            {"high": {"value": reference_high, "unit": unit, "code": unit}}
        ]
    return resource


def estradiol(
    value: float | None = None,
    unit: str = "pg/mL",
    *,
    rid: str = "e2",
    days_ago: float = 30,
    **fields: Any,
) -> Resource:
    return lab(ESTRADIOL, value, unit, rid=rid, when=ago(days_ago), **fields)


def alt(value: float, *, rid: str = "alt", days_ago: float = 20, **fields: Any) -> Resource:
    return lab(ALT, value, "U/L", rid=rid, when=ago(days_ago), **fields)


def ast(value: float, *, rid: str = "ast", days_ago: float = 20, **fields: Any) -> Resource:
    return lab(AST, value, "U/L", rid=rid, when=ago(days_ago), **fields)


def bilirubin(
    value: float, unit: str = "mg/dL", *, rid: str = "bili", days_ago: float = 20, **fields: Any
) -> Resource:
    return lab(BILIRUBIN, value, unit, rid=rid, when=ago(days_ago), **fields)


def t_score(
    value: float, *, rid: str = "tscore", days_ago: float = 100, loinc: str = T_SCORE_SPINE
) -> Resource:
    return lab(loinc, value, "{T-score}", rid=rid, when=ago(days_ago))


# -- Procedures and orders -------------------------------------------------------------------


def procedure(code: Code, *, rid: str, days_ago: float, status: str = "completed") -> Resource:
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": status,
        "code": concept(code),
        "subject": {"reference": "Patient/pt"},
        "performedDateTime": ago(days_ago),
    }


def dxa(days_ago: float, *, rid: str = "dxa") -> Resource:
    return procedure(DXA, rid=rid, days_ago=days_ago)


def service_request(
    code: Code, *, rid: str, status: str = "active", days_ago: float = 3
) -> Resource:
    return {
        "resourceType": "ServiceRequest",
        "id": rid,
        "status": status,
        "intent": "order",
        "code": concept(code),
        "subject": {"reference": "Patient/pt"},
        "authoredOn": ago(days_ago),
    }


def lab_order(loinc: str, *, rid: str, status: str = "active", days_ago: float = 3) -> Resource:
    return service_request((LOINC, loinc, loinc), rid=rid, status=status, days_ago=days_ago)


# -- Whole small patients --------------------------------------------------------------------


def trt_man(*extra: Resource, ana: Resource | None = None, **patient_fields: Any) -> list[Resource]:
    """A hypogonadal man on testosterone and anastrozole 0.5 mg twice weekly: TRT modulation."""
    return [
        man(**patient_fields),
        condition(HYPOGONADISM, rid="hypogonadism"),
        trt_course(),
        ana if ana is not None else anastrozole(),
        *extra,
    ]


def fertility_man(*extra: Resource, ana: Resource | None = None) -> list[Resource]:
    """A man with infertility on clomiphene and anastrozole: fertility."""
    return [
        man(),
        condition(MALE_INFERTILITY, rid="infertility"),
        drug(CLOMIPHENE, "clomiphene"),
        ana if ana is not None else anastrozole(),
        *extra,
    ]


def oncology_woman(
    *extra: Resource, ana: Resource | None = None, **patient_fields: Any
) -> list[Resource]:
    """A woman of 66 with breast cancer on anastrozole 1 mg daily: oncology suppression."""
    return [
        woman(**patient_fields),
        condition(BREAST_CANCER, rid="breast-cancer"),
        ana if ana is not None else anastrozole_daily(),
        *extra,
    ]


def letrozole_only(*extra: Resource) -> list[Resource]:
    """A woman of 66 with breast cancer on letrozole: an aromatase inhibitor, not anastrozole."""
    return [
        woman(),
        condition(BREAST_CANCER, rid="breast-cancer"),
        drug(LETROZOLE, "letrozole", start=ago(200), mg=2.5),
        *extra,
    ]


# -- Running a rule --------------------------------------------------------------------------


def run(
    rule: Rule,
    resources: list[Resource],
    settings: Settings | None = None,
    now: datetime = NOW,
) -> list[Finding]:
    return rule(build_record(resources, now), settings or Settings(), now)


def fires(
    rule: Rule,
    resources: list[Resource],
    settings: Settings | None = None,
    now: datetime = NOW,
) -> Finding:
    """The one finding the rule raises; fails the test when it raises none or several."""
    findings = run(rule, resources, settings, now)
    assert len(findings) == 1, f"expected one finding, got {findings}"
    return findings[0]
