"""dose-intent-mismatch: the dose, sex or co-medication does not fit what anastrozole is for."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.dose_intent_mismatch import dose_intent_mismatch
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    BREAST_CANCER,
    HYPOGONADISM,
    LEUPROLIDE,
    ago,
    anastrozole,
    condition,
    drug,
    fertility_man,
    fires,
    man,
    oncology_woman,
    patient,
    run,
    trt_course,
    trt_man,
    woman,
)

# (mg per dose, doses, per period unit) -> weekly mg
HALF_TWICE_WEEKLY = {"mg": 0.5, "times": 2, "period_unit": "wk"}  # 1 mg/week
ONE_SIX_TIMES_WEEKLY = {"mg": 1, "times": 6, "period_unit": "wk"}  # 6 mg/week
ONE_DAILY = {"mg": 1, "times": 1, "period_unit": "d"}  # 7 mg/week
HALF_DAILY = {"mg": 0.5, "times": 1, "period_unit": "d"}  # 3.5 mg/week
TWO_DAILY = {"mg": 2, "times": 1, "period_unit": "d"}  # 14 mg/week


def man_with_breast_cancer(*extra: dict[str, Any], **dose: Any) -> list[dict[str, Any]]:
    return [
        man(),
        condition(BREAST_CANCER, rid="breast-cancer"),
        anastrozole(**{**ONE_DAILY, **dose}),
        *extra,
    ]


@pytest.mark.parametrize(
    ("dose", "fired"),
    [(HALF_TWICE_WEEKLY, False), (ONE_SIX_TIMES_WEEKLY, False), (ONE_DAILY, True)],
)
def test_trt_at_the_oncology_dose_of_7_mg_a_week_is_a_mismatch(
    dose: dict[str, Any], fired: bool
) -> None:
    findings = run(dose_intent_mismatch, trt_man(ana=anastrozole(**dose)))
    assert bool(findings) is fired
    if fired:
        assert findings[0].severity is Severity.WARNING
        assert findings[0].summary.startswith("Anastrozole 7 mg/week in TRT modulation")


@pytest.mark.parametrize(("dose", "fired"), [(ONE_DAILY, False), (HALF_DAILY, True)])
def test_oncology_below_1_mg_daily_is_a_mismatch(dose: dict[str, Any], fired: bool) -> None:
    findings = run(dose_intent_mismatch, oncology_woman(ana=anastrozole(**dose)))
    assert bool(findings) is fired
    if fired:
        assert findings[0].summary.startswith("Anastrozole 3.5 mg/week for breast cancer")


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(oncology_woman(ana=anastrozole(**TWO_DAILY)), id="oncology"),
        pytest.param(trt_man(ana=anastrozole(**TWO_DAILY)), id="trt"),
        pytest.param(fertility_man(ana=anastrozole(**TWO_DAILY)), id="fertility"),
    ],
)
def test_above_the_labelled_7_mg_a_week_is_a_mismatch_whatever_the_intent(
    resources: list[dict[str, Any]],
) -> None:
    assert fires(dose_intent_mismatch, resources).summary.startswith(
        "Anastrozole 14 mg/week: above the labelled"
    )


def test_fertility_at_1_mg_daily_is_not_a_mismatch() -> None:
    assert run(dose_intent_mismatch, fertility_man(ana=anastrozole(**ONE_DAILY))) == []


def test_breast_cancer_in_a_man_without_a_gnrh_agonist_is_a_mismatch() -> None:
    finding = fires(dose_intent_mismatch, man_with_breast_cancer())
    assert "in a man without a GnRH agonist" in finding.summary


def test_breast_cancer_in_a_man_with_a_gnrh_agonist_is_not() -> None:
    assert (
        run(
            dose_intent_mismatch,
            man_with_breast_cancer(drug(LEUPROLIDE, "leuprolide", start=ago(90))),
        )
        == []
    )


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(
            [woman(age=40), condition(HYPOGONADISM, rid="hypogonadism"), anastrozole()],
            id="trt-intent-in-a-woman",
        ),
        pytest.param([woman(age=40), trt_course(), anastrozole()], id="testosterone-in-a-woman"),
    ],
)
def test_trt_or_fertility_intent_in_a_woman_is_a_mismatch(resources: list[dict[str, Any]]) -> None:
    assert "in a female patient" in fires(dose_intent_mismatch, resources).summary


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(
            [patient("unknown"), condition(BREAST_CANCER), anastrozole(**ONE_DAILY)],
            id="oncology-no-gnrh",
        ),
        pytest.param([patient(None), condition(HYPOGONADISM), anastrozole()], id="trt-intent"),
    ],
)
def test_sex_based_checks_are_withheld_when_sex_is_undetermined(
    resources: list[dict[str, Any]],
) -> None:
    assert run(dose_intent_mismatch, resources) == []


def test_dose_checks_still_run_when_sex_is_undetermined() -> None:
    resources = [patient("unknown"), condition(HYPOGONADISM), anastrozole(**ONE_DAILY)]
    assert run(dose_intent_mismatch, resources) != []


def test_no_judgement_while_the_intent_is_unclear() -> None:
    assert run(dose_intent_mismatch, [woman(), anastrozole(**TWO_DAILY)]) == []


def test_an_unreadable_dose_skips_the_dose_checks_only() -> None:
    unreadable = anastrozole(**ONE_DAILY)
    unreadable["dosageInstruction"] = [{"text": "as directed"}]
    assert run(dose_intent_mismatch, trt_man(ana=unreadable)) == []
    unreadable_in_a_man = man_with_breast_cancer()
    unreadable_in_a_man[2]["dosageInstruction"] = [{"text": "as directed"}]
    assert run(dose_intent_mismatch, unreadable_in_a_man) != []


def test_a_draft_order_is_judged_rather_than_the_running_course() -> None:
    draft = anastrozole(rid="ana-draft", status="draft", **ONE_DAILY)
    finding = fires(dose_intent_mismatch, trt_man(draft))
    assert finding.evidence == ("MedicationRequest/ana-draft",)


def test_a_site_oncology_dose_setting_moves_the_trt_ceiling() -> None:
    resources = trt_man(ana=anastrozole(**ONE_SIX_TIMES_WEEKLY))
    assert run(dose_intent_mismatch, resources) == []
    settings = Settings().with_overrides({"oncology_weekly_dose_mg": 5})
    assert run(dose_intent_mismatch, resources, settings) != []


def test_a_site_maximum_weekly_dose_changes_what_is_above_the_label() -> None:
    resources = oncology_woman(ana=anastrozole(**TWO_DAILY))
    settings = Settings().with_overrides({"max_weekly_dose_mg": 14})
    assert run(dose_intent_mismatch, resources, settings) == []


def test_evidence_points_at_the_anastrozole_order_and_the_intent_is_given() -> None:
    finding = fires(dose_intent_mismatch, trt_man(ana=anastrozole(rid="ana-qd", **ONE_DAILY)))
    assert finding.evidence == ("MedicationRequest/ana-qd",)
    assert finding.intent is Intent.TRT_MODULATION


def test_a_three_month_leuprolide_depot_given_two_months_ago_is_current() -> None:
    depot = (
        "http://www.nlm.nih.gov/research/umls/rxnorm",
        "2606516",
        "leuprolide acetate 22.5 MG Injection",
    )
    given = drug(depot, "lupron", status="completed", start=ago(60))
    assert run(dose_intent_mismatch, man_with_breast_cancer(given)) == []
    given["authoredOn"] = ago(100)  # past its 3 months: no longer suppressing
    assert run(dose_intent_mismatch, man_with_breast_cancer(given)) != []


# -- what an order hook can offer on the draft ------------------------------------------------------


def test_a_draft_under_the_oncology_dose_is_offered_the_labelled_1_mg_once_daily() -> None:
    draft = anastrozole(rid="ana-draft", status="draft", **HALF_TWICE_WEEKLY)
    finding = fires(dose_intent_mismatch, oncology_woman(ana=draft))
    (action,) = finding.order_actions
    assert (action.kind, action.target, action.recommended) == (
        "update",
        "MedicationRequest/ana-draft",
        True,
    )
    assert action.dose is not None
    assert (action.dose.amount_mg, action.dose.frequency, action.dose.period_unit) == (1, 1, "d")
    assert action.label == "Change to 1 mg once daily"


def test_a_trt_draft_at_the_oncology_dose_is_offered_the_trt_dose_twice_weekly() -> None:
    draft = anastrozole(rid="ana-draft", status="draft", **ONE_DAILY)
    finding = fires(dose_intent_mismatch, trt_man(ana=draft))
    (action,) = finding.order_actions
    assert action.dose is not None
    dose = action.dose
    assert (dose.amount_mg, dose.frequency, dose.period, dose.period_unit) == (0.5, 2, 1, "wk")
    assert action.label == "Change to 0.5 mg twice weekly"


def test_a_running_order_is_never_offered_a_change_only_a_draft_is() -> None:
    finding = fires(dose_intent_mismatch, trt_man(ana=anastrozole(**ONE_DAILY)))
    assert finding.order_actions == ()
