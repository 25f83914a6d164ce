"""estradiol-high: estradiol above the ceiling in a man on testosterone therapy."""

from __future__ import annotations

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.estradiol_high import estradiol_high
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    ago,
    estradiol,
    fires,
    man,
    patient,
    run,
    trt_course,
    trt_man,
    woman,
)


def on_testosterone_only(*extra: dict[str, object]) -> list[dict[str, object]]:
    """A man on testosterone, no aromatase inhibitor."""
    return [man(), trt_course(), *extra]


def test_estradiol_above_the_ceiling_on_testosterone_is_flagged_as_info() -> None:
    finding = fires(estradiol_high, on_testosterone_only(estradiol(55)))
    assert finding.severity is Severity.INFO
    assert "55 pg/mL" in finding.summary
    assert "above 40 pg/mL" in finding.summary


def test_the_summary_says_despite_anastrozole_when_already_on_it() -> None:
    finding = fires(estradiol_high, trt_man(estradiol(55)))
    assert finding.summary.endswith("despite anastrozole")
    assert finding.intent is Intent.TRT_MODULATION


def test_without_an_aromatase_inhibitor_the_detail_warns_it_is_off_label() -> None:
    finding = fires(estradiol_high, on_testosterone_only(estradiol(55)))
    assert "despite" not in finding.summary
    assert "off-label" in finding.detail


@pytest.mark.parametrize(("value", "high"), [(40, False), (40.1, True), (39, False)])
def test_estradiol_at_the_ceiling_is_not_high_and_just_above_it_is(
    value: float, high: bool
) -> None:
    assert bool(run(estradiol_high, on_testosterone_only(estradiol(value)))) is high


def test_estradiol_in_pmol_per_litre_is_compared_in_pg_per_ml() -> None:
    # 180 pmol/L is 49 pg/mL; 140 pmol/L is 38 pg/mL.
    assert (
        "49.0 pg/mL (180 pmol/L)"
        in fires(estradiol_high, on_testosterone_only(estradiol(180, "pmol/L"))).summary
    )
    assert run(estradiol_high, on_testosterone_only(estradiol(140, "pmol/L"))) == []


def test_a_greater_than_result_above_the_ceiling_counts() -> None:
    finding = fires(estradiol_high, on_testosterone_only(estradiol(value_string=">60 pg/mL")))
    assert ">60 pg/mL" in finding.summary


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([woman(age=40), trt_course(), estradiol(90)], id="a-woman"),
        pytest.param([patient("unknown"), trt_course(), estradiol(90)], id="sex-undetermined"),
        pytest.param([man(), estradiol(90)], id="not-on-testosterone"),
        pytest.param(
            [man(), trt_course(status="stopped"), estradiol(90)], id="testosterone-stopped"
        ),
        pytest.param(
            [man(), trt_course(start="2026-06-01"), estradiol(90, days_ago=200)],
            id="result-before-testosterone",
        ),
    ],
)
def test_high_estradiol_is_not_flagged_outside_a_man_on_testosterone(
    resources: list[dict[str, object]],
) -> None:
    assert run(estradiol_high, resources) == []


def test_the_latest_result_since_testosterone_decides() -> None:
    resources = on_testosterone_only(
        estradiol(60, days_ago=60), estradiol(30, rid="e2-new", days_ago=5)
    )
    assert run(estradiol_high, resources) == []


def test_a_site_ceiling_of_60_silences_an_estradiol_of_55() -> None:
    resources = on_testosterone_only(estradiol(55))
    assert run(estradiol_high, resources) != []
    assert (
        run(estradiol_high, resources, Settings().with_overrides({"estradiol_ceiling_pg_ml": 60}))
        == []
    )


def test_evidence_points_at_the_estradiol_and_the_testosterone() -> None:
    finding = fires(estradiol_high, on_testosterone_only(estradiol(55, rid="e2-high")))
    assert finding.evidence == ("Observation/e2-high", "MedicationRequest/trt")


def test_a_testosterone_renewal_written_as_a_new_order_does_not_restart_the_clock() -> None:
    first = trt_course(rid="trt-first", status="completed", start=ago(400), end=ago(25)[:10])
    resources = [man(), first, trt_course(start=ago(20)), estradiol(55, days_ago=30)]
    assert "55 pg/mL" in fires(estradiol_high, resources).summary
