"""The service end to end over real HTTP: `anastrozole-cds serve` (gunicorn) on 127.0.0.1,
every scenario of tests/fixtures with the prefetch and without it (a stub FHIR server)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from fhir.resources.R4B.servicerequest import ServiceRequest

from cds_hooks.services import prefetch_templates
from clinical.rules import RULE_IDS
from tests.cds_hooks.card_defaults import cards_by_default
from tests.cds_hooks.cds_fhir_stub import StubFhirServer, prefetch_for
from tests.cds_hooks.cds_helpers import Keys, make_keys
from tests.security.sec_live_server import live_service

pytestmark = pytest.mark.integration

PATIENT_VIEW = "anastrozole-monitor-patient-view"
ORDER_SIGN = "anastrozole-monitor-order-sign"
FHIR_TOKEN = "stub-fhir-token-77e1"


@dataclass
class Running:
    base: str
    keys: Keys
    fhir: StubFhirServer
    log: Path

    def token(self, path: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.sign(f'{self.base}{path}', **claims)}"}

    def call(self, service_id: str, body: dict[str, Any]) -> requests.Response:
        path = f"/cds-services/{service_id}"
        return requests.post(f"{self.base}{path}", json=body, headers=self.token(path), timeout=10)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    folder = tmp_path_factory.mktemp("served")
    keys = make_keys(folder)
    fhir = StubFhirServer(page_size=10).start()
    try:
        with live_service(
            folder,
            keys,
            fhir_servers=(fhir.base_url,),
            workers=2,
            extra_toml="fhir_deadline_seconds = 2.5",
        ) as live:
            yield Running(live.base, keys, fhir, live.log)
    finally:
        fhir.stop()


def test_it_runs_under_gunicorn_and_answers_health(service: Running) -> None:
    response = requests.get(f"{service.base}/healthz", timeout=5)
    assert response.json()["status"] == "ok"
    assert response.headers["Server"].startswith("gunicorn")


def test_discovery_and_cors_over_http(service: Running) -> None:
    services = requests.get(f"{service.base}/cds-services", timeout=5).json()["services"]
    assert {s["id"] for s in services} >= {PATIENT_VIEW, ORDER_SIGN}
    preflight = requests.options(
        f"{service.base}/cds-services/{PATIENT_VIEW}",
        headers={
            "Origin": "https://ehr.example.org",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
        timeout=5,
    )
    assert preflight.status_code == 200
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]


def _scenario(
    expected: dict[str, Any], fixture_resources: Any, name: str
) -> tuple[list[dict[str, Any]], str, datetime]:
    resources = fixture_resources(name)
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return resources, patient_id, datetime.fromisoformat(expected[name]["now"])


def test_the_scenarios_make_every_rule_fire(expected: dict[str, dict[str, Any]]) -> None:
    fired = {rule for scenario in expected.values() for rule in scenario["fires"]}
    assert fired == set(RULE_IDS)


def _check(cards: list[dict[str, Any]], scenario: dict[str, Any]) -> None:
    for card in cards:
        for suggestion in card.get("suggestions", ()):
            for action in suggestion["actions"]:
                ServiceRequest.model_validate(action["resource"])
    got = {c["source"]["topic"]["code"]: c["indicator"] for c in cards}
    assert "data-incomplete" not in got
    unclear = scenario["intent"] == "unclear"
    assert got == cards_by_default("patient-view", scenario["fires"], intent_unclear=unclear)
    assert not set(scenario["does_not_fire"]) & set(got)
    for card in cards:
        assert len(card["summary"]) < 140
        assert card["source"]["label"]
        assert card.get("selectionBehavior") or "suggestions" not in card


@pytest.mark.parametrize("with_prefetch", [True, False], ids=["prefetch", "fhir-server"])
def test_every_scenario_gets_its_cards_over_http(
    service: Running,
    expected: dict[str, dict[str, Any]],
    fixture_resources: Any,
    scenario_name: str,
    with_prefetch: bool,
) -> None:
    resources, patient_id, now = _scenario(expected, fixture_resources, scenario_name)
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
    }
    service.fhir.resources = resources
    service.fhir.requests.clear()
    if with_prefetch:
        body["prefetch"] = prefetch_for(resources, prefetch_templates(), patient_id, now.date())
    else:
        body["fhirServer"] = service.fhir.base_url
        body["fhirAuthorization"] = {
            "access_token": FHIR_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "patient/*.read",
            "subject": "anastrozole-cds",
        }
    response = service.call(PATIENT_VIEW, body)
    assert response.status_code == 200, response.text
    _check(response.json()["cards"], expected[scenario_name])
    if with_prefetch:
        assert service.fhir.requests == []
    else:
        assert len(service.fhir.requests) >= len(prefetch_templates())
        assert all(auth == f"Bearer {FHIR_TOKEN}" for _, auth in service.fhir.requests)


def test_an_order_sign_over_http_judges_the_draft(service: Running, fixture_resources: Any) -> None:
    resources = fixture_resources("man_trt_anastrozole_low_e2.json")
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    drafts = [
        {**r, "id": "draft-" + r["id"], "status": "draft"}
        for r in resources
        if r["resourceType"] == "MedicationRequest" and "anastrozole" in str(r).lower()
    ]
    service.fhir.resources = resources
    body = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/dr-1",
            "patientId": patient_id,
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": d} for d in drafts],
            },
        },
        "fhirServer": service.fhir.base_url,
    }
    response = service.call(ORDER_SIGN, body)
    assert response.status_code == 200, response.text
    assert "estradiol-low" in {c["source"]["topic"]["code"] for c in response.json()["cards"]}


def test_feedback_and_refusals_over_http(service: Running) -> None:
    path = f"/cds-services/{PATIENT_VIEW}/feedback"
    feedback = {
        "feedback": [
            {
                "card": str(uuid.uuid4()),
                "outcome": "overridden",
                "outcomeTimestamp": "2026-11-01T12:00:00Z",
            }
        ]
    }
    ok = requests.post(
        f"{service.base}{path}", json=feedback, headers=service.token(path), timeout=5
    )
    assert (ok.status_code, ok.json()) == (200, {"received": 1})
    unsigned = requests.post(f"{service.base}{path}", json=feedback, timeout=5)
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "unauthorized"
    bad = requests.post(
        f"{service.base}{path}", json={"feedback": []}, headers=service.token(path), timeout=5
    )
    assert bad.status_code == 400
    missing = requests.post(
        f"{service.base}/cds-services/{PATIENT_VIEW}",
        json={
            "hook": "patient-view",
            "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "u", "patientId": "p"},
        },
        headers=service.token(f"/cds-services/{PATIENT_VIEW}"),
        timeout=5,
    )
    assert missing.status_code == 412
    assert requests.post(f"{service.base}/cds-services/nope", json={}, timeout=5).status_code == 404


def test_the_fhir_token_never_reaches_the_logs(service: Running) -> None:
    assert FHIR_TOKEN not in service.log.read_text(errors="replace")
