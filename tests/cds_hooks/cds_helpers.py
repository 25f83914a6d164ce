"""Helpers for the CDS Hooks tests: keys, signed JWTs, hook bodies, small resources."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, RSAKey

from cds_hooks.services import prefetch_templates

BASE = "https://cds.example.org"
ISSUER = "https://ehr.example.org"
FHIR = "https://ehr.example.org/fhir"
NOW = datetime.fromisoformat("2026-11-01T12:00:00+00:00")
PATIENT_VIEW = "anastrozole-monitor-patient-view"
ORDER_SELECT = "anastrozole-monitor-order-select"
ORDER_SIGN = "anastrozole-monitor-order-sign"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"


@dataclass(frozen=True)
class Keys:
    es384: ECKey
    rs384: RSAKey
    jwks_file: Path

    def sign(
        self,
        aud: str | list[str],
        *,
        alg: str = "ES384",
        iss: str = ISSUER,
        kid: str | None = None,
        header: dict[str, Any] | None = None,
        key: Any = None,
        **claims: Any,
    ) -> str:
        """A CDS Hooks client JWT; any claim can be overridden, or left out with None."""
        now = int(time.time())
        payload = {
            "iss": iss,
            "aud": aud,
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        signing_key = key or (self.es384 if alg == "ES384" else self.rs384)
        headers = {"alg": alg, "typ": "JWT", "kid": kid or signing_key.kid, **(header or {})}
        return jwt.encode(headers, payload, signing_key, algorithms=[alg])


def make_keys(directory: Path) -> Keys:
    es384 = ECKey.generate_key("P-384", parameters={"kid": "ehr-es384", "use": "sig"})
    rs384 = RSAKey.generate_key(2048, parameters={"kid": "ehr-rs384", "use": "sig"})
    jwks_file = directory / "ehr-jwks.json"
    jwks_file.write_bytes(orjson.dumps(KeySet([es384, rs384]).as_dict(private=False)))
    return Keys(es384, rs384, jwks_file)


# What the rules and the hooks' own scoping find, every finding a card of its own: the tests of
# prefetch, fetching and order scoping read it. The [cards] defaults (what a clinician is shown)
# have their own tests (test_card_policy.py, test_alert_burden_http.py), with `cards={}`.
SHOW_EVERY_CARD = {
    hook: {"show": "info", "anastrozole-intent": "info", "group_monitoring": False}
    for hook in ("patient-view", "order-select", "order-sign")
}


def settings_values(keys: Keys, instance: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "cards": SHOW_EVERY_CARD,
        "public_base_url": BASE,
        "store_url": "sqlite://",
        "instance_path": instance,
        "issuers": [{"iss": ISSUER, "jwks_file": str(keys.jwks_file), "fhir_servers": [FHIR]}],
        "evaluation_time": NOW,
        "fhir_deadline_seconds": 1.5,
    }
    values.update(overrides)
    return values


def service_url(service_id: str) -> str:
    return f"{BASE}/cds-services/{service_id}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": r} for r in resources],
    }


def empty_prefetch() -> dict[str, Any]:
    """Every prefetch key present and null: the client had no data for any of them."""
    return {template.key: None for template in prefetch_templates()}


def hook_body(
    hook: str = "patient-view",
    *,
    patient_id: str = "p1",
    prefetch: dict[str, Any] | None = None,
    **extra_context: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id, **extra_context},
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def call(client: FlaskClient, keys: Keys, service_id: str, body: Any, **sign: Any) -> Any:
    """POST a hook call signed for the service; returns the test response."""
    token = keys.sign(service_url(service_id), **sign)
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        f"/cds-services/{service_id}",
        data=data,
        headers={**bearer(token), "Content-Type": "application/json"},
    )


# -- small resources for hand-built charts ----------------------------------------------------------


def patient(
    patient_id: str = "p1", gender: str = "male", birth_date: str = "1978-03-02"
) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": patient_id, "gender": gender, "birthDate": birth_date}


def medication_request(
    request_id: str,
    code: str,
    display: str,
    *,
    status: str = "active",
    authored: str = "2026-01-10",
    patient_id: str = "p1",
    dose_mg: float | None = None,
    per_week: int | None = None,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": request_id,
        "status": status,
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": code, "display": display}],
            "text": display,
        },
        "authoredOn": authored,
    }
    if dose_mg is not None and per_week is not None:
        resource["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": per_week, "period": 1, "periodUnit": "wk"}},
                "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg"}}],
            }
        ]
    return resource


def anastrozole(request_id: str = "rx-ana", **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("dose_mg", 0.5)
    kwargs.setdefault("per_week", 2)
    return medication_request(request_id, "199224", "anastrozole 1 MG Oral Tablet", **kwargs)


def trt_order(request_id: str = "rx-testo", **kwargs: Any) -> dict[str, Any]:
    return medication_request(
        request_id,
        "835840",
        "testosterone cypionate 200 MG/ML Injectable Solution",
        authored="2025-06-01",
        **kwargs,
    )


def estradiol_result(
    obs_id: str, value: float, when: str = "2026-10-01", patient_id: str = "p1"
) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "subject": {"reference": f"Patient/{patient_id}"},
        "code": {"coding": [{"system": LOINC, "code": "2243-4", "display": "Estradiol"}]},
        "effectiveDateTime": when,
        "valueQuantity": {
            "value": value,
            "unit": "pg/mL",
            "system": "http://unitsofmeasure.org",
            "code": "pg/mL",
        },
    }


def trt_man_chart(e2: float = 11.0) -> list[dict[str, Any]]:
    """A man on testosterone with anastrozole 0.5 mg twice weekly and a low estradiol."""
    return [patient(), anastrozole(), trt_order(), estradiol_result("e2-1", e2)]


def trt_man_prefetch(e2: float = 11.0) -> dict[str, Any]:
    chart = trt_man_chart(e2)
    prefetch = empty_prefetch()
    prefetch.update(
        patient=chart[0], medicationRequests=bundle(chart[1], chart[2]), estradiol=bundle(chart[3])
    )
    return prefetch
