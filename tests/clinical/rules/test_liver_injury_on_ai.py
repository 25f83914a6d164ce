"""liver-injury-on-ai: ALT or AST above 3x the upper limit of normal on anastrozole."""

from __future__ import annotations

import pytest

from clinical.finding import Severity
from clinical.rules.liver_injury_on_ai import liver_injury_on_ai
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    LOINC,
    UCUM,
    ago,
    alt,
    anastrozole,
    anastrozole_daily,
    ast,
    bilirubin,
    fires,
    oncology_woman,
    run,
    trt_man,
    woman,
)


def test_alt_above_three_times_normal_is_a_warning_with_the_value_and_multiple() -> None:
    finding = fires(liver_injury_on_ai, oncology_woman(alt(150)))
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("ALT 150 U/L (3.8x ULN 40) on anastrozole")


def test_ast_counts_too() -> None:
    assert fires(liver_injury_on_ai, oncology_woman(ast(200))).summary.startswith(
        "AST 200 U/L (5.0x"
    )


@pytest.mark.parametrize(("value", "fired"), [(120, False), (124, True), (40, False)])
def test_alt_exactly_3x_the_default_uln_does_not_fire_and_3_1x_does(
    value: float, fired: bool
) -> None:
    assert bool(run(liver_injury_on_ai, oncology_woman(alt(value)))) is fired


@pytest.mark.parametrize(("value", "fired"), [(99, False), (100, True)])
def test_the_labs_own_reference_range_sets_the_uln(value: float, fired: bool) -> None:
    # ULN 33 U/L: 3x is 99.
    assert bool(run(liver_injury_on_ai, oncology_woman(alt(value, reference_high=33)))) is fired


def test_the_worse_of_alt_and_ast_is_reported() -> None:
    finding = fires(liver_injury_on_ai, oncology_woman(alt(130), ast(400)))
    assert finding.summary.startswith("AST 400 U/L")


def test_enzymes_in_microkatal_per_litre_are_converted() -> None:
    # 3 ukat/L is 180 U/L: 4.5x ULN.
    result = alt(3, rid="alt")
    result["valueQuantity"] = {"value": 3, "unit": "ukat/L", "code": "ukat/L"}
    assert "180 U/L (3 ukat/L) (4.5x" in fires(liver_injury_on_ai, oncology_woman(result)).summary


@pytest.mark.parametrize(
    ("bilirubin_value", "unit", "severity"),
    [
        (2.4, "mg/dL", Severity.WARNING),  # exactly 2x the 1.2 mg/dL ULN: not Hy's law
        (2.5, "mg/dL", Severity.CRITICAL),
        (50, "umol/L", Severity.CRITICAL),  # 2.92 mg/dL
        (1.0, "mg/dL", Severity.WARNING),
    ],
)
def test_bilirubin_above_twice_normal_with_the_transaminase_is_hys_law_and_critical(
    bilirubin_value: float, unit: str, severity: Severity
) -> None:
    finding = fires(liver_injury_on_ai, oncology_woman(alt(200), bilirubin(bilirubin_value, unit)))
    assert finding.severity is severity
    assert ("Hy's law" in finding.summary) is (severity is Severity.CRITICAL)


def test_a_bilirubin_from_weeks_before_the_transaminase_is_not_the_same_draw() -> None:
    resources = oncology_woman(alt(200, days_ago=10), bilirubin(3.0, days_ago=40))
    assert fires(liver_injury_on_ai, resources).severity is Severity.WARNING


def test_results_before_the_course_started_are_not_judged() -> None:
    resources = oncology_woman(alt(300, days_ago=250), ana=anastrozole_daily(start=ago(200)))
    assert run(liver_injury_on_ai, resources) == []


def test_the_latest_result_decides_so_a_recovered_alt_is_silent() -> None:
    resources = oncology_woman(
        alt(300, rid="alt-high", days_ago=90), alt(35, rid="alt-now", days_ago=5)
    )
    assert run(liver_injury_on_ai, resources) == []


def test_an_alt_in_an_unknown_unit_is_never_compared() -> None:
    result = alt(300)
    result["valueQuantity"] = {"value": 300, "unit": "mg/dL", "code": "mg/dL"}
    assert run(liver_injury_on_ai, oncology_woman(result)) == []


@pytest.mark.parametrize("display", ["Bilirubin.total [Mass/volume] in Serum or Plasma", None])
def test_a_bilirubin_in_an_unknown_unit_is_left_out_and_the_finding_says_so(
    display: str | None,
) -> None:
    resources = oncology_woman(alt(200), bilirubin(30, "mg/L", display=display))
    finding = fires(liver_injury_on_ai, resources)
    assert finding.severity is Severity.WARNING
    assert "unit 'mg/L' is not one the rules can compare" in finding.detail


def test_a_draft_order_is_judged_on_the_transaminases_of_the_last_year() -> None:
    draft = anastrozole_daily(status="draft")
    assert run(liver_injury_on_ai, oncology_woman(alt(200, days_ago=60), ana=draft)) != []
    assert run(liver_injury_on_ai, oncology_woman(alt(200, days_ago=400), ana=draft)) == []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(
            oncology_woman(alt(300), ana=anastrozole_daily(status="stopped")),
            id="anastrozole-stopped",
        ),
        pytest.param([woman(), alt(300)], id="no-anastrozole"),
    ],
)
def test_no_anastrozole_means_no_finding(resources: list[dict[str, object]]) -> None:
    assert run(liver_injury_on_ai, resources) == []


def test_it_applies_whatever_the_intent() -> None:
    assert run(liver_injury_on_ai, trt_man(alt(200))) != []
    assert run(liver_injury_on_ai, [woman(), anastrozole(), alt(200)]) != []


def test_a_site_multiple_of_5_silences_an_alt_of_4x() -> None:
    resources = oncology_woman(alt(160))
    settings = Settings().with_overrides({"transaminase_injury_multiple": 5})
    assert run(liver_injury_on_ai, resources, settings) == []


def test_a_site_uln_changes_what_counts_as_high() -> None:
    settings = Settings().with_overrides({"transaminase_uln_u_l": 30})
    assert run(liver_injury_on_ai, oncology_woman(alt(100)), settings) != []


def test_evidence_points_at_the_transaminase_the_course_and_the_bilirubin() -> None:
    resources = oncology_woman(alt(200, rid="alt-oct"), bilirubin(3.0, rid="bili-oct"))
    finding = fires(liver_injury_on_ai, resources)
    assert finding.evidence == (
        "Observation/alt-oct",
        "MedicationRequest/ana",
        "Observation/bili-oct",
    )


def test_an_alt_sent_as_a_component_of_a_comprehensive_metabolic_panel_is_read() -> None:
    """Some labs send the CMP as one Observation with its analytes as components."""
    cmp_panel = {
        "resourceType": "Observation",
        "id": "cmp",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24323-8"}]},
        "subject": {"reference": "Patient/pt"},
        "effectiveDateTime": ago(5),
        "component": [
            {
                "code": {"coding": [{"system": LOINC, "code": "1742-6"}]},
                "valueQuantity": {"value": 200, "unit": "U/L", "system": UCUM, "code": "U/L"},
                "referenceRange": [{"high": {"value": 40, "unit": "U/L"}}],
            }
        ],
    }
    finding = fires(liver_injury_on_ai, oncology_woman(cmp_panel))
    assert "Observation/cmp" in finding.evidence
