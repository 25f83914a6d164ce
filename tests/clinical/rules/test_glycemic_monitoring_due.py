"""glycemic-monitoring-due: a yearly HbA1c or glucose on anastrozole for modulation or fertility."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.glycemic_monitoring_due import glycemic_monitoring_due
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    GLUCOSE,
    HBA1C,
    ago,
    anastrozole,
    fertility_man,
    fires,
    lab,
    lab_order,
    oncology_woman,
    patient,
    run,
    trt_man,
    woman,
)


def hba1c(days_ago: float, *, rid: str = "a1c") -> dict[str, Any]:
    return lab(HBA1C, 5.6, "%", rid=rid, when=ago(days_ago))


def glucose(days_ago: float) -> dict[str, Any]:
    return lab(GLUCOSE, 92, "mg/dL", rid="glucose", when=ago(days_ago))


def test_no_hba1c_or_glucose_in_trt_is_due_as_info_with_an_hba1c_order() -> None:
    finding = fires(glycemic_monitoring_due, trt_man())
    assert finding.severity is Severity.INFO
    assert finding.summary == "HbA1c or glucose due on anastrozole (TRT modulation): none on record"
    assert [order.codings[0].code for order in finding.suggested_orders] == [HBA1C]


def test_fertility_intent_is_monitored_too() -> None:
    assert fires(glycemic_monitoring_due, fertility_man()).intent is Intent.FERTILITY


@pytest.mark.parametrize(("days_ago", "due"), [(364, False), (365, False), (366, True)])
def test_an_hba1c_within_12_months_is_enough_and_an_older_one_is_not(
    days_ago: int, due: bool
) -> None:
    assert bool(run(glycemic_monitoring_due, trt_man(hba1c(days_ago)))) is due


def test_a_glucose_counts_as_well() -> None:
    assert run(glycemic_monitoring_due, trt_man(glucose(100))) == []


def test_the_newest_of_hba1c_and_glucose_decides() -> None:
    assert run(glycemic_monitoring_due, trt_man(hba1c(500), glucose(100))) == []


def test_a_stale_result_says_when() -> None:
    assert "last on 2025-07-20" in fires(glycemic_monitoring_due, trt_man(hba1c(469))).summary


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(oncology_woman(), id="oncology"),
        pytest.param([woman(), anastrozole()], id="unclear-intent"),
        pytest.param(trt_man(ana=anastrozole(status="stopped")), id="anastrozole-stopped"),
    ],
)
def test_glycemic_monitoring_is_only_for_modulation_or_fertility(
    resources: list[dict[str, Any]],
) -> None:
    assert run(glycemic_monitoring_due, resources) == []


@pytest.mark.parametrize("loinc", [HBA1C, GLUCOSE])
def test_an_open_hba1c_or_glucose_order_silences_the_reminder(loinc: str) -> None:
    assert run(glycemic_monitoring_due, trt_man(lab_order(loinc, rid="order"))) == []


def test_a_draft_order_asks_for_a_baseline() -> None:
    draft = anastrozole(status="draft")
    assert run(glycemic_monitoring_due, trt_man(ana=draft)) != []
    assert run(glycemic_monitoring_due, trt_man(hba1c(60), ana=draft)) == []


def test_monitoring_still_runs_when_sex_is_undetermined() -> None:
    resources = trt_man()
    resources[0] = patient("unknown")
    assert run(glycemic_monitoring_due, resources) != []


def test_a_site_interval_of_180_days_makes_a_200_day_old_hba1c_due() -> None:
    resources = trt_man(hba1c(200))
    assert run(glycemic_monitoring_due, resources) == []
    settings = Settings().with_overrides({"glycemic_interval": 180})
    assert run(glycemic_monitoring_due, resources, settings) != []


def test_evidence_points_at_the_anastrozole_and_the_stale_result() -> None:
    finding = fires(glycemic_monitoring_due, trt_man(hba1c(400, rid="a1c-2025")))
    assert finding.evidence == ("MedicationRequest/ana", "Observation/a1c-2025")


def test_an_hba1c_order_left_open_over_a_year_no_longer_silences_the_reminder() -> None:
    stale = lab_order("4548-4", rid="order", days_ago=400)
    assert run(glycemic_monitoring_due, trt_man(stale)) != []
