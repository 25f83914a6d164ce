"""order-select and order-sign: draft orders judged together with the chart."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from tests.cds_hooks.cds_helpers import (
    ORDER_SELECT,
    ORDER_SIGN,
    RXNORM,
    Keys,
    anastrozole,
    bundle,
    call,
    empty_prefetch,
    estradiol_result,
    hook_body,
    medication_request,
    patient,
    trt_order,
)


def chart_prefetch(*medications: dict[str, Any], gender: str = "male") -> dict[str, Any]:
    prefetch = empty_prefetch()
    prefetch["patient"] = patient(gender=gender, birth_date="1958-05-01")
    if medications:
        prefetch["medicationRequests"] = bundle(*medications)
    return prefetch


def draft(resource: dict[str, Any]) -> dict[str, Any]:
    return {**resource, "status": "draft", "authoredOn": "2026-11-01"}


def amoxicillin() -> dict[str, Any]:
    return draft(medication_request("rx-amox", "308182", "amoxicillin 250 MG Oral Capsule"))


def estradiol_patch() -> dict[str, Any]:
    return draft(
        medication_request("rx-e2", "241946", "84 HR estradiol 0.00156 MG/HR Transdermal System")
    )


def sign(
    client: FlaskClient, keys: Keys, prefetch: dict[str, Any], *drafts: dict[str, Any]
) -> list[dict[str, Any]]:
    body = hook_body("order-sign", prefetch=prefetch, draftOrders=bundle(*drafts))
    response = call(client, keys, ORDER_SIGN, body)
    assert response.status_code == 200, response.json
    cards: list[dict[str, Any]] = response.json["cards"]
    return cards


def topics(cards: list[dict[str, Any]]) -> set[str]:
    return {card["source"]["topic"]["code"] for card in cards}


def test_a_new_anastrozole_order_brings_intent_and_baseline_monitoring(
    client: FlaskClient, keys: Keys
) -> None:
    cards = sign(client, keys, chart_prefetch(trt_order()), draft(anastrozole("rx-new")))
    found = topics(cards)
    assert "anastrozole-intent" in found
    # a man starting a TRT course gets no DXA at the start (men: on long-term use)
    assert {"liver-panel-due", "lipid-panel-due"} <= found
    liver = next(c for c in cards if c["source"]["topic"]["code"] == "liver-panel-due")
    assert liver["suggestions"][0]["actions"][0]["resource"]["subject"] == {
        "reference": "Patient/p1"
    }


def test_a_daily_anastrozole_draft_for_a_man_on_trt_gets_the_dose_card(
    client: FlaskClient, keys: Keys
) -> None:
    daily = draft(anastrozole("rx-daily", dose_mg=1, per_week=7))
    assert "dose-intent-mismatch" in topics(sign(client, keys, chart_prefetch(trt_order()), daily))


def test_an_unrelated_draft_gets_no_cards_even_when_the_chart_has_some(
    client: FlaskClient, keys: Keys
) -> None:
    prefetch = chart_prefetch(anastrozole(), trt_order())
    prefetch["estradiol"] = bundle(estradiol_result("e2-1", 11))
    assert sign(client, keys, prefetch, amoxicillin()) == []


def test_a_draft_that_makes_an_interaction_gets_that_card_only(
    client: FlaskClient, keys: Keys
) -> None:
    prefetch = chart_prefetch(anastrozole(dose_mg=1, per_week=7), gender="female")
    cards = sign(client, keys, prefetch, estradiol_patch())
    assert topics(cards) == {"ai-interaction"}


def test_order_select_judges_the_selected_draft(client: FlaskClient, keys: Keys) -> None:
    new = draft(anastrozole("rx-new"))
    body = hook_body(
        "order-select",
        prefetch=chart_prefetch(trt_order()),
        draftOrders=bundle(new, amoxicillin()),
        selections=["MedicationRequest/rx-new"],
    )
    assert "anastrozole-intent" in topics(call(client, keys, ORDER_SELECT, body).json["cards"])


def test_order_select_of_an_unrelated_drug_next_to_an_earlier_anastrozole_draft_is_quiet(
    client: FlaskClient, keys: Keys
) -> None:
    body = hook_body(
        "order-select",
        prefetch=chart_prefetch(trt_order()),
        draftOrders=bundle(draft(anastrozole("rx-new")), amoxicillin()),
        selections=["MedicationRequest/rx-amox"],
    )
    assert call(client, keys, ORDER_SELECT, body).json["cards"] == []


def test_a_draft_by_medication_reference_is_read(client: FlaskClient, keys: Keys) -> None:
    order = draft(anastrozole("rx-ref"))
    del order["medicationCodeableConcept"]
    order["medicationReference"] = {"reference": "#med"}
    order["contained"] = [
        {
            "resourceType": "Medication",
            "id": "med",
            "code": {"coding": [{"system": RXNORM, "code": "84857"}]},
        }
    ]
    assert "anastrozole-intent" in topics(sign(client, keys, chart_prefetch(trt_order()), order))


def test_the_draft_replaces_the_same_order_from_the_chart(client: FlaskClient, keys: Keys) -> None:
    stored = anastrozole("rx-1", status="active")
    edited = draft(anastrozole("rx-1", dose_mg=1, per_week=7))
    cards = sign(client, keys, chart_prefetch(stored, trt_order()), edited)
    assert "dose-intent-mismatch" in topics(cards)


def test_a_draft_with_no_id_is_named_by_its_urn_uuid_full_url(
    client: FlaskClient, keys: Keys
) -> None:
    """A transaction-style draftOrders Bundle: the new order and its Medication have no ids,
    and the order names the drug by the Medication entry's fullUrl."""
    order = draft(anastrozole("unused", dose_mg=1, per_week=7))
    del order["id"]
    medication = {"resourceType": "Medication", "code": order.pop("medicationCodeableConcept")}
    order["medicationReference"] = {"reference": "urn:uuid:5be1e3a0"}
    draft_orders = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:9f3c", "resource": order},
            {"fullUrl": "urn:uuid:5be1e3a0", "resource": medication},
        ],
    }
    body = hook_body(
        "order-select",
        prefetch=chart_prefetch(trt_order()),
        draftOrders=draft_orders,
        selections=["MedicationRequest/9f3c"],
    )
    response = call(client, keys, ORDER_SELECT, body)
    assert response.status_code == 200, response.json
    assert {"anastrozole-intent", "dose-intent-mismatch"} <= topics(response.json["cards"])
