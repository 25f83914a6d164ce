"""dexa-due: a DXA at the start of an aromatase inhibitor and every 2 years (1 with low bone mass)."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.dexa_due import dexa_due
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    BREAST_CANCER,
    DXA,
    LETROZOLE,
    LOINC,
    OSTEOPENIA,
    ago,
    ahead,
    anastrozole,
    anastrozole_daily,
    condition,
    drug,
    dxa,
    fertility_man,
    fires,
    man,
    oncology_woman,
    patient,
    run,
    service_request,
    t_score,
    trt_man,
    woman,
)

LONG_COURSE = anastrozole_daily(
    start=ago(700)
)  # the DXA edges below fall after its baseline window


def test_no_dxa_on_record_is_due_with_a_dxa_order_suggested() -> None:
    finding = fires(dexa_due, oncology_woman())
    assert finding.summary == "DXA due on anastrozole: none on record"
    assert [order.codings[0].code for order in finding.suggested_orders] == ["77080"]


@pytest.mark.parametrize(("days_ago", "due"), [(729, False), (730, False), (731, True)])
def test_a_dxa_within_24_months_is_enough_and_an_older_one_is_not(days_ago: int, due: bool) -> None:
    resources = oncology_woman(dxa(days_ago), ana=LONG_COURSE)
    assert bool(run(dexa_due, resources)) is due


def test_a_stale_dxa_says_when_it_was_done_and_how_long_ago() -> None:
    finding = fires(dexa_due, oncology_woman(dxa(800), ana=anastrozole_daily(start=ago(900))))
    assert "last on 2024-08-23, 26 months ago" in finding.summary


@pytest.mark.parametrize(
    "low_bone_mass",
    [
        pytest.param([condition(OSTEOPENIA, rid="osteopenia")], id="osteopenia"),
        pytest.param([t_score(-1.0, days_ago=400)], id="t-score-at--1.0"),
    ],
)
def test_low_bone_mass_shortens_the_interval_to_12_months(
    low_bone_mass: list[dict[str, Any]],
) -> None:
    resources = oncology_woman(dxa(400), *low_bone_mass, ana=anastrozole_daily(start=ago(500)))
    assert "12 months (low bone mass)" in fires(dexa_due, resources).detail


def test_a_t_score_above_minus_one_keeps_the_24_month_interval() -> None:
    resources = oncology_woman(
        dxa(400), t_score(-0.9, days_ago=400), ana=anastrozole_daily(start=ago(500))
    )
    assert run(dexa_due, resources) == []


@pytest.mark.parametrize(("days_before_start", "due"), [(150, False), (200, True)])
def test_the_last_dxa_must_fall_within_6_months_before_the_start(
    days_before_start: int, due: bool
) -> None:
    resources = oncology_woman(dxa(100 + days_before_start), ana=anastrozole_daily(start=ago(100)))
    findings = run(dexa_due, resources)
    assert bool(findings) is due
    if due:
        assert "none at the start of therapy on 2026-07-24" in findings[0].summary


@pytest.mark.parametrize("status", ["active", "draft", "on-hold"])
def test_an_open_dxa_order_silences_the_reminder(status: str) -> None:
    order = service_request(DXA, rid="dxa-order", status=status)
    assert run(dexa_due, oncology_woman(order)) == []


def test_a_completed_dxa_order_without_a_result_does_not_silence_it() -> None:
    order = service_request(DXA, rid="dxa-order", status="completed")
    assert run(dexa_due, oncology_woman(order)) != []


@pytest.mark.parametrize(
    "done",
    [
        pytest.param(dxa(100), id="procedure"),
        pytest.param(t_score(-0.5, days_ago=100), id="t-score-observation"),
        pytest.param(
            {
                "resourceType": "ImagingStudy",
                "id": "img",
                "status": "available",
                "subject": {"reference": "Patient/pt"},
                "started": ago(100),
                "modality": [
                    {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "BMD"}
                ],
            },
            id="imaging-study",
        ),
        pytest.param(
            {
                "resourceType": "DiagnosticReport",
                "id": "dxa-report",
                "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "38268-9"}]},
                "subject": {"reference": "Patient/pt"},
                "effectiveDateTime": ago(100),
            },
            id="diagnostic-report",
        ),
    ],
)
def test_a_recent_dxa_in_any_form_means_none_is_due(done: dict[str, Any]) -> None:
    assert run(dexa_due, oncology_woman(done)) == []


def test_a_draft_order_asks_for_a_baseline_dxa() -> None:
    draft = anastrozole_daily(status="draft")
    assert fires(dexa_due, oncology_woman(ana=draft)).summary.endswith("none on record")
    # A DXA 300 days before today is outside the window before a start of today.
    assert (
        "none at the start of therapy"
        in fires(dexa_due, oncology_woman(dxa(300), ana=draft)).summary
    )
    assert run(dexa_due, oncology_woman(dxa(100), ana=draft)) == []


@pytest.mark.parametrize(
    ("resources", "severity"),
    [
        pytest.param(oncology_woman(), Severity.WARNING, id="oncology-woman"),
        pytest.param([woman(), anastrozole()], Severity.WARNING, id="woman-unclear-intent"),
        pytest.param(
            trt_man(ana=anastrozole(start=ago(365))), Severity.WARNING, id="trt-man-one-year"
        ),
        pytest.param([patient("unknown"), anastrozole()], Severity.INFO, id="sex-undetermined"),
    ],
)
def test_severity_is_warning_for_oncology_or_a_woman_and_for_others_after_a_year(
    resources: list[dict[str, Any]], severity: Severity
) -> None:
    assert fires(dexa_due, resources).severity is severity


@pytest.mark.parametrize("days", [30, 200, 364])
def test_a_man_starting_a_short_course_off_oncology_is_not_sent_for_a_dxa(days: int) -> None:
    """Men get baseline and serial DXA on long-term use, not at the start of a fertility or
    TRT course of a few months; from a year on the AI they do."""
    assert run(dexa_due, trt_man(ana=anastrozole(start=ago(days)))) == []
    assert run(dexa_due, fertility_man(ana=anastrozole(start=ago(days)))) == []


def test_a_short_course_says_its_days_not_zero_months() -> None:
    finding = fires(dexa_due, oncology_woman(ana=anastrozole_daily(start=ago(10))))
    assert "for 10 days" in finding.detail
    assert "0 months" not in finding.detail


def test_another_aromatase_inhibitor_with_breast_cancer_is_oncology_severity() -> None:
    letrozole = drug(LETROZOLE, "letrozole", start=ago(100))
    finding = fires(dexa_due, [man(), condition(BREAST_CANCER), letrozole])
    assert finding.severity is Severity.WARNING
    assert finding.summary.startswith("DXA due on letrozole")
    assert finding.intent is None


def test_no_aromatase_inhibitor_means_no_reminder() -> None:
    assert run(dexa_due, oncology_woman(ana=anastrozole_daily(status="stopped"))) == []


def test_a_site_interval_of_365_days_makes_a_400_day_old_dxa_due() -> None:
    resources = oncology_woman(dxa(400), ana=anastrozole_daily(start=ago(500)))
    assert run(dexa_due, resources) == []
    assert run(dexa_due, resources, Settings().with_overrides({"dexa_interval": 365})) != []


def test_a_site_can_warn_men_earlier() -> None:
    resources = trt_man(ana=anastrozole(start=ago(200)))
    settings = Settings().with_overrides({"male_dexa_warning_after": 180})
    assert fires(dexa_due, resources, settings).severity is Severity.WARNING


def test_evidence_points_at_the_ai_course_and_the_last_dxa() -> None:
    finding = fires(
        dexa_due, oncology_woman(dxa(800, rid="dxa-2024"), ana=anastrozole_daily(start=ago(900)))
    )
    assert finding.evidence == ("MedicationRequest/ana", "Procedure/dxa-2024")
    assert finding.intent is Intent.ONCOLOGY_SUPPRESSION


def test_a_renewal_written_as_a_new_order_does_not_ask_for_a_new_baseline() -> None:
    first = anastrozole_daily(rid="first", status="completed", start=ago(400), end=ago(25)[:10])
    resources = oncology_woman(dxa(300), first, ana=anastrozole_daily(start=ago(20)))
    assert run(dexa_due, resources) == []


def test_a_course_planned_to_start_later_does_not_say_a_negative_time_on_it() -> None:
    planned = anastrozole_daily(start=ago(1))
    planned["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {"start": ahead(60)}
    finding = fires(dexa_due, oncology_woman(ana=planned))
    assert "months" not in finding.detail.split("\n")[0]
    assert " for " not in finding.detail.split("\n")[0]


def test_an_order_authored_in_the_future_is_left_out() -> None:
    assert run(dexa_due, oncology_woman(ana=anastrozole_daily(start=ahead(60)))) == []


def test_a_dxa_order_left_open_longer_than_the_interval_no_longer_silences_it() -> None:
    """An order written 3 years ago and never done is not a scan still coming."""
    order = service_request(DXA, rid="dxa-order", days_ago=1100)
    assert "none on record" in fires(dexa_due, oncology_woman(order)).summary
    recent = service_request(DXA, rid="dxa-order", days_ago=200)
    assert run(dexa_due, oncology_woman(recent)) == []
