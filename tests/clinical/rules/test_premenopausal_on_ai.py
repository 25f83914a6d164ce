"""premenopausal-on-ai: a woman not shown postmenopausal on an AI without ovarian suppression."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Severity
from clinical.rules.premenopausal_on_ai import premenopausal_on_ai
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    BILATERAL_OOPHORECTOMY,
    GOSERELIN,
    LETROZOLE,
    LEUPROLIDE,
    POSTMENOPAUSAL,
    PREMENOPAUSAL,
    ago,
    anastrozole_daily,
    born_years_ago,
    condition,
    drug,
    fires,
    lab,
    man,
    oncology_woman,
    patient,
    procedure,
    run,
    woman,
)


def young_woman(*extra: dict[str, Any], age: int = 45) -> list[dict[str, Any]]:
    """A woman of 45 with breast cancer on anastrozole and nothing about menopause."""
    return oncology_woman(*extra, age=age)


def test_a_woman_under_60_not_shown_postmenopausal_is_a_warning_with_fsh_and_estradiol_orders() -> (
    None
):
    finding = fires(premenopausal_on_ai, young_woman())
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("Anastrozole in a woman aged 45 not shown postmenopausal")
    assert [order.codings[0].code for order in finding.suggested_orders] == ["15067-2", "2243-4"]


def test_a_recorded_premenopausal_state_is_critical() -> None:
    finding = fires(premenopausal_on_ai, young_woman(condition(PREMENOPAUSAL, rid="premeno")))
    assert finding.severity is Severity.CRITICAL
    assert "Condition/premeno" in finding.evidence


@pytest.mark.parametrize(
    ("birth_date", "fired"),
    [
        (born_years_ago(60), False),
        (born_years_ago(60, days_later=1), True),
        (born_years_ago(72), False),
    ],
    ids=["60-today", "59-turning-60-tomorrow", "72"],
)
def test_age_60_or_more_counts_as_postmenopausal(birth_date: str, fired: bool) -> None:
    assert bool(run(premenopausal_on_ai, oncology_woman(birth_date=birth_date))) is fired


@pytest.mark.parametrize(
    "evidence",
    [
        pytest.param(condition(POSTMENOPAUSAL, rid="meno"), id="menopause-condition"),
        pytest.param(
            condition(POSTMENOPAUSAL, rid="meno", clinical_status="inactive"),
            id="menopause-inactive",
        ),
        pytest.param(
            procedure(BILATERAL_OOPHORECTOMY, rid="bso", days_ago=900), id="bilateral-oophorectomy"
        ),
        pytest.param(
            {
                **lab("73831-0", rid="meno-status", when=ago(30)),
                "valueCodeableConcept": {
                    "coding": [{"system": POSTMENOPAUSAL[0], "code": POSTMENOPAUSAL[1]}]
                },
            },
            id="menopausal-status-observation",
        ),
    ],
)
def test_a_menopause_diagnosis_or_bilateral_oophorectomy_shows_postmenopause(
    evidence: dict[str, Any],
) -> None:
    assert run(premenopausal_on_ai, young_woman(evidence)) == []


def test_a_planned_oophorectomy_does_not_show_postmenopause() -> None:
    planned = procedure(BILATERAL_OOPHORECTOMY, rid="bso", days_ago=-30, status="preparation")
    assert run(premenopausal_on_ai, young_woman(planned)) != []


@pytest.mark.parametrize("gnrh", [GOSERELIN, LEUPROLIDE])
def test_ovarian_suppression_with_a_gnrh_agonist_silences_it(gnrh: tuple[str, str, str]) -> None:
    assert run(premenopausal_on_ai, young_woman(drug(gnrh, "gnrh", start=ago(100)))) == []


def test_a_stopped_gnrh_agonist_no_longer_suppresses() -> None:
    stopped = drug(GOSERELIN, "gnrh", status="stopped", start=ago(400))
    assert run(premenopausal_on_ai, young_woman(stopped)) != []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([man(), anastrozole_daily()], id="a-man"),
        pytest.param([patient("unknown"), anastrozole_daily()], id="sex-undetermined"),
        pytest.param(
            oncology_woman(age=45, ana=anastrozole_daily(status="completed")), id="not-on-an-ai"
        ),
    ],
)
def test_it_is_only_about_women_on_an_aromatase_inhibitor(resources: list[dict[str, Any]]) -> None:
    assert run(premenopausal_on_ai, resources) == []


def test_any_aromatase_inhibitor_counts() -> None:
    finding = fires(
        premenopausal_on_ai, [woman(age=42), drug(LETROZOLE, "letrozole", start=ago(50))]
    )
    assert finding.summary.startswith("Letrozole in a woman aged 42")


def test_a_woman_of_unknown_age_is_not_assumed_postmenopausal() -> None:
    finding = fires(premenopausal_on_ai, [woman(age=None), anastrozole_daily()])
    assert "of unknown age" in finding.summary


def test_a_site_menopause_age_of_55_silences_it_for_a_woman_of_57() -> None:
    resources = young_woman(age=57)
    assert run(premenopausal_on_ai, resources) != []
    settings = Settings().with_overrides({"postmenopausal_age": 55})
    assert run(premenopausal_on_ai, resources, settings) == []


def test_evidence_points_at_the_ai_course() -> None:
    assert fires(premenopausal_on_ai, young_woman()).evidence == ("MedicationRequest/ana",)


@pytest.mark.parametrize(("days_ago", "suppressed"), [(14, True), (27, True), (35, False)])
def test_a_goserelin_implant_given_covers_its_28_days(days_ago: int, suppressed: bool) -> None:
    """Given in clinic, the order is closed once the implant is in: the 3.6 mg implant still
    suppresses for its labelled 28 days (Zoladex PI), and no longer after."""
    given = drug(GOSERELIN, "gnrh", status="completed", start=ago(days_ago))
    assert (run(premenopausal_on_ai, young_woman(given)) == []) is suppressed
