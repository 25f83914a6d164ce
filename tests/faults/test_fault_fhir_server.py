"""Faults of the EHR's FHIR server, over real HTTP on 127.0.0.1: for each, the service answers
within its deadline with the cards it can make, says which data is missing (data-incomplete
card), logs the fault without patient data or tokens, and only ever sends GETs."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    anastrozole,
    call,
    estradiol_result,
    hook_body,
    patient,
    trt_order,
)
from tests.faults.fault_fhir_server import Fault, FaultyFhirServer, json_body

PATIENT_ID = "pat-7f3e91c2"
TOKEN = "fault-suite-fhir-token-0c4b7d2a"
DEADLINE = 1.0
SLACK = 0.6  # the call's own work (parse, rules, cards) on a busy two-core machine


def chart() -> list[dict[str, Any]]:
    """A man on TRT with anastrozole, a low estradiol, and no liver, lipid or DXA results."""
    return [
        patient(PATIENT_ID),
        anastrozole(patient_id=PATIENT_ID),
        trt_order(patient_id=PATIENT_ID),
        estradiol_result("e2-1", 11.0, patient_id=PATIENT_ID),
    ]


def is_liver_query(path: str) -> bool:
    return path.startswith("/fhir/Observation") and "24325-3" in path


def on_liver(fault: Fault) -> Callable[[str], Fault | None]:
    return lambda path: fault if is_liver_query(path) else None


def outcome_bundle(severity: str, *matches: dict[str, Any]) -> bytes:
    entries: list[dict[str, Any]] = [{"resource": r, "search": {"mode": "match"}} for r in matches]
    entries.append(
        {
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": severity, "code": "too-costly", "diagnostics": "limit"}],
            },
            "search": {"mode": "outcome"},
        }
    )
    return json_body({"resourceType": "Bundle", "type": "searchset", "entry": entries})


HUGE = 17 * 1024 * 1024  # above the client's 16 MB response limit

FAULTS: dict[str, Fault] = {
    "slow beyond the deadline": Fault(delay_seconds=3.0, body=json_body({})),
    "500": Fault(status=500, body=json_body({"resourceType": "OperationOutcome"})),
    "502": Fault(status=502, body=b"<html>Bad Gateway</html>"),
    "503 with a long Retry-After": Fault(status=503, headers={"Retry-After": "60"}),
    "401": Fault(status=401, body=json_body({"resourceType": "OperationOutcome"})),
    "429 with a long Retry-After": Fault(status=429, headers={"Retry-After": "60"}),
    "truncated body": Fault(body=b'{"resourceType": "Bundle", "entry": [', declared_length=5000),
    "not JSON": Fault(body=b"<html><body>Service maintenance</body></html>"),
    "OperationOutcome error in a 200 searchset": Fault(body=outcome_bundle("error")),
    "huge bundle": Fault(
        body=b'{"resourceType":"Bundle","type":"searchset","entry":[' + b" " * HUGE + b"]}"
    ),
    "redirect": Fault(status=302, headers={"Location": "http://127.0.0.1:9/fhir/Observation"}),
}

WORDS = {  # what the reason in the card detail and the log says
    "slow beyond the deadline": "deadline exceeded",
    "500": "HTTP 500",
    "502": "HTTP 502",
    "503 with a long Retry-After": "HTTP 503",
    "401": "HTTP 401",
    "429 with a long Retry-After": "HTTP 429",
    "truncated body": "",
    "not JSON": "malformed JSON",
    "OperationOutcome error in a 200 searchset": "OperationOutcome error",
    "huge bundle": "response too large",
    "redirect": "HTTP 302",
}


@pytest.fixture(scope="module")
def fhir() -> Iterator[FaultyFhirServer]:
    server = FaultyFhirServer(chart()).start()
    yield server
    server.stop()


@pytest.fixture
def client(fhir: FaultyFhirServer, make_settings: Callable[..., ProductSettings]) -> FlaskClient:
    fhir.fault = None
    fhir.seen.clear()
    settings = make_settings(
        fhir_deadline_seconds=DEADLINE,
        issuers=[
            {
                "iss": ISSUER,
                "jwks_file": str(make_settings().issuers[0].jwks_file),
                "fhir_servers": [fhir.base_url],
            }
        ],
    )
    return create_app(settings).test_client()


def ask(client: FlaskClient, keys: Keys, fhir: FaultyFhirServer) -> tuple[Any, float]:
    body = hook_body(patient_id=PATIENT_ID)
    body["fhirServer"] = fhir.base_url
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "scope": "patient/*.read",
    }
    started = time.monotonic()
    response = call(client, keys, PATIENT_VIEW, body)
    return response, time.monotonic() - started


def topics(response: Any) -> dict[str, dict[str, Any]]:
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


def test_without_faults_every_card_comes_from_the_fhir_server(
    client: FlaskClient, keys: Keys, fhir: FaultyFhirServer
) -> None:
    response, _ = ask(client, keys, fhir)
    assert response.status_code == 200
    assert {"estradiol-low", "liver-panel-due"} <= set(topics(response))
    assert "data-incomplete" not in topics(response)


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_a_fault_gives_the_other_cards_in_time_and_says_what_is_missing(
    client: FlaskClient,
    keys: Keys,
    fhir: FaultyFhirServer,
    case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fhir.fault = on_liver(FAULTS[case])
    with caplog.at_level(logging.DEBUG):
        response, elapsed = ask(client, keys, fhir)
    assert response.status_code == 200
    assert elapsed < DEADLINE + SLACK
    found = topics(response)
    assert "estradiol-low" in found  # what arrived is judged
    assert "liver-panel-due" not in found  # what did not is not guessed
    detail = found["data-incomplete"]["detail"]
    assert "`liver-panel-due`" in detail and WORDS[case] in detail
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "liverTests: " + WORDS[case] in logged  # the fault is logged, by key and reason
    for secret in (TOKEN, PATIENT_ID):
        assert secret not in logged
        assert secret not in response.get_data(as_text=True).replace(
            f"Patient/{PATIENT_ID}", ""
        )  # the patient's own reference in suggested orders is expected
    assert {seen.method for seen in fhir.seen} == {"GET"}  # nothing but safe, idempotent reads
    liver_calls = [seen for seen in fhir.seen if is_liver_query(seen.path)]
    assert len(liver_calls) == 1  # errors and long Retry-After are not retried
    assert all(seen.authorization == f"Bearer {TOKEN}" for seen in fhir.seen)


def test_a_redirect_is_not_followed_so_the_token_goes_nowhere_else(
    client: FlaskClient, keys: Keys, fhir: FaultyFhirServer
) -> None:
    other = FaultyFhirServer([]).start()
    try:
        fhir.fault = on_liver(Fault(status=307, headers={"Location": f"{other.base_url}/x"}))
        response, _ = ask(client, keys, fhir)
    finally:
        other.stop()
    assert response.status_code == 200
    assert other.seen == []


def test_an_informational_operation_outcome_in_a_searchset_keeps_the_matches(
    client: FlaskClient, keys: Keys, fhir: FaultyFhirServer
) -> None:
    liver = {**estradiol_result("alt-1", 30.0, patient_id=PATIENT_ID)}
    liver["code"] = {"coding": [{"system": "http://loinc.org", "code": "24325-3"}]}
    fhir.fault = on_liver(Fault(body=outcome_bundle("information", liver)))
    response, _ = ask(client, keys, fhir)
    assert "data-incomplete" not in topics(response)


def test_a_503_with_a_short_retry_after_is_retried_once_and_used(
    client: FlaskClient, keys: Keys, fhir: FaultyFhirServer
) -> None:
    busy: list[str] = []

    def once(path: str) -> Fault | None:
        if is_liver_query(path) and not busy:
            busy.append(path)
            return Fault(status=503, headers={"Retry-After": "0"})
        return None

    fhir.fault = once
    response, _ = ask(client, keys, fhir)
    assert "liver-panel-due" in topics(response)
    assert "data-incomplete" not in topics(response)
    assert len([s for s in fhir.seen if is_liver_query(s.path)]) == 2


def test_next_links_that_loop_stop_and_the_first_pages_are_used(
    client: FlaskClient, keys: Keys, fhir: FaultyFhirServer
) -> None:
    def loop(path: str) -> Fault | None:
        if not is_liver_query(path):
            return None
        other = "&page=b" if "page=a" in path else "&page=a"
        following = path.split("&page=")[0] + other
        return Fault(
            body=orjson.dumps(
                {
                    "resourceType": "Bundle",
                    "type": "searchset",
                    "entry": [],
                    "link": [{"relation": "next", "url": f"{fhir.origin}{following}"}],
                }
            )
        )

    fhir.fault = loop
    response, elapsed = ask(client, keys, fhir)
    assert elapsed < DEADLINE + SLACK
    assert len([s for s in fhir.seen if is_liver_query(s.path)]) <= 3
    assert "liver-panel-due" in topics(response)
