"""Breast cancer coded as personal history (ICD-10-CM Z85.3) or as carcinoma in situ of the
breast (D05.-, e.g. DCIS) is oncology evidence for anastrozole, in any clinical status, as C50
is; a family history is not."""

from __future__ import annotations

from typing import Any

import pytest

from clinical import Intent, build_record, evaluate
from clinical.intent import infer_intent
from tests.clinical.rules.builders import (
    ICD10CM,
    NOW,
    SNOMED,
    anastrozole,
    concept,
    condition,
    man,
    woman,
)

PERSONAL_HISTORY = (ICD10CM, "Z85.3", "Personal history of malignant neoplasm of breast")
DCIS_RIGHT = (ICD10CM, "D05.11", "Intraductal carcinoma in situ of right breast")


def history_of_breast_cancer(clinical_status: str = "resolved") -> dict[str, Any]:
    """A problem-list entry as an EHR exports it after adjuvant surgery and radiotherapy."""
    return {
        "resourceType": "Condition",
        "id": "hx-breast-cancer",
        "clinicalStatus": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                    "code": clinical_status,
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
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-category",
                        "code": "problem-list-item",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {
                    "system": ICD10CM,
                    "code": "Z85.3",
                    "display": "Personal history of malignant neoplasm of breast",
                }
            ],
            "text": "History of left breast cancer, ER+ (lumpectomy 2023)",
        },
        "subject": {"reference": "Patient/pt"},
        "onsetDateTime": "2023-02-14",
        "abatementDateTime": "2023-09-30",
        "recordedDate": "2023-10-02",
    }


def microdose_woman(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """A woman of 66 on anastrozole 0.5 mg twice weekly: under the oncology dose."""
    return [woman(), anastrozole(), *extra]


def intent_of(resources: list[dict[str, Any]]) -> Intent:
    assessment = infer_intent(build_record(resources, NOW), NOW)
    assert assessment is not None
    return assessment.intent


@pytest.mark.parametrize("clinical_status", ["resolved", "inactive", "remission", "active"])
def test_a_personal_history_of_breast_cancer_is_oncology_in_any_clinical_status(
    clinical_status: str,
) -> None:
    resources = microdose_woman(history_of_breast_cancer(clinical_status))
    assert intent_of(resources) is Intent.ONCOLOGY_SUPPRESSION


def test_a_personal_history_of_breast_cancer_brings_the_oncology_dose_check() -> None:
    findings = {
        f.rule_id: f for f in evaluate(microdose_woman(history_of_breast_cancer()), now=NOW)
    }
    assert "intent oncology suppression" in findings["anastrozole-intent"].summary
    assert "Condition/hx-breast-cancer" in findings["anastrozole-intent"].evidence
    assert "below the labelled 7 mg/week" in findings["dose-intent-mismatch"].summary


@pytest.mark.parametrize(
    "code",
    [
        DCIS_RIGHT,
        (ICD10CM, "D05.12", "Intraductal carcinoma in situ of left breast"),
        (ICD10CM, "D05.10", "Intraductal carcinoma in situ of unspecified breast"),
        (ICD10CM, "D05.02", "Lobular carcinoma in situ of left breast"),
        (ICD10CM, "D05.81", "Other specified type of carcinoma in situ of right breast"),
        (ICD10CM, "D05.92", "Unspecified type of carcinoma in situ of left breast"),
        (ICD10CM, "D0511", "Intraductal carcinoma in situ of right breast"),  # no dot
        (ICD10CM, "D05.1", "Intraductal carcinoma in situ of breast"),  # the family
        (ICD10CM, "Z853", "Personal history of malignant neoplasm of breast"),  # no dot
    ],
    ids=lambda code: code[1],
)
@pytest.mark.parametrize("clinical_status", ["active", "resolved"])
def test_carcinoma_in_situ_of_the_breast_is_oncology(
    code: tuple[str, str, str], clinical_status: str
) -> None:
    resources = microdose_woman(condition(code, rid="dcis", clinical_status=clinical_status))
    assert intent_of(resources) is Intent.ONCOLOGY_SUPPRESSION


def test_dcis_as_the_orders_indication_is_oncology() -> None:
    order = anastrozole(reasons=[DCIS_RIGHT])
    assert intent_of([woman(), order]) is Intent.ONCOLOGY_SUPPRESSION


def test_a_benign_breast_lump_is_not_oncology_evidence() -> None:
    lump = (ICD10CM, "D24.1", "Benign neoplasm of right breast")
    assert intent_of(microdose_woman(condition(lump, rid="other"))) is Intent.UNCLEAR


@pytest.mark.parametrize(
    "code",
    [
        (ICD10CM, "Z80.3", "Family history of malignant neoplasm of breast"),
        (SNOMED, "429740004", "Family history of malignant neoplasm of breast (situation)"),
        (ICD10CM, "Z15.01", "Genetic susceptibility to malignant neoplasm of breast"),
        (ICD10CM, "D05.02", "Lobular carcinoma in situ of left breast"),
    ],
    ids=lambda code: code[1],
)
def test_a_woman_at_high_breast_cancer_risk_takes_anastrozole_for_risk_reduction(
    code: tuple[str, str, str],
) -> None:
    """IBIS-II: a family history, a BRCA variant or LCIS in a woman is risk reduction, an
    oncology intent (LCIS is a risk marker, not the cancer DCIS is)."""
    assessment = infer_intent(build_record(microdose_woman(condition(code, rid="risk")), NOW), NOW)
    assert assessment is not None
    assert assessment.intent is Intent.ONCOLOGY_SUPPRESSION
    assert assessment.risk_reduction
    assert "risk reduction" in assessment.explanation


def test_a_family_history_of_breast_cancer_is_no_reason_for_a_mans_anastrozole() -> None:
    family = (ICD10CM, "Z80.3", "Family history of malignant neoplasm of breast")
    resources = [man(), condition(family, rid="risk"), anastrozole()]
    assert intent_of(resources) is Intent.UNCLEAR


def test_a_refuted_history_of_breast_cancer_is_not_evidence() -> None:
    refuted = history_of_breast_cancer()
    refuted["verificationStatus"] = concept(
        ("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted", "Refuted")
    )
    assert intent_of(microdose_woman(refuted)) is Intent.UNCLEAR
