"""estradiol-low: over-suppression where anastrozole is meant to modulate, not suppress."""

from __future__ import annotations

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.estradiol_low import estradiol_low
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    TESTOSTERONE_TOTAL,
    ago,
    anastrozole,
    estradiol,
    fertility_man,
    fires,
    lab,
    oncology_woman,
    patient,
    run,
    trt_man,
    woman,
)


@pytest.mark.parametrize(
    ("value", "severity", "shown"),
    [
        (19.9, Severity.WARNING, "19.9 pg/mL"),
        (11, Severity.WARNING, "11 pg/mL"),
        (10, Severity.WARNING, "10 pg/mL"),
        (9.9, Severity.CRITICAL, "9.9 pg/mL"),
        (4, Severity.CRITICAL, "4 pg/mL"),
    ],
)
def test_estradiol_below_the_floor_in_trt_is_low_and_critical_below_ten(
    value: float, severity: Severity, shown: str
) -> None:
    finding = fires(estradiol_low, trt_man(estradiol(value)))
    assert finding.severity is severity
    assert shown in finding.summary
    assert finding.intent is Intent.TRT_MODULATION


def test_estradiol_at_the_floor_is_not_low() -> None:
    assert run(estradiol_low, trt_man(estradiol(20))) == []


def test_the_summary_names_the_floor_it_is_below() -> None:
    assert "below 20 pg/mL" in fires(estradiol_low, trt_man(estradiol(14))).summary
    assert "below 10 pg/mL" in fires(estradiol_low, trt_man(estradiol(6))).summary


def test_low_estradiol_in_fertility_intent_fires_with_the_fertility_label() -> None:
    finding = fires(estradiol_low, fertility_man(estradiol(12)))
    assert finding.intent is Intent.FERTILITY
    assert "fertility" in finding.summary


def test_estradiol_in_pmol_per_litre_is_judged_in_pg_per_ml() -> None:
    # 55 pmol/L is 14.98 pg/mL: low. 80 pmol/L is 21.8 pg/mL: not low.
    finding = fires(estradiol_low, trt_man(estradiol(55, "pmol/L")))
    assert "15 pg/mL (55 pmol/L)" in finding.summary  # no more precision than sent
    assert run(estradiol_low, trt_man(estradiol(80, "pmol/L"))) == []


@pytest.mark.parametrize(
    ("value_string", "severity"),
    [("<5 pg/mL", Severity.CRITICAL), ("<20 pg/mL", Severity.WARNING)],
)
def test_a_less_than_result_at_or_under_the_floor_counts_as_below_it(
    value_string: str, severity: Severity
) -> None:
    finding = fires(estradiol_low, trt_man(estradiol(value_string=value_string)))
    assert finding.severity is severity
    assert value_string.split()[0] in finding.summary


def test_a_less_than_30_result_cannot_tell_and_does_not_fire() -> None:
    assert run(estradiol_low, trt_man(estradiol(value_string="<30 pg/mL"))) == []


def test_low_estradiol_is_not_flagged_in_oncology_intent() -> None:
    assert run(estradiol_low, oncology_woman(estradiol(3))) == []


def test_low_estradiol_is_not_flagged_when_intent_is_unclear() -> None:
    assert run(estradiol_low, [woman(), anastrozole(), estradiol(3)]) == []


@pytest.mark.parametrize("sex_parameter", [None, "female-typical"])
def test_low_estradiol_is_not_judged_by_the_male_floor_in_a_woman(
    sex_parameter: str | None,
) -> None:
    """A woman of 65 on testosterone and anastrozole (TRT intent): 8 pg/mL is a usual
    postmenopausal value; the 20 and 10 pg/mL cut-offs are male numbers."""
    resources = trt_man(estradiol(8))
    resources[0] = woman(age=65, sex_parameter=sex_parameter)
    assert run(estradiol_low, resources) == []
    assert run(estradiol_low, trt_man(estradiol(8))) != []  # the same data in a man


@pytest.mark.parametrize("gender", ["unknown", "other", None])
def test_low_estradiol_is_withheld_when_sex_is_undetermined(gender: str | None) -> None:
    resources = trt_man(estradiol(11))
    resources[0] = patient(gender)
    assert run(estradiol_low, resources) == []


def test_results_from_before_the_course_started_are_not_judged() -> None:
    # Anastrozole started 200 days ago; the only estradiol is from 210 days ago.
    assert run(estradiol_low, trt_man(estradiol(11, days_ago=210))) == []


def test_the_latest_result_since_the_start_decides() -> None:
    recovered = estradiol(26, rid="e2-new", days_ago=10)
    assert run(estradiol_low, trt_man(estradiol(11, days_ago=60), recovered)) == []


def test_a_newer_prescription_of_a_running_course_does_not_hide_results_drawn_on_therapy() -> None:
    # Two current anastrozole requests: the course running for 700 days, and a refill written 20
    # days ago. The estradiol 30 days ago was drawn on anastrozole and is low.
    refill = anastrozole(rid="ana-refill", start=ago(20))
    resources = trt_man(estradiol(12, days_ago=30), refill, ana=anastrozole(start=ago(700)))
    assert "12 pg/mL" in fires(estradiol_low, resources).summary


def test_a_site_floor_of_15_silences_an_estradiol_of_17() -> None:
    resources = trt_man(estradiol(17))
    assert run(estradiol_low, resources) != []
    settings = Settings().with_overrides({"estradiol_floor_pg_ml": 15})
    assert run(estradiol_low, resources, settings) == []


def test_a_site_critical_threshold_makes_a_moderately_low_value_critical() -> None:
    settings = Settings().with_overrides({"estradiol_critical_pg_ml": 15})
    assert fires(estradiol_low, trt_man(estradiol(12)), settings).severity is Severity.CRITICAL


def test_a_draft_order_is_judged_on_the_estradiol_it_would_start_from() -> None:
    # The draft starts now, so a result from 30 days ago is the pre-start baseline.
    draft = anastrozole(status="draft")
    finding = fires(estradiol_low, trt_man(estradiol(15, days_ago=30), ana=draft))
    assert "before starting anastrozole" in finding.summary
    assert "15 pg/mL" in finding.summary


def test_a_draft_order_ignores_an_estradiol_older_than_the_monitoring_interval() -> None:
    draft = anastrozole(status="draft")
    assert run(estradiol_low, trt_man(estradiol(15, days_ago=120), ana=draft)) == []


def test_evidence_points_at_the_estradiol_and_the_anastrozole_order() -> None:
    finding = fires(estradiol_low, trt_man(estradiol(11, rid="e2-oct")))
    assert finding.evidence == ("Observation/e2-oct", "MedicationRequest/ana")


def test_fertility_detail_gives_the_testosterone_to_estradiol_ratio_of_the_same_day() -> None:
    same_day = lab(TESTOSTERONE_TOTAL, 300, "ng/dL", rid="t", when=ago(30))
    finding = fires(estradiol_low, fertility_man(estradiol(12, days_ago=30), same_day))
    assert "T/E2 ratio 25" in finding.detail


def test_a_renewal_written_as_a_new_order_does_not_hide_results_drawn_on_therapy() -> None:
    """The first order closed when the renewal was written 20 days ago: therapy did not
    restart, so the estradiol 30 days ago was drawn on it."""
    first = anastrozole(rid="first", status="completed", start=ago(400), end=ago(25)[:10])
    resources = trt_man(estradiol(12, days_ago=30), first, ana=anastrozole(start=ago(20)))
    assert "12 pg/mL" in fires(estradiol_low, resources).summary


@pytest.mark.parametrize("text", ["below 5 pg/mL", "less than 5 pg/mL", "Below 5 pg/ml"])
def test_a_result_written_in_words_as_below_a_bound_counts_as_below_it(text: str) -> None:
    finding = fires(estradiol_low, trt_man(estradiol(value_string=text)))
    assert finding.severity is Severity.CRITICAL
    assert "<5 pg/mL" in finding.summary


def test_a_converted_result_is_shown_as_the_lab_sent_it_too() -> None:
    """The clinician matches the card to the lab report, which says 44 pmol/L."""
    finding = fires(estradiol_low, trt_man(estradiol(44, "pmol/L")))
    assert "12 pg/mL (44 pmol/L)" in finding.summary
    assert "(44 pmol/L)" in finding.detail
    assert "(" not in fires(estradiol_low, trt_man(estradiol(11))).summary.split("on")[0]
