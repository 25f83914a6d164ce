"""Intent of anastrozole: the order's indication, then Conditions, then co-medication."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from clinical.finding import Intent
from clinical.intent import infer_intent
from clinical.reader import build_record
from tests.clinical.rules.builders import (
    BREAST_CANCER,
    CLOMIPHENE,
    GOSERELIN,
    HYPERTENSION,
    HYPOGONADISM,
    MALE_INFERTILITY,
    NOW,
    TAMOXIFEN,
    ago,
    anastrozole,
    by_name,
    condition,
    drug,
    man,
    patient,
    statement,
    trt_course,
    woman,
)

ONCOLOGY, TRT, FERTILITY, UNCLEAR = (
    Intent.ONCOLOGY_SUPPRESSION,
    Intent.TRT_MODULATION,
    Intent.FERTILITY,
    Intent.UNCLEAR,
)


def intent_of(resources: list[dict[str, Any]]) -> Intent:
    assessment = infer_intent(build_record(resources, NOW), NOW)
    assert assessment is not None
    return assessment.intent


def cancer(**fields: Any) -> dict[str, Any]:
    return condition(BREAST_CANCER, rid="breast-cancer", **fields)


def hypogonadism(**fields: Any) -> dict[str, Any]:
    return condition(HYPOGONADISM, rid="hypogonadism", **fields)


def infertility(**fields: Any) -> dict[str, Any]:
    return condition(MALE_INFERTILITY, rid="infertility", **fields)


def tamoxifen(**fields: Any) -> dict[str, Any]:
    return drug(TAMOXIFEN, "tamoxifen", **fields)


def clomiphene(**fields: Any) -> dict[str, Any]:
    return drug(CLOMIPHENE, "clomiphene", **fields)


@pytest.mark.parametrize(
    ("resources", "intent"),
    [
        # 1. The order's own indication beats Conditions and co-medication.
        pytest.param(
            [man(), cancer(), anastrozole(reasons=[HYPOGONADISM])],
            TRT,
            id="order-reason-beats-breast-cancer",
        ),
        pytest.param(
            [man(), hypogonadism(), trt_course(), anastrozole(reasons=[MALE_INFERTILITY])],
            FERTILITY,
            id="order-reason-beats-condition-and-testosterone",
        ),
        pytest.param(
            [
                man(),
                cancer(),
                anastrozole(reason_refs=["Condition/hypogonadism"]),
                hypogonadism(clinical_status="resolved"),
            ],
            TRT,
            id="order-reason-reference",
        ),
        # 2. Conditions beat co-medication.
        pytest.param(
            [man(), hypogonadism(), tamoxifen(), anastrozole()], TRT, id="condition-beats-tamoxifen"
        ),
        pytest.param(
            [man(), infertility(), trt_course(), anastrozole()],
            FERTILITY,
            id="condition-beats-testosterone",
        ),
        pytest.param([woman(), cancer(), anastrozole()], ONCOLOGY, id="breast-cancer"),
        pytest.param(
            [woman(), cancer(clinical_status="remission"), anastrozole()],
            ONCOLOGY,
            id="cancer-in-remission",
        ),
        pytest.param(
            [woman(), cancer(clinical_status="resolved"), anastrozole()],
            ONCOLOGY,
            id="cancer-resolved",
        ),
        # 3. Co-medication, current or within the last year.
        pytest.param([man(), trt_course(), anastrozole()], TRT, id="testosterone"),
        pytest.param([woman(), tamoxifen(), anastrozole()], ONCOLOGY, id="tamoxifen"),
        pytest.param(
            [
                woman(),
                statement(
                    TAMOXIFEN, rid="tamoxifen", status="completed", start=ago(2000), end=ago(200)
                ),
                anastrozole(),
            ],
            ONCOLOGY,
            id="tamoxifen-stopped-this-year",
        ),
        pytest.param(
            [woman(age=44), drug(GOSERELIN, "goserelin"), anastrozole()],
            ONCOLOGY,
            id="gnrh-in-a-woman",
        ),
        pytest.param([man(), clomiphene(), anastrozole()], FERTILITY, id="clomiphene"),
        pytest.param(
            [
                man(),
                drug(
                    by_name("Pregnyl (chorionic gonadotropin) 10000 units"), "hcg", text_only=True
                ),
                anastrozole(),
            ],
            FERTILITY,
            id="hcg-by-name",
        ),
    ],
)
def test_the_strongest_level_of_evidence_decides_the_intent(
    resources: list[dict[str, Any]], intent: Intent
) -> None:
    assert intent_of(resources) is intent


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([man(), drug(GOSERELIN, "goserelin"), anastrozole()], id="gnrh-in-a-man"),
        pytest.param(
            [man(), hypogonadism(clinical_status="resolved"), anastrozole()],
            id="hypogonadism-resolved",
        ),
        pytest.param(
            [man(), infertility(clinical_status="inactive"), anastrozole()],
            id="infertility-inactive",
        ),
        pytest.param([woman(), cancer(verification="refuted"), anastrozole()], id="cancer-refuted"),
        pytest.param(
            [man(), trt_course(status="stopped", start=ago(900), end=ago(400)), anastrozole()],
            id="testosterone-stopped-over-a-year-ago",
        ),
        pytest.param([woman(), condition(HYPERTENSION), anastrozole()], id="unrelated-condition"),
        pytest.param([woman(), anastrozole()], id="woman-with-nothing-else"),
        pytest.param(
            [woman(), anastrozole(mg=1, times=1, period_unit="d")], id="woman-on-the-oncology-dose"
        ),
    ],
)
def test_without_deciding_evidence_the_intent_is_unclear(resources: list[dict[str, Any]]) -> None:
    assert intent_of(resources) is UNCLEAR


def test_no_evidence_is_unclear_and_the_explanation_names_what_is_missing() -> None:
    assessment = infer_intent(build_record([woman(), anastrozole()], NOW), NOW)
    assert assessment is not None
    assert assessment.intent is UNCLEAR
    for missing in (
        "indication on the order",
        "breast cancer",
        "hypogonadism",
        "testosterone",
        "tamoxifen",
    ):
        assert missing in assessment.explanation
    # Sex and dose are said, as what is known, but do not decide the intent.
    assert "sex and dose alone do not decide it" in assessment.explanation
    assert {clue.ref for clue in assessment.clues} == {"Patient/pt", "MedicationRequest/ana"}


def test_sex_and_dose_support_the_decided_intent_but_never_decide_alone() -> None:
    daily = anastrozole(mg=1, times=1, period_unit="d")
    decided = infer_intent(build_record([woman(), cancer(), daily], NOW), NOW)
    alone = infer_intent(build_record([woman(), daily], NOW), NOW)
    assert decided is not None and alone is not None
    assert decided.intent is ONCOLOGY
    assert "the oncology dose" in decided.explanation and "female" in decided.explanation
    assert alone.intent is UNCLEAR


@pytest.mark.parametrize(
    ("co_medication", "intent"),
    [(clomiphene(), FERTILITY), (trt_course(), TRT)],
    ids=["clomiphene-says-fertility", "testosterone-says-trt"],
)
def test_a_trt_versus_fertility_tie_is_broken_by_co_medication(
    co_medication: dict[str, Any], intent: Intent
) -> None:
    assert intent_of([man(), hypogonadism(), infertility(), co_medication, anastrozole()]) is intent


def test_a_trt_versus_fertility_tie_without_co_medication_is_unclear_naming_both() -> None:
    assessment = infer_intent(
        build_record([man(), hypogonadism(), infertility(), anastrozole()], NOW), NOW
    )
    assert assessment is not None
    assert assessment.intent is UNCLEAR
    assert (
        assessment.explanation == "the evidence points to both TRT modulation and male infertility"
    )


def test_a_tie_involving_breast_cancer_stays_unclear_even_with_tamoxifen() -> None:
    resources = [man(), cancer(), hypogonadism(), tamoxifen(), trt_course(), anastrozole()]
    assessment = infer_intent(build_record(resources, NOW), NOW)
    assert assessment is not None
    assert assessment.intent is UNCLEAR
    assert (
        "oncology suppression" in assessment.explanation
        and "TRT modulation" in assessment.explanation
    )


def test_two_intents_in_the_order_indication_are_unclear() -> None:
    resources = [man(), anastrozole(reasons=[BREAST_CANCER, HYPOGONADISM])]
    assert intent_of(resources) is UNCLEAR


def test_the_clues_point_at_the_resources_that_decided() -> None:
    resources = [man(), hypogonadism(), infertility(), clomiphene(), anastrozole()]
    assessment = infer_intent(build_record(resources, NOW), NOW)
    assert assessment is not None
    refs = {clue.ref for clue in assessment.clues}
    assert refs - {"Patient/pt", "MedicationRequest/ana"} == {
        "Condition/infertility",
        "MedicationRequest/clomiphene",
    }


def test_a_draft_anastrozole_is_the_course_judged() -> None:
    resources = [man(), hypogonadism(), anastrozole(), anastrozole(rid="ana-draft", status="draft")]
    assessment = infer_intent(build_record(resources, NOW), NOW)
    assert assessment is not None
    assert assessment.course.ref == "MedicationRequest/ana-draft"


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([woman(), cancer()], id="no-anastrozole"),
        pytest.param(
            [woman(), cancer(), anastrozole(status="completed")], id="anastrozole-completed"
        ),
        pytest.param(
            [patient("unknown"), anastrozole(status="cancelled")], id="anastrozole-cancelled"
        ),
    ],
)
def test_no_assessment_without_current_anastrozole(resources: list[dict[str, Any]]) -> None:
    assert infer_intent(build_record(resources, NOW), NOW) is None


# -- When therapy began: a renewal written as a new order does not restart it ---------------


def _renewal(*earlier: dict[str, Any]) -> list[dict[str, Any]]:
    """A man on TRT whose anastrozole was renewed 20 days ago as a new order."""
    return [man(), trt_course(), *earlier, anastrozole(rid="renewal", start=ago(20))]


def test_a_closed_course_that_ran_up_to_the_renewal_keeps_the_start() -> None:
    closed = anastrozole(rid="first", status="completed", start=ago(380), end=ago(30)[:10])
    assert build_record(_renewal(closed), NOW).therapy_start("anastrozole") == NOW - timedelta(
        days=380
    )


def test_a_chain_of_yearly_orders_with_no_end_recorded_is_one_therapy() -> None:
    """Each order closed when the next was written, none with an end: each is taken to run at
    most a year, and each next one started within it."""
    chain = [
        anastrozole(rid=f"year-{n}", status=status, start=ago(20 + 340 * n))
        for n, status in ((1, "completed"), (2, "stopped"), (3, "completed"))
    ]
    assert build_record(_renewal(*chain), NOW).therapy_start("anastrozole") == NOW - timedelta(
        days=1040
    )


def test_a_course_that_ended_long_before_the_new_one_is_another_therapy() -> None:
    """Stopped 200 days before the new order: more than a 90-day gap, so therapy restarted."""
    old = anastrozole(rid="old", status="stopped", start=ago(600), end=ago(220)[:10])
    assert build_record(_renewal(old), NOW).therapy_start("anastrozole") == NOW - timedelta(days=20)


def test_an_order_with_no_end_over_a_year_before_the_new_one_is_another_therapy() -> None:
    old = anastrozole(rid="old", status="completed", start=ago(500))
    assert build_record(_renewal(old), NOW).therapy_start("anastrozole") == NOW - timedelta(days=20)


def test_nothing_running_means_no_therapy_start() -> None:
    old = anastrozole(status="completed", start=ago(100))
    assert build_record([man(), old], NOW).therapy_start("anastrozole") is None
