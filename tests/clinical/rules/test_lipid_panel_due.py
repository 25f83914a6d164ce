"""lipid-panel-due: a lipid panel (or total cholesterol or LDL) at the start and every 12 months."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.lipid_panel_due import lipid_panel_due
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    HDL,
    LDL,
    LIPID_PANEL,
    TOTAL_CHOLESTEROL,
    TRIGLYCERIDES,
    ago,
    anastrozole,
    anastrozole_daily,
    fires,
    lab,
    lab_order,
    letrozole_only,
    oncology_woman,
    run,
    trt_man,
    woman,
)

LONG_COURSE = anastrozole_daily(start=ago(700))


def lipids(days_ago: float, *, loinc: str = LIPID_PANEL, rid: str = "lipids") -> dict[str, Any]:
    return lab(loinc, 180, "mg/dL", rid=rid, when=ago(days_ago))


def test_no_lipid_panel_on_record_is_due_as_info_with_a_panel_order() -> None:
    finding = fires(lipid_panel_due, oncology_woman())
    assert finding.severity is Severity.INFO
    assert finding.summary == "Lipid panel due on anastrozole: none on record"
    assert [order.codings[0].code for order in finding.suggested_orders] == [LIPID_PANEL]


@pytest.mark.parametrize(("days_ago", "due"), [(364, False), (365, False), (366, True)])
def test_a_lipid_panel_within_12_months_is_enough_and_an_older_one_is_not(
    days_ago: int, due: bool
) -> None:
    assert bool(run(lipid_panel_due, oncology_woman(lipids(days_ago), ana=LONG_COURSE))) is due


@pytest.mark.parametrize(
    ("loinc", "counts"),
    [(TOTAL_CHOLESTEROL, True), (LDL, True), (HDL, False), (TRIGLYCERIDES, False)],
)
def test_total_cholesterol_or_ldl_count_as_a_lipid_check_but_hdl_or_triglycerides_alone_do_not(
    loinc: str, counts: bool
) -> None:
    assert bool(run(lipid_panel_due, oncology_woman(lipids(100, loinc=loinc)))) is not counts


@pytest.mark.parametrize(("days_before_start", "due"), [(80, False), (100, True)])
def test_the_panel_must_fall_within_3_months_before_the_start(
    days_before_start: int, due: bool
) -> None:
    resources = oncology_woman(lipids(60 + days_before_start), ana=anastrozole_daily(start=ago(60)))
    findings = run(lipid_panel_due, resources)
    assert bool(findings) is due
    if due:
        assert "none at the start of therapy on 2026-09-02" in findings[0].summary


def test_a_draft_order_asks_for_a_baseline_panel() -> None:
    draft = anastrozole_daily(status="draft")
    assert run(lipid_panel_due, oncology_woman(ana=draft)) != []
    assert (
        "none at the start of therapy"
        in fires(lipid_panel_due, oncology_woman(lipids(120), ana=draft)).summary
    )
    assert run(lipid_panel_due, oncology_woman(lipids(30), ana=draft)) == []


def test_a_draft_renewing_a_running_course_is_not_a_new_start() -> None:
    # On anastrozole for 700 days, last panel 120 days ago (within 12 months); a dose-change or
    # renewal order is signed today. The start of therapy is still 700 days ago.
    renewal = anastrozole_daily(rid="ana-renewal", status="draft")
    assert run(lipid_panel_due, oncology_woman(lipids(120), renewal, ana=LONG_COURSE)) == []


@pytest.mark.parametrize("status", ["active", "draft"])
def test_an_open_lipid_order_silences_the_reminder(status: str) -> None:
    order = lab_order(LIPID_PANEL, rid="lipid-order", status=status)
    assert run(lipid_panel_due, oncology_woman(order)) == []


@pytest.mark.parametrize(
    ("resources", "intent"),
    [
        pytest.param(oncology_woman(), Intent.ONCOLOGY_SUPPRESSION, id="oncology"),
        pytest.param(trt_man(), Intent.TRT_MODULATION, id="trt"),
        pytest.param([woman(), anastrozole()], Intent.UNCLEAR, id="unclear"),
    ],
)
def test_it_applies_to_anastrozole_whatever_the_intent(
    resources: list[dict[str, Any]], intent: Intent
) -> None:
    assert fires(lipid_panel_due, resources).intent is intent


def test_no_aromatase_inhibitor_means_no_reminder() -> None:
    assert run(lipid_panel_due, oncology_woman(ana=anastrozole_daily(status="stopped"))) == []


def test_letrozole_is_the_same_class_and_gets_the_reminder_in_its_own_name() -> None:
    finding = fires(lipid_panel_due, letrozole_only())
    assert "on letrozole" in finding.summary


def test_a_site_interval_of_180_days_makes_a_200_day_old_panel_due() -> None:
    resources = oncology_woman(lipids(200), ana=LONG_COURSE)
    assert run(lipid_panel_due, resources) == []
    settings = Settings().with_overrides({"lipid_panel_interval": 180})
    assert run(lipid_panel_due, resources, settings) != []


def test_evidence_points_at_the_anastrozole_and_the_stale_panel() -> None:
    finding = fires(
        lipid_panel_due, oncology_woman(lipids(400, rid="lipids-2025"), ana=LONG_COURSE)
    )
    assert finding.evidence == ("MedicationRequest/ana", "Observation/lipids-2025")


def test_a_lipid_order_left_open_over_a_year_no_longer_silences_the_reminder() -> None:
    stale = lab_order(LIPID_PANEL, rid="lipid-order", days_ago=400)
    assert run(lipid_panel_due, oncology_woman(stale)) != []
