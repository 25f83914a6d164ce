"""GET /metrics: calls, latency, cards, data gaps, refused JWTs and feedback for Prometheus,
labelled from fixed sets only; added up over the workers of `anastrozole-cds serve`."""

from __future__ import annotations

import ast
import inspect
import re
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from anastrozole_cds.app import create_app
from cds_hooks import auth
from cds_hooks.codes import DATA_INCOMPLETE_TOPIC
from cds_hooks.metrics import DISPOSITIONS
from cds_hooks.policy import MONITORING_TOPIC
from cds_hooks.services import SERVICES, prefetch_templates
from cds_hooks.suppression import KNOWN_REASONS
from clinical.rules import RULE_IDS
from ehr.client import FAULTS as FAULT_CLASS_NAMES
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import (
    BASE,
    PATIENT_VIEW,
    Keys,
    bearer,
    bundle,
    call,
    empty_prefetch,
    estradiol_result,
    hook_body,
    make_keys,
    medication_request,
    patient,
    service_url,
    trt_man_chart,
    trt_man_prefetch,
)
from tests.cds_hooks.test_cds_fetch import FAULTS, TOKEN, fake_fhir, with_fhir
from tests.security.sec_live_server import live_service

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

PATIENT_ID = "pt-7f3e9c1a"
MRN = "MRN-55501234"
FHIR_TOKEN = "fhir-token-metrics-3b8d"
LIVER_KEY = next(t.key for t in prefetch_templates() if t.label == "liver tests")
PATIENT_KEY = next(t.key for t in prefetch_templates() if t.query.startswith("Patient/"))
FIXED_LABEL_VALUES = {
    "service": {*SERVICES, "unknown"},
    "hook": {*(s.hook for s in SERVICES.values()), "unknown"},
    "rule": {*RULE_IDS, DATA_INCOMPLETE_TOPIC, MONITORING_TOPIC, "unknown"},
    "indicator": {"info", "warning", "critical"},
    "key": {t.key for t in prefetch_templates()},
    "outcome": {"accepted", "overridden"},
    "disposition": set(DISPOSITIONS),
    "override_reason": {*KNOWN_REASONS, "none", "other"},
}


def samples(text: str) -> Samples:
    """Every sample of a /metrics body: (name, labels) -> value."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def scrape(client: FlaskClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return samples(response.get_data(as_text=True))


def calls(found: Samples, status: str, service: str = PATIENT_VIEW) -> float:
    hook = SERVICES[service].hook if service in SERVICES else "unknown"
    return value(found, "anastrozole_cds_calls_total", service=service, hook=hook, status=status)


def refusals(found: Samples, reason: str) -> float:
    return value(found, "anastrozole_cds_jwt_refusals_total", reason=reason)


# -- in process ------------------------------------------------------------------------------------


def test_a_patient_view_call_shows_its_status_latency_and_cards_by_rule(
    client: FlaskClient, keys: Keys
) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    assert response.status_code == 200
    found = scrape(client)
    assert calls(found, "200") == 1
    latency = {"service": PATIENT_VIEW}
    assert value(found, "anastrozole_cds_call_duration_seconds_count", **latency) == 1
    assert value(found, "anastrozole_cds_call_duration_seconds_sum", **latency) > 0
    buckets = {
        dict(labels)["le"]
        for name, labels in found
        if name == "anastrozole_cds_call_duration_seconds_bucket"
    }
    assert buckets == {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "+Inf"}
    for card in response.json["cards"]:
        rule = card["source"]["topic"]["code"]
        assert (
            value(
                found,
                "anastrozole_cds_cards_total",
                service=PATIENT_VIEW,
                rule=rule,
                indicator=card["indicator"],
            )
            == 1
        ), rule
    assert value(
        found,
        "anastrozole_cds_cards_total",
        service=PATIENT_VIEW,
        rule="estradiol-low",
        indicator="warning",
    )


def test_each_app_counts_on_its_own(client: FlaskClient, keys: Keys, app: Flask) -> None:
    """Per-app registries: a test sees only its own calls, and metrics need no global reset."""
    call(client, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    other = create_app(app.extensions["runtime.settings"])
    assert calls(scrape(other.test_client()), "200") == 0
    assert calls(scrape(client), "200") == 1


def test_refused_bad_and_unknown_calls_are_counted_by_status_and_preflights_are_not(
    client: FlaskClient, keys: Keys
) -> None:
    call(client, keys, PATIENT_VIEW, {"hook": "patient-view"})
    client.post(f"/cds-services/{PATIENT_VIEW}", json=hook_body(prefetch=trt_man_prefetch()))
    call(client, keys, "no-such-service", hook_body())
    client.options(
        f"/cds-services/{PATIENT_VIEW}",
        headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST"},
    )
    found = scrape(client)
    assert calls(found, "400") == 1
    assert calls(found, "401") == 1
    assert calls(found, "404", service="unknown") == 1  # the path's id is never a label
    assert calls(found, "200") == 0  # a CORS preflight is not a call
    assert not any("no-such-service" in str(labels) for _, labels in found)


REFUSALS: dict[str, tuple[dict[str, Any], str]] = {
    "no Authorization header": ({"headers": {}}, "missing_token"),
    "not a JWT": ({"headers": bearer("not-a-jwt")}, "malformed"),
    "an unknown kid": ({"sign": {"kid": "retired-key"}}, "unknown_kid"),
    "an untrusted issuer": ({"sign": {"iss": "https://other.example"}}, "untrusted_issuer"),
    "expired": ({"sign": {"exp": int(time.time()) - 600}}, "expired"),
    "another audience": ({"aud": f"{BASE}/cds-services/other"}, "wrong_audience"),
    "no jti": ({"sign": {"jti": None}}, "claim_missing"),
    "a jti that is not a string": ({"sign": {"jti": 42}}, "claim_invalid"),
    "a lifetime of a day": ({"sign": {"exp": int(time.time()) + 86_400}}, "lifetime_too_long"),
    "a typ other than JWT": ({"sign": {"header": {"typ": "at+jwt"}}}, "bad_header"),
    "a jku not listed": (
        {"sign": {"header": {"jku": "https://attacker.example/jwks"}}},
        "jku_not_allowed",
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_refused_jwt_is_counted_by_its_reason_class(
    client: FlaskClient, keys: Keys, case: str
) -> None:
    how, expected = REFUSALS[case]
    if "headers" in how:
        headers = how["headers"]
    else:
        headers = bearer(
            keys.sign(how.get("aud", service_url(PATIENT_VIEW)), **how.get("sign", {}))
        )
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}",
        json=hook_body(prefetch=trt_man_prefetch()),
        headers=headers,
    )
    assert response.status_code == 401
    found = scrape(client)
    assert refusals(found, expected) == 1
    assert calls(found, "401") == 1


def test_a_replayed_jwt_is_counted_as_a_replay(client: FlaskClient, keys: Keys) -> None:
    token = keys.sign(service_url(PATIENT_VIEW))
    for _ in range(2):
        client.post(
            f"/cds-services/{PATIENT_VIEW}",
            json=hook_body(prefetch=trt_man_prefetch()),
            headers=bearer(token),
        )
    found = scrape(client)
    assert refusals(found, "replay") == 1
    assert calls(found, "200") == 1 and calls(found, "401") == 1


def test_feedback_is_counted_by_outcome(client: FlaskClient, keys: Keys) -> None:
    stamp = "2026-11-01T12:05:00Z"
    accepted = {"card": str(uuid.uuid4()), "outcome": "accepted", "outcomeTimestamp": stamp}
    accepted["acceptedSuggestions"] = [{"id": str(uuid.uuid4())}]
    overridden = {"card": str(uuid.uuid4()), "outcome": "overridden", "outcomeTimestamp": stamp}
    token = keys.sign(f"{service_url(PATIENT_VIEW)}/feedback")
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}/feedback",
        json={"feedback": [accepted, overridden, {**overridden, "card": str(uuid.uuid4())}]},
        headers=bearer(token),
    )
    assert response.status_code == 200
    found = scrape(client)
    feedback = "anastrozole_cds_feedback_total"
    assert value(found, feedback, service=PATIENT_VIEW, outcome="accepted") == 1
    assert value(found, feedback, service=PATIENT_VIEW, outcome="overridden") == 2


FAULT_CLASSES = {
    "timeout": "timeout",
    "connection refused": "connection_failed",
    "500": "http_5xx",
    "401": "unauthorized",
    "429 beyond the deadline": "rate_limited",
    "503 beyond the deadline": "http_5xx",
    "malformed JSON": "bad_response",
    "not FHIR": "bad_response",
    "OperationOutcome": "bad_response",
    "next link to another host": "link_refused",
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_a_failed_fhir_query_is_a_data_gap_by_key_and_reason_class(
    client: FlaskClient, keys: Keys, case: str
) -> None:
    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), FAULTS[case])
        assert call(client, keys, PATIENT_VIEW, with_fhir()).status_code == 200
    found = scrape(client)
    gaps = {
        dict(labels)["reason"]: count
        for (name, labels), count in found.items()
        if name == "anastrozole_cds_data_gaps_total"
    }
    assert gaps == {FAULT_CLASSES[case]: 1}
    assert (
        value(
            found,
            "anastrozole_cds_data_gaps_total",
            service=PATIENT_VIEW,
            key=LIVER_KEY,
            reason=FAULT_CLASSES[case],
        )
        == 1
    )
    incomplete = {"service": PATIENT_VIEW, "rule": DATA_INCOMPLETE_TOPIC, "indicator": "info"}
    assert value(found, "anastrozole_cds_cards_total", **incomplete) == 1


def test_a_failed_fetch_of_the_core_data_is_a_412_and_a_data_gap(
    client: FlaskClient, keys: Keys
) -> None:
    """The patient cannot be read: no rule can be trusted (412), and /metrics says which
    fetch failed and why, as for any other gap."""

    def patient_fails(path: str, _params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        return (503, {}, "{}") if path.startswith("Patient") else None

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_fhir(mock, trt_man_chart(), patient_fails)
        assert call(client, keys, PATIENT_VIEW, with_fhir()).status_code == 412
    found = scrape(client)
    gaps = {
        (dict(labels)["key"], dict(labels)["reason"]): count
        for (name, labels), count in found.items()
        if name == "anastrozole_cds_data_gaps_total"
    }
    assert gaps == {(PATIENT_KEY, "http_5xx"): 1}
    assert calls(found, "412") == 1


def test_no_patient_id_mrn_token_or_url_ever_appears_in_metrics(
    client: FlaskClient, keys: Keys
) -> None:
    person = {**patient(PATIENT_ID), "identifier": [{"system": "urn:mrn", "value": MRN}]}
    ana = medication_request("rx-ana", "199224", "anastrozole 1 MG", patient_id=PATIENT_ID)
    prefetch = {
        **empty_prefetch(),
        "patient": person,
        "medicationRequests": bundle(ana),
        "estradiol": bundle(estradiol_result("e2-1", 11.0, patient_id=PATIENT_ID)),
    }
    jwt = keys.sign(service_url(PATIENT_VIEW))
    body = hook_body(patient_id=PATIENT_ID, prefetch=prefetch)
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = {
        "access_token": FHIR_TOKEN,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/*.read",
        "subject": "cds",
    }
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_fhir(mock, [], FAULTS["500"])
        answered = client.post(f"/cds-services/{PATIENT_VIEW}", json=body, headers=bearer(jwt))
        replayed = client.post(f"/cds-services/{PATIENT_VIEW}", json=body, headers=bearer(jwt))
        fetched = call(client, keys, PATIENT_VIEW, with_fhir(patient_id=PATIENT_ID))
    assert (answered.status_code, replayed.status_code) == (200, 401)
    assert fetched.status_code in (200, 412)
    text = client.get("/metrics").get_data(as_text=True)
    for secret in (PATIENT_ID, MRN, jwt, jwt.split(".")[2], FHIR_TOKEN, TOKEN, "ehr.example"):
        assert secret not in text
    for (_, labels), _count in samples(text).items():
        for name, label_value in labels:
            if name in FIXED_LABEL_VALUES:
                assert label_value in FIXED_LABEL_VALUES[name], (name, label_value)


def test_metrics_disabled_is_404(make_settings: Callable[..., ProductSettings], keys: Keys) -> None:
    client = create_app(make_settings(metrics_enabled=False)).test_client()
    assert (
        call(client, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch())).status_code == 200
    )
    response = client.get("/metrics")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"


# -- reason classes --------------------------------------------------------------------------------


def _auth_error_calls() -> list[ast.Call]:
    return [
        node
        for node in ast.walk(ast.parse(inspect.getsource(auth)))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AuthError"
    ]


def test_every_jwt_refusal_names_its_class() -> None:
    """Each `AuthError` in cds_hooks/auth.py gives its class as a literal (or takes the pair
    `_claim_problem` returns), so /metrics never has to read the reason's words."""
    calls = _auth_error_calls()
    assert len(calls) >= 15
    for node in calls:
        if isinstance(node.args[0], ast.Starred):  # AuthError(*_claim_problem(claim))
            continue
        assert len(node.args) >= 2, ast.unparse(node)
        refusal = node.args[1]
        assert isinstance(refusal, ast.Constant), ast.unparse(node)
        assert refusal.value in auth.REFUSALS, ast.unparse(node)
    for claim in ("aud", "iat", "iss", "jti", "exp", "x"):
        assert auth._claim_problem(claim)[1] in auth.REFUSALS


def test_a_refusal_class_outside_the_fixed_set_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="not a refusal class"):
        auth.AuthError("JWT is odd", "odd")  # type: ignore[arg-type]


def test_the_documented_refusal_classes_are_the_fixed_set() -> None:
    table = (Path(__file__).parents[2] / "docs" / "cds-hooks.md").read_text()
    row = next(line for line in table.splitlines() if "_jwt_refusals_total" in line)
    named = set(re.findall(r"`([a-z_]+)`", row)) - {"reason", "anastrozole_cds_jwt_refusals_total"}
    assert named == set(auth.REFUSALS)


def test_the_documented_data_gap_reasons_are_the_fault_classes() -> None:
    table = (Path(__file__).parents[2] / "docs" / "cds-hooks.md").read_text()
    row = next(line for line in table.splitlines() if "_data_gaps_total" in line)
    named = set(re.findall(r"`([a-z_0-9]+)`", row))
    assert {*FAULT_CLASS_NAMES, "no_data"} <= named


# -- under `anastrozole-cds serve` with two workers ------------------------------------------------


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    folder = tmp_path_factory.mktemp("metrics-served")
    with live_service(folder, make_keys(folder), workers=2) as service:
        yield service, folder


def _worker_pids(folder: Path) -> set[str]:
    return {
        match.group(1)
        for path in (folder / "prometheus-metrics").glob("counter_*.db")
        if (match := re.fullmatch(r"counter_(\d+)\.db", path.name))
    }


@pytest.mark.integration
def test_two_workers_are_added_up_in_one_scrape(two_workers: Any) -> None:
    service, folder = two_workers
    url = f"{service.base}/cds-services/{PATIENT_VIEW}"
    path = f"/cds-services/{PATIENT_VIEW}"

    def one_call(_: int) -> int:
        body = hook_body(prefetch=trt_man_prefetch())
        headers = {**service.headers(path), "Connection": "close"}  # a new connection each
        return requests.post(url, json=body, headers=headers, timeout=10).status_code

    made = 0
    with ThreadPoolExecutor(max_workers=6) as pool:
        while made < 240 and (made < 24 or len(_worker_pids(folder)) < 2):
            assert set(pool.map(one_call, range(12))) == {200}
            made += 12
    assert len(_worker_pids(folder)) == 2, "the calls never reached the second worker"
    scraped = samples(requests.get(f"{service.base}/metrics", timeout=5).text)
    assert calls(scraped, "200") == made
    latency = {"service": PATIENT_VIEW}
    assert value(scraped, "anastrozole_cds_call_duration_seconds_count", **latency) == made
    low = {"service": PATIENT_VIEW, "rule": "estradiol-low", "indicator": "warning"}
    assert value(scraped, "anastrozole_cds_cards_total", **low) == made
