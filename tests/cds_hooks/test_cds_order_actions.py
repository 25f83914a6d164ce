"""Cards that act on the order being signed: an `update` of the draft to the intent's dose, a
`delete` of a tamoxifen or estrogen draft (CDS Hooks 2.0 suggestions), only on the drafts
of the call, with `isRecommended` on the recommended one."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from flask.testing import FlaskClient

from cds_hooks.cards import draft_with_dose
from clinical.finding import ProposedDose
from tests.cds_hooks.cds_helpers import (
    ORDER_SELECT,
    PATIENT_VIEW,
    Keys,
    anastrozole,
    bundle,
    call,
    hook_body,
    medication_request,
    trt_order,
)
from tests.cds_hooks.test_cds_order_hooks import chart_prefetch, draft, sign


def card(cards: list[dict[str, Any]], topic: str) -> dict[str, Any]:
    return next(c for c in cards if c["source"]["topic"]["code"] == topic)


def sandbox_shaped(resource: dict[str, Any]) -> dict[str, Any]:
    """As the CDS Hooks sandbox writes drafts: `category` and `reasonCode` as one object."""
    return {
        **resource,
        "category": {"coding": [{"code": "community"}]},
        "reasonCode": {"text": "hypogonadism"},
    }


def test_a_daily_draft_for_a_man_on_trt_is_offered_the_trt_dose_as_an_update(
    client: FlaskClient, keys: Keys
) -> None:
    daily = sandbox_shaped(draft(anastrozole("rx-daily", dose_mg=1, per_week=7)))
    cards = sign(client, keys, chart_prefetch(trt_order()), daily)
    suggestion = card(cards, "dose-intent-mismatch")["suggestions"][0]
    assert suggestion["label"] == "Change to 0.5 mg twice weekly"
    assert suggestion["isRecommended"] is True
    (action,) = suggestion["actions"]
    assert action["type"] == "update"
    updated = action["resource"]
    assert updated["id"] == "rx-daily" and updated["status"] == "draft"
    assert updated["medicationCodeableConcept"] == daily["medicationCodeableConcept"]
    (dosage,) = updated["dosageInstruction"]
    assert dosage["timing"] == {"repeat": {"frequency": 2, "period": 1, "periodUnit": "wk"}}
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 0.5,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert updated["category"] == [daily["category"]]  # made valid R4
    MedicationRequest.model_validate(updated)


def test_a_tamoxifen_draft_next_to_anastrozole_is_offered_for_removal(
    client: FlaskClient, keys: Keys
) -> None:
    tamoxifen = draft(medication_request("draft-tam", "313195", "tamoxifen 20 MG Oral Tablet"))
    prefetch = chart_prefetch(anastrozole(dose_mg=1, per_week=7), gender="female")
    body = hook_body(
        "order-select",
        prefetch=prefetch,
        draftOrders=bundle(tamoxifen),
        selections=["MedicationRequest/draft-tam"],
    )
    response = call(client, keys, ORDER_SELECT, body)
    interaction = card(response.json["cards"], "ai-interaction")
    (suggestion,) = [s for s in interaction["suggestions"] if s["actions"][0]["type"] == "delete"]
    assert suggestion["isRecommended"] is True
    assert suggestion["actions"][0]["resourceId"] == ["MedicationRequest/draft-tam"]
    assert suggestion["actions"][0]["description"]


def test_a_draft_in_the_chart_but_not_in_the_call_is_never_offered_a_change(
    client: FlaskClient, keys: Keys
) -> None:
    """patient-view: a draft order in the chart is the EHR's, not this moment's."""
    prefetch = chart_prefetch(trt_order(), draft(anastrozole("rx-daily", dose_mg=1, per_week=7)))
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    mismatch = card(response.json["cards"], "dose-intent-mismatch")
    actions = [a for s in mismatch.get("suggestions", ()) for a in s["actions"]]
    assert all(action["type"] == "create" for action in actions)


def test_an_update_keeps_the_route_and_the_course_bounds_of_the_draft() -> None:
    daily = draft(anastrozole("rx-daily", dose_mg=1, per_week=7))
    daily["dosageInstruction"][0]["route"] = {"text": "oral"}
    daily["dosageInstruction"][0]["timing"]["repeat"]["boundsPeriod"] = {"start": "2026-11-01"}
    daily["dosageInstruction"][0]["maxDosePerPeriod"] = {"numerator": {"value": 1}}
    updated = draft_with_dose(daily, ProposedDose(1.0, 1, 1, "d", "1 mg once daily"))
    assert updated is not None
    (dosage,) = updated["dosageInstruction"]
    assert dosage["route"] == {"text": "oral"}
    assert dosage["timing"]["repeat"]["boundsPeriod"] == {"start": "2026-11-01"}
    assert "maxDosePerPeriod" not in dosage  # the old limit would contradict the new dose
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert daily["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 1  # kept


def test_a_draft_that_would_not_be_valid_fhir_gets_no_update() -> None:
    broken = {**draft(anastrozole("rx-x")), "authoredOn": "yesterday"}
    assert draft_with_dose(broken, ProposedDose(1.0, 1, 1, "d", "1 mg once daily")) is None
    statement = {**draft(anastrozole("rx-y")), "resourceType": "MedicationStatement"}
    assert draft_with_dose(statement, ProposedDose(1.0, 1, 1, "d", "1 mg once daily")) is None
