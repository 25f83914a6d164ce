"""`check`'s request building: prefetch tokens, the JWT, the hook body, the draft order."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import responses
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

from ehr.client import FhirClient
from sandbox.ehr_client import (
    SandboxError,
    discovery_prefetch,
    fetch_prefetch,
    hook_context,
    hook_request,
    load_signing_key,
    renewal_draft,
    resolve_template,
    service_url,
    sign_jwt,
)
from sandbox.render import masked_request

TODAY = date(2026, 11, 1)
CONTEXT = {"patientId": "p 1", "userId": "Practitioner/dr-a"}


@pytest.mark.parametrize(
    ("template", "resolved"),
    [
        ("Patient/{{context.patientId}}", "Patient/p%201"),
        ("X?performer={{context.userId}}", "X?performer=Practitioner/dr-a"),
        ("X?date=ge{{today() - 730 days}}", "X?date=ge2024-11-01"),
        ("X?date=ge{{ today()-1 day }}", "X?date=ge2026-10-31"),
        ("X?date=le{{today() + 2 weeks}}", "X?date=le2026-11-15"),
        ("X?date=ge{{today() - 8 months}}", "X?date=ge2026-03-01"),
        ("X?date=ge{{today() - 1 year}}", "X?date=ge2025-11-01"),
        ("X?date=eq{{today()}}", "X?date=eq2026-11-01"),
        ("X?enc={{context.encounterId}}", "X?enc={{context.encounterId}}"),
    ],
)
def test_prefetch_tokens_are_resolved_as_the_ballot_defines_them(
    template: str, resolved: str
) -> None:
    assert resolve_template(template, CONTEXT, TODAY) == resolved


def test_months_clamp_to_the_end_of_the_month() -> None:
    assert resolve_template("{{today() - 1 month}}", {}, date(2026, 3, 31)) == "2026-02-28"


def test_the_service_templates_resolve_completely() -> None:
    for template in discovery_prefetch("patient-view").values():
        assert "{{" not in resolve_template(template, CONTEXT, TODAY)


def test_the_jwt_carries_the_claims_a_cds_client_must_send() -> None:
    key = ECKey.generate_key("P-384", parameters={"kid": "k1"}, private=True)
    audience = service_url("https://cds.example.org/", "patient-view")
    assert audience == "https://cds.example.org/cds-services/anastrozole-monitor-patient-view"
    issued = datetime(2026, 11, 1, 12, tzinfo=UTC)
    token = jwt.decode(
        sign_jwt(key, issuer="https://ehr.example", audience=audience, issued_at=issued),
        key,
        algorithms=["ES384"],
    )
    assert token.header == {"alg": "ES384", "typ": "JWT", "kid": "k1"}
    claims = token.claims
    assert claims["iss"] == "https://ehr.example"
    assert claims["aud"] == audience
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == int(issued.timestamp())
    assert len(claims["jti"]) == 36


def test_an_rsa_key_signs_rs384_and_bad_keys_are_explained() -> None:
    rsa = RSAKey.generate_key(2048, parameters={"kid": "r1"}, private=True)
    key = load_signing_key(rsa.as_dict(private=True))
    assert (
        jwt.decode(sign_jwt(key, issuer="i", audience="a"), rsa, algorithms=["RS384"]).header["alg"]
        == "RS384"
    )
    with pytest.raises(SandboxError, match="public key"):
        load_signing_key(rsa.as_dict(private=False))
    p256 = ECKey.generate_key("P-256", parameters={"kid": "e"}, private=True)
    with pytest.raises(SandboxError, match="P-384"):
        load_signing_key(p256.as_dict(private=True))
    with pytest.raises(SandboxError, match="kid"):
        load_signing_key({**rsa.as_dict(private=True), "kid": ""})


@pytest.mark.parametrize(
    ("document", "says"),
    [
        (
            {"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "d": "x", "x": "x", "y": "y"}]},
            'a JWK Set ({"keys": [...]}), not one JWK: give one private JWK',
        ),
        ({"foo": 1}, 'not a JWK: the object has no "kty"'),
        ([1, 2], "not a JWK: the file holds a JSON list, not an object"),
        ("hello", "not a JWK: the file holds a JSON string, not an object"),
        ({"kty": "EC", "crv": "P-384", "kid": "k1", "x": "x", "y": "y"}, "is a public key"),
    ],
    ids=["jwk-set", "no-kty", "list", "string", "public"],
)
def test_what_is_wrong_with_a_signing_key_file_is_said(document: object, says: str) -> None:
    with pytest.raises(SandboxError) as raised:
        load_signing_key(document)
    assert says in str(raised.value)


def test_the_hook_body_has_fhir_authorization_only_with_a_token() -> None:
    context = hook_context("patient-view", "p1")
    body = hook_request("patient-view", "https://fhir.example/r4/", context, access_token="t0k")
    assert body["fhirServer"] == "https://fhir.example/r4"
    assert body["fhirAuthorization"]["token_type"] == "Bearer"
    assert body["context"] == {"userId": "Practitioner/sandbox-clinician", "patientId": "p1"}
    assert "prefetch" not in body
    assert masked_request(body)["fhirAuthorization"]["access_token"] == "***"
    assert "fhirAuthorization" not in hook_request("patient-view", "https://f.example", context)


def test_order_contexts_carry_the_drafts_and_selections() -> None:
    draft = {"resourceType": "MedicationRequest", "id": "d1", "status": "draft"}
    select = hook_context("order-select", "p1", draft_orders=[draft])
    assert select["selections"] == ["MedicationRequest/d1"]
    assert select["draftOrders"]["entry"] == [{"resource": draft}]
    assert "selections" not in hook_context("order-sign", "p1", draft_orders=[draft])
    with pytest.raises(SandboxError):
        hook_context("order-sign", "p1")


def test_the_renewal_draft_renews_the_latest_active_anastrozole_order() -> None:
    def order(order_id: str, text: str, status: str, authored: str) -> dict[str, object]:
        return {"resourceType": "MedicationRequest", "id": order_id, "status": status,
                "authoredOn": authored, "medicationCodeableConcept": {"text": text}}  # fmt: skip

    chart = [
        order("old", "anastrozole 1 mg tablet", "active", "2025-01-01"),
        order("new", "Anastrozole 0.5 mg (compounded)", "active", "2026-05-01"),
        order("stopped", "anastrozole 1 mg tablet", "stopped", "2026-09-01"),
        order("t", "testosterone cypionate", "active", "2026-10-01"),
    ]
    draft = renewal_draft(chart, TODAY)
    assert (draft["id"], draft["status"], draft["authoredOn"]) == (
        "new-renewal",
        "draft",
        "2026-11-01",
    )
    with pytest.raises(SandboxError, match="--draft-order"):
        renewal_draft(chart[3:], TODAY)


@responses.activate
def test_prefetch_reads_give_the_resource_and_searches_a_searchset() -> None:
    base = "https://fhir.example/r4"
    responses.get(f"{base}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    responses.get(f"{base}/Patient/gone", status=404)
    observation = {"resourceType": "Observation", "id": "o1"}
    responses.get(f"{base}/Observation",
                  json={"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": observation}]})  # fmt: skip
    responses.get(f"{base}/Condition", status=500)
    queries = {"patient": "Patient/p1", "gone": "Patient/gone",
               "labs": "Observation?patient=p1", "conditions": "Condition?patient=p1"}  # fmt: skip
    with FhirClient(base) as client:
        prefetch, problems = fetch_prefetch(client, queries, deadline_seconds=5)
    assert prefetch["patient"] == {"resourceType": "Patient", "id": "p1"}
    assert prefetch["gone"] is None
    assert prefetch["labs"]["type"] == "searchset"
    assert prefetch["labs"]["entry"][0]["resource"] == observation
    assert "conditions" not in prefetch
    assert problems == {"conditions": "HTTP 500 (server error)"}
