"""estradiol-monitoring-due: anastrozole for modulation or fertility needs estradiol checks."""

from __future__ import annotations

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.estradiol_monitoring_due import estradiol_monitoring_due
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    ago,
    anastrozole,
    estradiol,
    fertility_man,
    fires,
    lab_order,
    oncology_woman,
    patient,
    run,
    trt_man,
    woman,
)


def test_no_estradiol_since_the_start_is_due_as_info_with_an_estradiol_order() -> None:
    finding = fires(estradiol_monitoring_due, trt_man())
    assert finding.severity is Severity.INFO
    assert "none since anastrozole started on 2026-04-15" in finding.summary
    assert [order.codings[0].code for order in finding.suggested_orders] == ["2243-4"]
    assert finding.intent is Intent.TRT_MODULATION


def test_fertility_intent_is_monitored_too() -> None:
    assert fires(estradiol_monitoring_due, fertility_man()).intent is Intent.FERTILITY


@pytest.mark.parametrize(("days_since_start", "due"), [(13, False), (15, True)])
def test_no_check_is_due_in_the_first_two_weeks_of_a_course(
    days_since_start: int, due: bool
) -> None:
    resources = trt_man(ana=anastrozole(start=ago(days_since_start)))
    assert bool(run(estradiol_monitoring_due, resources)) is due


@pytest.mark.parametrize(("days_ago", "due"), [(89, False), (90, False), (91, True)])
def test_an_estradiol_within_90_days_is_enough_and_an_older_one_is_not(
    days_ago: int, due: bool
) -> None:
    assert bool(run(estradiol_monitoring_due, trt_man(estradiol(25, days_ago=days_ago)))) is due


def test_a_stale_estradiol_says_how_old_it_is() -> None:
    finding = fires(estradiol_monitoring_due, trt_man(estradiol(25, days_ago=150)))
    assert "last on 2026-06-04" in finding.summary


def test_an_estradiol_from_before_the_course_started_does_not_count() -> None:
    # Started 60 days ago; the estradiol 70 days ago predates it.
    resources = trt_man(estradiol(25, days_ago=70), ana=anastrozole(start=ago(60)))
    assert "none since anastrozole started" in fires(estradiol_monitoring_due, resources).summary


def test_a_newer_prescription_of_a_running_course_does_not_restart_the_clock() -> None:
    # On anastrozole for 700 days with an estradiol 30 days ago; a refill request written 20
    # days ago is current alongside the original one.
    refill = anastrozole(rid="ana-refill", start=ago(20))
    resources = trt_man(estradiol(25, days_ago=30), refill, ana=anastrozole(start=ago(700)))
    assert run(estradiol_monitoring_due, resources) == []


def test_a_less_than_30_result_cannot_tell_and_does_not_count() -> None:
    resources = trt_man(estradiol(value_string="<30 pg/mL", days_ago=10))
    finding = fires(estradiol_monitoring_due, resources)
    assert "cannot tell whether estradiol is under 20 pg/mL" in finding.detail


def test_a_less_than_5_result_tells_it_is_under_the_floor_and_counts() -> None:
    assert (
        run(estradiol_monitoring_due, trt_man(estradiol(value_string="<5 pg/mL", days_ago=10)))
        == []
    )


@pytest.mark.parametrize("display", ["Estradiol (E2) [Mass/volume] in Serum or Plasma", None])
def test_an_estradiol_in_an_unknown_unit_does_not_count_and_the_finding_says_why(
    display: str | None,
) -> None:
    result = estradiol(25, "mIU/mL", days_ago=10, display=display)
    finding = fires(estradiol_monitoring_due, trt_man(result))
    assert any("mIU/mL" in gap for gap in finding.data_gaps)


def test_a_draft_order_asks_for_a_baseline_estradiol() -> None:
    draft = anastrozole(status="draft")
    finding = fires(estradiol_monitoring_due, trt_man(ana=draft))
    assert "no baseline before starting anastrozole" in finding.summary


def test_a_draft_order_is_satisfied_by_a_recent_pre_start_estradiol() -> None:
    draft = anastrozole(status="draft")
    assert run(estradiol_monitoring_due, trt_man(estradiol(25, days_ago=30), ana=draft)) == []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(oncology_woman(), id="oncology"),
        pytest.param([woman(), anastrozole()], id="unclear-intent"),
        pytest.param(trt_man(ana=anastrozole(status="stopped")), id="anastrozole-stopped"),
    ],
)
def test_estradiol_monitoring_is_only_for_modulation_or_fertility(
    resources: list[dict[str, object]],
) -> None:
    assert run(estradiol_monitoring_due, resources) == []


def test_monitoring_still_runs_when_sex_is_undetermined() -> None:
    resources = trt_man()
    resources[0] = patient("unknown")
    assert run(estradiol_monitoring_due, resources) != []


def test_a_site_interval_of_30_days_makes_a_60_day_old_estradiol_due() -> None:
    resources = trt_man(estradiol(25, days_ago=60))
    assert run(estradiol_monitoring_due, resources) == []
    settings = Settings().with_overrides({"estradiol_interval": 30})
    assert run(estradiol_monitoring_due, resources, settings) != []


def test_evidence_points_at_the_anastrozole_and_the_last_usable_estradiol() -> None:
    finding = fires(estradiol_monitoring_due, trt_man(estradiol(25, rid="e2-june", days_ago=150)))
    assert finding.evidence == ("MedicationRequest/ana", "Observation/e2-june")


def test_an_estradiol_ordered_within_the_interval_silences_it_and_an_older_order_does_not() -> None:
    recent = lab_order("2243-4", rid="e2-order", days_ago=10)
    assert run(estradiol_monitoring_due, trt_man(recent)) == []
    stale = lab_order("2243-4", rid="e2-order", days_ago=120)
    assert run(estradiol_monitoring_due, trt_man(stale)) != []


@pytest.mark.parametrize(
    "text",
    ["Not detected", "Undetectable", "<LOQ"],
)
def test_an_estradiol_that_cannot_be_read_is_named_not_called_none(text: str) -> None:
    """An estradiol drawn 3 weeks ago with a result the rules cannot compare: the card says
    none is readable, and names the result, rather than saying none was drawn."""
    result = estradiol(value_string=text, rid="e2-text", days_ago=21)
    finding = fires(estradiol_monitoring_due, trt_man(result))
    assert "none readable since anastrozole started" in finding.summary
    assert "Observation/e2-text" in finding.detail
