"""bone-loss-on-ai: osteoporosis on an aromatase inhibitor without bone-protective therapy."""

from __future__ import annotations

import pytest

from clinical.finding import Severity
from clinical.rules.bone_loss_on_ai import bone_loss_on_ai
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    ALENDRONATE,
    LETROZOLE,
    OSTEOPOROSIS,
    T_SCORE_HIP,
    ago,
    anastrozole_daily,
    by_name,
    condition,
    drug,
    fires,
    oncology_woman,
    run,
    statement,
    t_score,
    woman,
)


def test_an_osteoporosis_diagnosis_without_protection_is_a_warning() -> None:
    finding = fires(bone_loss_on_ai, oncology_woman(condition(OSTEOPOROSIS, rid="op")))
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("Osteoporosis on anastrozole without bone-protective therapy")


def test_an_osteoporotic_t_score_is_a_warning_that_gives_the_number() -> None:
    finding = fires(bone_loss_on_ai, oncology_woman(t_score(-2.7)))
    assert finding.severity is Severity.WARNING
    assert "T-score -2.7 on anastrozole" in finding.summary


@pytest.mark.parametrize(("score", "fired"), [(-2.4, False), (-2.5, True), (-2.6, True)])
def test_a_t_score_at_minus_2_5_is_osteoporosis_and_just_above_is_not(
    score: float, fired: bool
) -> None:
    assert bool(run(bone_loss_on_ai, oncology_woman(t_score(score)))) is fired


def test_the_lowest_site_of_the_latest_dxa_decides() -> None:
    spine = t_score(-1.8, rid="spine")
    hip = t_score(-2.6, rid="hip", loinc=T_SCORE_HIP)
    assert "T-score -2.6" in fires(bone_loss_on_ai, oncology_woman(spine, hip)).summary


def test_a_newer_dxa_above_the_threshold_supersedes_an_older_osteoporotic_one() -> None:
    older = t_score(-2.8, rid="old", days_ago=800)
    newer = t_score(-2.0, rid="new", days_ago=100)
    assert run(bone_loss_on_ai, oncology_woman(older, newer)) == []


@pytest.mark.parametrize(
    "protection",
    [
        pytest.param(drug(ALENDRONATE, "alendronate"), id="alendronate-order"),
        pytest.param(
            statement(ALENDRONATE, rid="alendronate", start=ago(300)), id="alendronate-statement"
        ),
        pytest.param(
            drug(by_name("Prolia (denosumab) 60 mg"), "prolia", text_only=True),
            id="denosumab-by-name",
        ),
    ],
)
def test_bone_protective_therapy_silences_it(protection: dict[str, object]) -> None:
    assert run(bone_loss_on_ai, oncology_woman(t_score(-2.9), protection)) == []


def test_a_stopped_bisphosphonate_does_not_protect() -> None:
    stopped = drug(ALENDRONATE, "alendronate", status="stopped")
    assert run(bone_loss_on_ai, oncology_woman(t_score(-2.9), stopped)) != []


@pytest.mark.parametrize(
    ("clinical_status", "verification"),
    [
        ("resolved", "confirmed"),
        ("inactive", "confirmed"),
        ("active", "refuted"),
        ("active", "entered-in-error"),
    ],
)
def test_an_osteoporosis_diagnosis_not_active_or_not_true_does_not_fire(
    clinical_status: str, verification: str
) -> None:
    diagnosis = condition(
        OSTEOPOROSIS, rid="op", clinical_status=clinical_status, verification=verification
    )
    assert run(bone_loss_on_ai, oncology_woman(diagnosis)) == []


def test_no_aromatase_inhibitor_means_no_finding() -> None:
    assert (
        run(
            bone_loss_on_ai,
            oncology_woman(t_score(-3.0), ana=anastrozole_daily(status="completed")),
        )
        == []
    )


def test_any_aromatase_inhibitor_counts() -> None:
    letrozole = drug(LETROZOLE, "letrozole", start=ago(100))
    finding = fires(bone_loss_on_ai, [woman(), letrozole, t_score(-3.1)])
    assert "on letrozole" in finding.summary


def test_a_site_threshold_of_minus_3_silences_a_t_score_of_minus_2_7() -> None:
    resources = oncology_woman(t_score(-2.7))
    settings = Settings().with_overrides({"osteoporosis_t_score": -3.0})
    assert run(bone_loss_on_ai, resources, settings) == []


def test_evidence_points_at_the_course_the_t_score_and_the_diagnosis() -> None:
    resources = oncology_woman(t_score(-2.7, rid="dxa-t"), condition(OSTEOPOROSIS, rid="op"))
    finding = fires(bone_loss_on_ai, resources)
    assert finding.evidence == ("MedicationRequest/ana", "Observation/dxa-t", "Condition/op")


DENOSUMAB = (
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "993452",
    "denosumab 60 MG/ML Prefilled Syringe",
)


@pytest.mark.parametrize(("days_ago", "protected"), [(90, True), (180, True), (200, False)])
def test_a_denosumab_injection_given_protects_for_its_six_months(
    days_ago: int, protected: bool
) -> None:
    """The order is closed once the injection is given: it protects for the labelled 6 months
    (Prolia PI), and the warning returns when the next one is overdue."""
    given = drug(DENOSUMAB, "prolia", status="completed", start=ago(days_ago))
    resources = oncology_woman(t_score(-2.8), given)
    assert (run(bone_loss_on_ai, resources) == []) is protected


def test_an_order_saying_every_6_months_sets_the_interval() -> None:
    given = drug(by_name("zoledronic acid infusion"), "zol", status="completed", start=ago(200))
    given["dosageInstruction"] = [{"timing": {"repeat": {"period": 6, "periodUnit": "mo"}}}]
    assert run(bone_loss_on_ai, oncology_woman(t_score(-2.8), given)) != []  # 200 > 183 days
    given["authoredOn"] = ago(150)
    assert run(bone_loss_on_ai, oncology_woman(t_score(-2.8), given)) == []
