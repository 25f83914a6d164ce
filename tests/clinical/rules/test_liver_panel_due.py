"""liver-panel-due: a hepatic function panel (or ALT and AST) at the start and every 12 months."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.liver_panel_due import liver_panel_due
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    HEPATIC_PANEL,
    LOINC,
    ago,
    alt,
    anastrozole,
    anastrozole_daily,
    ast,
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


def panel(days_ago: float, *, rid: str = "lft") -> dict[str, Any]:
    return lab(HEPATIC_PANEL, rid=rid, when=ago(days_ago))


def panel_report(days_ago: float) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "id": "lft-report",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": HEPATIC_PANEL}]},
        "subject": {"reference": "Patient/pt"},
        "effectiveDateTime": ago(days_ago),
    }


def test_no_liver_panel_on_record_is_due_as_info_with_a_panel_order() -> None:
    finding = fires(liver_panel_due, oncology_woman())
    assert finding.severity is Severity.INFO
    assert finding.summary == "Liver panel due on anastrozole: none on record"
    assert [order.codings[0].code for order in finding.suggested_orders] == [HEPATIC_PANEL]


@pytest.mark.parametrize(("days_ago", "due"), [(364, False), (365, False), (366, True)])
def test_a_panel_within_12_months_is_enough_and_an_older_one_is_not(
    days_ago: int, due: bool
) -> None:
    assert bool(run(liver_panel_due, oncology_woman(panel(days_ago), ana=LONG_COURSE))) is due


@pytest.mark.parametrize(
    "done",
    [
        pytest.param([panel_report(100)], id="panel-report"),
        pytest.param([alt(30, days_ago=100), ast(28, days_ago=100)], id="alt-and-ast"),
    ],
)
def test_a_panel_report_or_alt_with_ast_counts_as_a_panel(done: list[dict[str, Any]]) -> None:
    assert run(liver_panel_due, oncology_woman(*done)) == []


def test_alt_alone_is_not_a_liver_panel() -> None:
    assert run(liver_panel_due, oncology_woman(alt(30, days_ago=100))) != []


def test_a_pair_is_as_old_as_its_older_half() -> None:
    resources = oncology_woman(alt(30, days_ago=30), ast(28, days_ago=400), ana=LONG_COURSE)
    assert "13 months ago" in fires(liver_panel_due, resources).summary


@pytest.mark.parametrize(("days_before_start", "due"), [(80, False), (100, True)])
def test_the_panel_must_fall_within_3_months_before_the_start(
    days_before_start: int, due: bool
) -> None:
    resources = oncology_woman(panel(60 + days_before_start), ana=anastrozole_daily(start=ago(60)))
    findings = run(liver_panel_due, resources)
    assert bool(findings) is due
    if due:
        assert "none at the start of therapy on 2026-09-02" in findings[0].summary


def test_a_draft_order_asks_for_a_baseline_panel() -> None:
    draft = anastrozole_daily(status="draft")
    assert run(liver_panel_due, oncology_woman(ana=draft)) != []
    assert (
        "none at the start of therapy"
        in fires(liver_panel_due, oncology_woman(panel(120), ana=draft)).summary
    )
    assert run(liver_panel_due, oncology_woman(panel(30), ana=draft)) == []


def test_a_draft_renewing_a_running_course_is_not_a_new_start() -> None:
    # On anastrozole for 700 days, last panel 120 days ago (within 12 months); a dose-change or
    # renewal order is signed today. The start of therapy is still 700 days ago.
    renewal = anastrozole_daily(rid="ana-renewal", status="draft")
    assert run(liver_panel_due, oncology_woman(panel(120), renewal, ana=LONG_COURSE)) == []


@pytest.mark.parametrize("status", ["active", "draft"])
def test_an_open_panel_order_silences_the_reminder(status: str) -> None:
    order = lab_order(HEPATIC_PANEL, rid="lft-order", status=status)
    assert run(liver_panel_due, oncology_woman(order)) == []


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
    assert fires(liver_panel_due, resources).intent is intent


def test_no_aromatase_inhibitor_means_no_reminder() -> None:
    assert run(liver_panel_due, oncology_woman(ana=anastrozole_daily(status="stopped"))) == []


def test_letrozole_is_the_same_class_and_gets_the_reminder_in_its_own_name() -> None:
    finding = fires(liver_panel_due, letrozole_only())
    assert "on letrozole" in finding.summary


def test_a_site_interval_of_180_days_makes_a_200_day_old_panel_due() -> None:
    resources = oncology_woman(panel(200), ana=LONG_COURSE)
    assert run(liver_panel_due, resources) == []
    settings = Settings().with_overrides({"liver_panel_interval": 180})
    assert run(liver_panel_due, resources, settings) != []


def test_evidence_points_at_the_anastrozole_and_the_stale_panel() -> None:
    finding = fires(liver_panel_due, oncology_woman(panel(400, rid="lft-2025"), ana=LONG_COURSE))
    assert finding.evidence == ("MedicationRequest/ana", "Observation/lft-2025")


def test_a_liver_panel_order_left_open_over_a_year_no_longer_silences_the_reminder() -> None:
    stale = lab_order(HEPATIC_PANEL, rid="lft-order", days_ago=400)
    assert run(liver_panel_due, oncology_woman(stale)) != []


# -- a general chemistry panel that carries the liver results --------------------------------------

COMPREHENSIVE_METABOLIC = "24323-8"  # holds ALT, AST, ALP and total bilirubin
BASIC_METABOLIC = "24321-2"  # holds no liver enzyme


def chemistry_report(loinc: str, days_ago: float) -> dict[str, Any]:
    return {
        **panel_report(days_ago),
        "id": "chem",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
    }


def test_a_recent_comprehensive_metabolic_panel_counts_as_the_liver_panel_done() -> None:
    resources = oncology_woman(LONG_COURSE, chemistry_report(COMPREHENSIVE_METABOLIC, 60))
    assert run(liver_panel_due, resources) == []


def test_a_basic_metabolic_panel_has_no_liver_enzymes_and_does_not_count() -> None:
    resources = oncology_woman(LONG_COURSE, chemistry_report(BASIC_METABOLIC, 60))
    assert fires(liver_panel_due, resources).severity is Severity.INFO
