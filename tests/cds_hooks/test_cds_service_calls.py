"""POST /cds-services/{id}: request validation (400), unknown service (404), missing data
(412), and answers from the prefetch."""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from tests.cds_hooks.cds_helpers import (
    FHIR,
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_VIEW,
    Keys,
    anastrozole,
    bearer,
    bundle,
    call,
    empty_prefetch,
    hook_body,
    service_url,
    trt_man_prefetch,
    trt_order,
)


def test_an_unknown_service_is_404_json(client: FlaskClient, keys: Keys) -> None:
    response = call(client, keys, "no-such-service", hook_body())
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


def test_get_on_a_service_is_405_json(client: FlaskClient) -> None:
    response = client.get(f"/cds-services/{PATIENT_VIEW}")
    assert response.status_code == 405
    assert response.json["error"] == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    target = body
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return body


def _with_subject(prefetch: dict[str, Any], subject: str) -> dict[str, Any]:
    """The prefetch with its estradiol results' subject written as `subject`."""
    results = prefetch["estradiol"]
    for entry in results["entry"]:
        entry["resource"]["subject"] = {"reference": subject}
    return prefetch


BAD_REQUESTS: dict[str, tuple[str, Any, str]] = {
    "not JSON": (PATIENT_VIEW, b"{not json", "body"),
    "a JSON list": (PATIENT_VIEW, [], "body"),
    "no hook": (PATIENT_VIEW, _without(hook_body(), "hook"), "hook"),
    "another hook": (PATIENT_VIEW, hook_body("order-sign"), "hook"),
    "no hookInstance": (PATIENT_VIEW, _without(hook_body(), "hookInstance"), "hookInstance"),
    "hookInstance not a UUID": (PATIENT_VIEW, {**hook_body(), "hookInstance": "1"}, "hookInstance"),
    "no context": (PATIENT_VIEW, _without(hook_body(), "context"), "context"),
    "no patientId": (
        PATIENT_VIEW,
        _without(hook_body(), "context", "patientId"),
        "context.patientId",
    ),
    "no userId": (PATIENT_VIEW, _without(hook_body(), "context", "userId"), "context.userId"),
    "patientId not a FHIR id": (
        PATIENT_VIEW,
        hook_body(patient_id="1&_count=9999"),
        "context.patientId",
    ),
    "order-sign without draftOrders": (ORDER_SIGN, hook_body("order-sign"), "context.draftOrders"),
    "draftOrders not a Bundle": (
        ORDER_SIGN,
        hook_body("order-sign", draftOrders={"resourceType": "MedicationRequest"}),
        "context.draftOrders",
    ),
    "draftOrders entry without resource": (
        ORDER_SIGN,
        hook_body("order-sign", draftOrders={"resourceType": "Bundle", "entry": [{}]}),
        "context.draftOrders",
    ),
    "order-select without selections": (
        ORDER_SELECT,
        hook_body("order-select", draftOrders=bundle()),
        "context.selections",
    ),
    "fhirAuthorization without fhirServer": (
        PATIENT_VIEW,
        {**hook_body(), "fhirAuthorization": {"access_token": "t", "token_type": "Bearer"}},
        "body",
    ),
    "fhirAuthorization not Bearer": (
        PATIENT_VIEW,
        {
            **hook_body(),
            "fhirServer": FHIR,
            "fhirAuthorization": {"access_token": "t", "token_type": "MAC"},
        },
        "fhirAuthorization.token_type",
    ),
    "fhirServer not a URL": (PATIENT_VIEW, {**hook_body(), "fhirServer": "ehr"}, "fhirServer"),
    "prefetch about another patient": (
        PATIENT_VIEW,
        hook_body(
            prefetch={**trt_man_prefetch(), "patient": {"resourceType": "Patient", "id": "p2"}}
        ),
        "prefetch.patient",
    ),
    "prefetch results of another patient": (
        PATIENT_VIEW,
        hook_body(
            patient_id="p2",
            prefetch={**trt_man_prefetch(), "patient": {"resourceType": "Patient", "id": "p2"}},
        ),
        "prefetch.medicationRequests",
    ),
    "prefetch results of another patient, version-specific": (
        PATIENT_VIEW,
        hook_body(prefetch=_with_subject(trt_man_prefetch(), "Patient/p2/_history/1")),
        "prefetch.estradiol",
    ),
    "prefetch value not a resource": (
        PATIENT_VIEW,
        hook_body(prefetch={**empty_prefetch(), "patient": "p1"}),
        "prefetch.patient",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_REQUESTS))
def test_a_malformed_request_is_400_and_says_what_is_wrong(
    client: FlaskClient, keys: Keys, case: str
) -> None:
    service_id, body, field = BAD_REQUESTS[case]
    response = call(client, keys, service_id, body)
    assert response.status_code == 400, response.json
    assert response.json["error"] == "bad_request"
    assert response.json["message"]
    fields = [detail["field"] for detail in response.json["details"]]
    assert any(f.startswith(field) for f in fields) or field == "body", fields


def test_a_400_never_echoes_values(client: FlaskClient, keys: Keys) -> None:
    body = {**hook_body(patient_id="secret-name & ssn 123-45-6789")}
    body["fhirServer"] = "not-a-url-with-token-abc123"
    response = call(client, keys, PATIENT_VIEW, body)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "123-45-6789" not in text and "abc123" not in text


def test_missing_prefetch_without_fhir_server_is_412(client: FlaskClient, keys: Keys) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body())
    assert response.status_code == 412
    assert response.json["error"] == "precondition_failed"
    assert "patient" in response.json["missingPrefetch"]
    assert "medicationStatements" not in response.json["missingPrefetch"]  # optional key


def test_missing_prefetch_with_an_unregistered_fhir_server_is_412(
    client: FlaskClient, keys: Keys
) -> None:
    body = {
        **hook_body(),
        "fhirServer": "https://elsewhere.example/fhir",
        "fhirAuthorization": {
            "access_token": "t0k",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "x",
            "subject": "s",
        },
    }
    response = call(client, keys, PATIENT_VIEW, body)
    assert response.status_code == 412
    assert "not registered" in response.json["message"]


def test_null_prefetch_means_no_data_and_needs_no_fhir_server(
    client: FlaskClient, keys: Keys
) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=empty_prefetch()))
    assert response.status_code == 200
    assert response.json == {"cards": []}


def test_cards_come_from_the_prefetch(client: FlaskClient, keys: Keys) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    topics = [card["source"]["topic"]["code"] for card in response.json["cards"]]
    assert "estradiol-low" in topics and "anastrozole-intent" in topics
    assert len(topics) == len(set(topics))  # one card per rule


@pytest.mark.parametrize(
    "subject",
    ["Patient/p1/_history/3", "https://ehr.example.org/fhir/Patient/p1", "Patient/p1/"],
    ids=["version-specific", "absolute", "trailing-slash"],
)
def test_results_about_the_patient_are_used_however_the_subject_is_written(
    client: FlaskClient, keys: Keys, subject: str
) -> None:
    """FHIR R4 allows relative, absolute and version-specific references: all name p1."""
    body = hook_body(prefetch=_with_subject(trt_man_prefetch(), subject))
    response = call(client, keys, PATIENT_VIEW, body)
    assert response.status_code == 200, response.json
    topics = [card["source"]["topic"]["code"] for card in response.json["cards"]]
    assert "estradiol-low" in topics


def test_a_prefetched_medication_with_no_id_is_found_by_its_urn_uuid_full_url(
    client: FlaskClient, keys: Keys
) -> None:
    """As in a transaction Bundle: the order names its drug by the entry's fullUrl."""
    prefetch = trt_man_prefetch()
    order = anastrozole()
    medication = {"resourceType": "Medication", "code": order.pop("medicationCodeableConcept")}
    order["medicationReference"] = {"reference": "urn:uuid:7d0c"}
    prefetch["medicationRequests"] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "urn:uuid:7d0c", "resource": medication},
            {"resource": order},
            {"resource": trt_order()},
        ],
    }
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    assert response.status_code == 200, response.json
    topics = [card["source"]["topic"]["code"] for card in response.json["cards"]]
    assert "anastrozole-intent" in topics and "estradiol-low" in topics


def test_extensions_and_unknown_prefetch_keys_are_tolerated(
    client: FlaskClient, keys: Keys
) -> None:
    body = hook_body(prefetch={**trt_man_prefetch(), "somethingElse": {"resourceType": "Basic"}})
    body["extension"] = {"com.example.timestamp": "2026-11-01T12:00:00Z"}
    body["context"]["encounterId"] = "enc-1"
    assert call(client, keys, PATIENT_VIEW, body).status_code == 200


def test_issued_cards_are_recorded_by_rule_for_feedback_analytics(
    client: FlaskClient, keys: Keys, app: Any
) -> None:
    body = hook_body(prefetch=trt_man_prefetch())
    cards = call(client, keys, PATIENT_VIEW, body).json["cards"]
    issued = {row["card_uuid"]: row for row in app.extensions["runtime.store"].issued_cards()}
    for card in cards:
        row = issued[card["uuid"]]
        assert row["rule_id"] == card["source"]["topic"]["code"]
        assert row["service_id"] == PATIENT_VIEW
        assert row["hook_instance"] == body["hookInstance"]


def test_disabled_rules_give_no_cards(make_settings: Any, keys: Keys) -> None:
    app = create_app(
        make_settings(clinical={"disabled_rules": ["estradiol-low", "anastrozole-intent"]})
    )
    response = call(app.test_client(), keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    topics = {card["source"]["topic"]["code"] for card in response.json["cards"]}
    assert topics and not topics & {"estradiol-low", "anastrozole-intent"}


def test_thresholds_come_from_the_clinical_settings(make_settings: Any, keys: Keys) -> None:
    app = create_app(make_settings(clinical={"estradiol_floor_pg_ml": 10}))
    response = call(
        app.test_client(), keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch(e2=11))
    )
    topics = {card["source"]["topic"]["code"] for card in response.json["cards"]}
    assert "estradiol-low" not in topics


def test_a_request_over_the_size_limit_is_413_json(make_settings: Any, keys: Keys) -> None:
    client = create_app(make_settings(max_request_bytes=2048)).test_client()
    body = hook_body(prefetch=trt_man_prefetch())
    body["padding"] = "x" * 4096
    token = keys.sign(service_url(PATIENT_VIEW))
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=orjson.dumps(body), headers=bearer(token)
    )
    assert response.status_code == 413
    assert response.json["error"] == "request_entity_too_large"


def test_each_hook_instance_is_independent(client: FlaskClient, keys: Keys) -> None:
    body = hook_body(prefetch=trt_man_prefetch())
    first = call(client, keys, PATIENT_VIEW, body).json["cards"]
    body["hookInstance"] = str(uuid.uuid4())
    second = call(client, keys, PATIENT_VIEW, body).json["cards"]
    assert [c["source"]["topic"] for c in first] == [c["source"]["topic"] for c in second]
    assert {c["uuid"] for c in first}.isdisjoint(c["uuid"] for c in second)
