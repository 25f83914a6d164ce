"""anastrozole-intent: what the anastrozole is for, and the evidence that says so (always info)."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Intent, Severity
from clinical.rules.anastrozole_intent import anastrozole_intent
from tests.clinical.rules.builders import (
    anastrozole,
    anastrozole_daily,
    fertility_man,
    fires,
    letrozole_only,
    oncology_woman,
    run,
    trt_man,
    woman,
)


@pytest.mark.parametrize(
    ("resources", "intent", "summary"),
    [
        pytest.param(
            trt_man(),
            Intent.TRT_MODULATION,
            "Anastrozole 0.5 mg twice weekly: intent TRT modulation",
            id="trt",
        ),
        pytest.param(
            oncology_woman(),
            Intent.ONCOLOGY_SUPPRESSION,
            "Anastrozole 1 mg once daily, 7 mg/week: intent oncology suppression",
            id="oncology",
        ),
        pytest.param(
            fertility_man(),
            Intent.FERTILITY,
            "Anastrozole 0.5 mg twice weekly: intent male infertility",
            id="fertility",
        ),
        pytest.param(
            [woman(), anastrozole_daily()],
            Intent.UNCLEAR,
            "Anastrozole 1 mg once daily, 7 mg/week: intent unclear, document the indication",
            id="unclear",
        ),
    ],
)
def test_anyone_on_anastrozole_gets_an_info_card_naming_the_dose_and_intent(
    resources: list[dict[str, Any]], intent: Intent, summary: str
) -> None:
    finding = fires(anastrozole_intent, resources)
    assert finding.severity is Severity.INFO
    assert finding.intent is intent
    assert finding.summary == summary


def test_an_unclear_intent_says_what_evidence_is_missing() -> None:
    finding = fires(anastrozole_intent, [woman(), anastrozole()])
    assert "no indication on the order" in finding.detail
    assert "no breast cancer" in finding.detail


def test_an_unreadable_dose_is_said_and_the_dose_checks_skipped() -> None:
    unreadable = anastrozole()
    del unreadable["dosageInstruction"]
    finding = fires(anastrozole_intent, trt_man(ana=unreadable))
    assert "dose not stated" in finding.summary
    assert "dose checks were skipped" in finding.detail


def test_a_draft_order_is_described_as_a_draft() -> None:
    finding = fires(anastrozole_intent, trt_man(ana=anastrozole(status="draft")))
    assert "draft order" in finding.detail


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param(trt_man(ana=anastrozole(status="stopped")), id="stopped"),
        pytest.param(trt_man(ana=anastrozole(status="entered-in-error")), id="entered-in-error"),
        pytest.param(letrozole_only(), id="letrozole-only"),
    ],
)
def test_no_card_without_current_anastrozole(resources: list[dict[str, Any]]) -> None:
    assert run(anastrozole_intent, resources) == []


def test_evidence_points_at_the_order_and_the_clues_that_decided() -> None:
    finding = fires(anastrozole_intent, trt_man())
    # The order and the diagnosis that decided; then the patient, whose sex supports it.
    assert finding.evidence == ("MedicationRequest/ana", "Condition/hypogonadism", "Patient/pt")
