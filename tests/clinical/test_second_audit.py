"""Second audit of the clinical core: each test fails without its fix."""

from __future__ import annotations

import random

import pytest

from clinical import evaluate
from clinical.dosage import parse_dosage
from clinical.rules.ai_interaction import ai_interaction
from clinical.rules.dose_intent_mismatch import dose_intent_mismatch
from clinical.rules.premenopausal_on_ai import premenopausal_on_ai
from clinical.rules.sex_undetermined import sex_undetermined
from tests.clinical.rules.builders import (
    BREAST_CANCER,
    ICD10CM,
    LETROZOLE,
    NOW,
    TAMOXIFEN,
    ago,
    ahead,
    anastrozole,
    anastrozole_daily,
    condition,
    drug,
    estradiol,
    fires,
    lab,
    man,
    medication,
    patient,
    run,
    trt_course,
    trt_man,
    woman,
)


# -- dosage text: the strength is not the dose ------------------------------------------------
@pytest.mark.parametrize(
    ("text", "weekly_mg"),
    [
        # a product name with its strength before the tablet count (was 2 mg/week)
        ("ANASTROZOLE 1 MG PO TABS - 0.5 tablets twice weekly", 1.0),
        ("anastrozole 1 mg, 1/2 tab twice a week", 1.0),
        ("Arimidex 1mg - 1/2 tab twice weekly", 1.0),
        ("Anastrozole 1mg: 0.25 tab Mon, Wed, Fri", 0.75),  # was 3 mg/week
        ("anastrozole 1 mg 1/2 tab daily", 3.5),  # was 7: an oncology under-dose hidden
        # "half of a 1 mg tablet" (was 1 mg a dose)
        ("take half of a 1 mg tablet twice weekly", 1.0),
        ("take 1/2 of 1 mg tab twice weekly", 1.0),
        # a range is read at its low end, as a structured doseRange is (was the high end)
        ("0.5-1 mg twice weekly", 1.0),
        ("0.5 to 1 mg twice weekly", 1.0),
        ("anastrozole 1 mg tablets: 1-2 tabs daily", 7.0),
        # still the dose when nothing else is
        ("anastrozole 0.5 mg twice weekly", 1.0),
        ("1 mg tab po daily", 7.0),
        ("take 1 tablet (1 mg) daily", 7.0),
    ],
)
def test_text_dose_is_not_the_tablet_strength(text: str, weekly_mg: float) -> None:
    dose = parse_dosage([{"text": text}], None)
    assert dose.weekly_mg == pytest.approx(weekly_mg)


def test_a_stray_space_in_a_decimal_is_not_read_as_ten_times_the_dose() -> None:
    assert parse_dosage([{"text": "0. 5 mg twice weekly"}]).weekly_mg is None  # was 10 mg


def test_a_range_is_shown_as_a_range() -> None:
    assert parse_dosage([{"text": "1-2 tabs daily"}], 1.0).description.startswith("1-2 tablets")


def test_a_zero_dose_quantity_is_no_dose() -> None:
    entry = {
        "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}},
        "doseAndRate": [{"doseQuantity": {"value": 0, "unit": "mg"}}],
    }
    assert parse_dosage([entry]).weekly_mg is None  # was 0 mg/week: "below the labelled dose"


def test_product_strength_in_the_sig_of_a_trt_man_gives_no_oncology_dose_warning() -> None:
    ana = anastrozole()
    ana["dosageInstruction"] = [{"text": "Anastrozole 1 mg, 1/2 tab daily"}]
    del ana["medicationCodeableConcept"]["coding"]
    ana["medicationCodeableConcept"]["text"] = "anastrozole"
    assert run(dose_intent_mismatch, trt_man(ana=ana)) == []


# -- ai-interaction ----------------------------------------------------------------------------
def _oncology_woman_with(*extra: dict[str, object]) -> list[dict[str, object]]:
    return [woman(), condition(BREAST_CANCER, rid="breast-cancer"), *extra]


def test_a_renewal_does_not_make_months_of_tamoxifen_with_anastrozole_a_switch() -> None:
    resources = _oncology_woman_with(
        drug(TAMOXIFEN, "tam", start=ago(1500), end=ahead(14)),
        anastrozole_daily(rid="ana-1", status="completed", start=ago(520), end=ago(10)),
        anastrozole_daily(rid="ana-2", start=ago(10)),
    )
    finding = fires(ai_interaction, resources)
    assert "tamoxifen" in finding.summary


def test_a_tamoxifen_course_not_started_yet_is_not_a_combination() -> None:
    planned = drug(TAMOXIFEN, "tam", start=ago(1))
    planned["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": ahead(60)}}}}]
    assert run(ai_interaction, _oncology_woman_with(anastrozole_daily(), planned)) == []


def test_a_real_switch_still_gives_no_card() -> None:
    resources = _oncology_woman_with(
        drug(TAMOXIFEN, "tam", start=ago(900), end=ahead(10)),
        anastrozole_daily(start=ago(5)),
    )
    assert run(ai_interaction, resources) == []


# -- dose-intent-mismatch ----------------------------------------------------------------------
def test_a_woman_on_testosterone_is_asked_for_the_indication_not_held_to_male_doses() -> None:
    finding = fires(dose_intent_mismatch, [woman(age=58), trt_course(), anastrozole_daily()])
    assert "female patient" in finding.summary
    assert "7 mg/week" in finding.summary
    assert "0.5-1 mg/week" not in finding.detail + finding.summary


def test_above_the_label_comes_first_whatever_the_sex() -> None:
    resources = [woman(age=58), trt_course(), anastrozole(mg=2, times=1, period_unit="d")]
    assert "above the labelled" in fires(dose_intent_mismatch, resources).summary


def test_the_gnrh_warning_for_a_man_says_the_dose() -> None:
    resources = [
        man(age=60),
        condition((ICD10CM, "C50.921", "Malignant neoplasm of right male breast")),
        anastrozole_daily(),
    ]
    summary = fires(dose_intent_mismatch, resources).summary
    assert "7 mg/week" in summary and "GnRH" in summary and len(summary) <= 140


# -- sex-undetermined and premenopausal-on-ai --------------------------------------------------
def test_sex_undetermined_names_the_ai_the_patient_is_on() -> None:
    resources = [
        patient("unknown"),
        condition(BREAST_CANCER),
        drug(LETROZOLE, "letrozole", start=ago(200), mg=2.5),
    ]
    summary = fires(sex_undetermined, resources).summary
    assert "letrozole" in summary and "anastrozole" not in summary


def test_premenopausal_card_shows_the_fsh_and_estradiol_on_record() -> None:
    resources = _oncology_woman_with(
        anastrozole_daily(),
        lab("15067-2", 80, "m[IU]/mL", rid="fsh", when=ago(20)),
        estradiol(4, comparator="<", days_ago=20),
    )
    resources[0] = woman(age=52)
    finding = fires(premenopausal_on_ai, resources)
    assert "80 m[IU]/mL" in finding.detail and "<4 pg/mL" in finding.detail
    assert "Observation/fsh" in finding.evidence


# -- findings do not depend on the order of the resources --------------------------------------
def _charts() -> list[list[dict]]:
    male_breast_cancer = (ICD10CM, "C50.921", "Malignant neoplasm of right male breast")
    return [
        # two intents at the condition level: the evidence lines were in resource order
        [
            man(age=60),
            condition(male_breast_cancer, rid="bc"),
            condition((ICD10CM, "Z17.0", "Estrogen receptor positive status [ER+]"), rid="er"),
            condition((ICD10CM, "E29.1", "Testicular hypofunction"), rid="hypo"),
            trt_course(),
            anastrozole_daily(),
        ],
        # two running anastrozole orders started the same day, different doses
        [
            woman(),
            condition(BREAST_CANCER, rid="bc"),
            condition((ICD10CM, "Z17.0", "Estrogen receptor positive status [ER+]"), rid="er"),
            anastrozole_daily(rid="ana-b", start=ago(100)),
            anastrozole(rid="ana-a", start=ago(100)),
            medication(TAMOXIFEN, rid="tam", start=ago(300), end=ago(200)),
        ],
    ]


@pytest.mark.parametrize("chart", range(2))
def test_findings_do_not_depend_on_resource_order(chart: int) -> None:
    resources = _charts()[chart]

    def findings(chart_resources: list[dict]) -> list[object]:
        return list(evaluate(chart_resources, now=NOW))

    first = findings(resources)
    for seed in range(12):
        shuffled = resources[:]
        random.Random(seed).shuffle(shuffled)
        assert findings(shuffled) == first
