"""Without prefetch the service queries fhirServer itself (FHIR server faked with `responses`):
in parallel, with the token, within one deadline; faults make the answer partial, not an error."""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
import responses
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from cds_hooks.services import prefetch_templates
from tests.cds_hooks.cds_fhir_stub import search, searchset
from tests.cds_hooks.cds_helpers import FHIR, PATIENT_VIEW, Keys, call, hook_body, trt_man_chart

TOKEN = "fhir-access-token-5f1c2e"
AUTH = {
    "access_token": TOKEN,
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "patient/*.read",
    "subject": "cds",
}
Fault = Callable[[str, dict[str, str]], tuple[int, dict[str, str], str] | None]


def with_fhir(prefetch: dict[str, Any] | None = None, **context: Any) -> dict[str, Any]:
    body = hook_body(prefetch=prefetch, **context)
    body["fhirServer"] = FHIR
    body["fhirAuthorization"] = AUTH
    return body


def fake_fhir(
    mock: responses.RequestsMock, resources: list[dict[str, Any]], fault: Fault | None = None
) -> None:
    """Answer reads and searches under FHIR from `resources`; `fault` may answer instead."""

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        parts = urlsplit(str(request.url))
        path = parts.path.removeprefix(urlsplit(FHIR).path + "/")
        params = dict(parse_qsl(parts.query))
        if fault is not None:
            faulted = fault(path, params)
            if faulted is not None:
                return faulted
        query = path + ("?" + urlencode(params, safe="|,:/") if params else "")
        found = search(resources, query)
        if "/" in path:
            return (200, {}, json.dumps(found[0])) if found else (404, {}, "{}")
        return 200, {}, json.dumps(searchset(found))

    mock.add_callback(responses.GET, re.compile(re.escape(FHIR) + r"/.*"), callback=answer)


def is_liver_query(path: str, params: dict[str, str]) -> bool:
    return path == "Observation" and "24325-3" in params.get("code", "")


def topics(response: Any) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.json["cards"]]


def test_without_prefetch_every_template_is_fetched_with_the_token(
    client: FlaskClient, keys: Keys
) -> None:
    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart())
        response = call(client, keys, PATIENT_VIEW, with_fhir())
        assert response.status_code == 200
        assert {"estradiol-low", "liver-panel-due", "anastrozole-intent"} <= set(topics(response))
        assert len(mock.calls) == len(prefetch_templates())
        assert all(c.request.headers["Authorization"] == f"Bearer {TOKEN}" for c in mock.calls)
        assert all(c.request.url.startswith(FHIR + "/") for c in mock.calls)


def test_only_missing_or_null_keys_are_fetched(client: FlaskClient, keys: Keys) -> None:
    chart = trt_man_chart()
    with responses.RequestsMock() as mock:
        fake_fhir(mock, chart)
        body = with_fhir(prefetch={"patient": chart[0], "conditions": None})
        response = call(client, keys, PATIENT_VIEW, body)
        assert response.status_code == 200
        fetched = [urlsplit(c.request.url).path.rsplit("/", 1)[-1] for c in mock.calls]
        assert "p1" not in fetched  # the prefetched Patient is not read again
        assert "Condition" in fetched  # null is fetched when the service can
        assert len(mock.calls) == len(prefetch_templates()) - 1


def test_a_fhir_server_without_token_is_queried_when_registered(
    client: FlaskClient, keys: Keys
) -> None:
    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart())
        body = hook_body()
        body["fhirServer"] = FHIR + "/"
        response = call(client, keys, PATIENT_VIEW, body)
        assert response.status_code == 200
        assert all("Authorization" not in c.request.headers for c in mock.calls)


def _status(status: int, body: str = "{}", headers: dict[str, str] | None = None) -> Fault:
    return lambda path, params: (
        (status, headers or {}, body) if is_liver_query(path, params) else None
    )


def _raise(error: Exception) -> Fault:
    def fault(path: str, params: dict[str, str]) -> None:
        if is_liver_query(path, params):
            raise error

    return fault


FAULTS: dict[str, Fault] = {
    "timeout": _raise(requests.exceptions.ReadTimeout("slow")),
    "connection refused": _raise(requests.exceptions.ConnectionError("refused")),
    "500": _status(500, '{"resourceType": "OperationOutcome"}'),
    "401": _status(401),
    "429 beyond the deadline": _status(429, headers={"Retry-After": "120"}),
    "503 beyond the deadline": _status(503, headers={"Retry-After": "120"}),
    "malformed JSON": _status(200, '{"resourceType": "Bundle", "entry": ['),
    "not FHIR": _status(200, '["a list"]'),
    "OperationOutcome": _status(200, '{"resourceType": "OperationOutcome", "issue": []}'),
    "next link to another host": _status(
        200, json.dumps(searchset([], "https://evil.example/fhir/Observation?page=2"))
    ),
}


@pytest.mark.parametrize("case", sorted(FAULTS))
def test_a_fault_withholds_the_rules_that_need_the_data_and_says_so(
    client: FlaskClient, keys: Keys, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    with responses.RequestsMock() as mock, caplog.at_level(logging.DEBUG):
        fake_fhir(mock, trt_man_chart(), FAULTS[case])
        started = time.monotonic()
        response = call(client, keys, PATIENT_VIEW, with_fhir())
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 1.5 + 0.5
    found = topics(response)
    assert "estradiol-low" in found  # other data still judged
    assert "liver-panel-due" not in found  # its data failed: not guessed
    (incomplete,) = [
        c for c in response.json["cards"] if c["source"]["topic"]["code"] == "data-incomplete"
    ]
    assert "liver tests" in incomplete["summary"]
    assert "`liver-panel-due`" in incomplete["detail"]
    assert TOKEN not in response.get_data(as_text=True)
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


def test_429_is_retried_when_retry_after_fits_the_deadline(client: FlaskClient, keys: Keys) -> None:
    attempts: list[int] = []

    def once_busy(path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        if is_liver_query(path, params) and not attempts:
            attempts.append(1)
            return 429, {"Retry-After": "0"}, "{}"
        return None

    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), once_busy)
        response = call(client, keys, PATIENT_VIEW, with_fhir())
    assert "liver-panel-due" in topics(response)
    assert "data-incomplete" not in topics(response)


def test_endless_paging_stops_at_the_page_limit_within_the_deadline(
    client: FlaskClient, keys: Keys
) -> None:
    pages: list[str] = []

    def endless(path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        if not is_liver_query(path, params):
            return None
        pages.append(params.get("page", "1"))
        following = (
            f"{FHIR}/Observation?{urlencode({**params, 'page': len(pages) + 1}, safe='|,:/')}"
        )
        return 200, {}, json.dumps(searchset([], following))

    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), endless)
        started = time.monotonic()
        response = call(client, keys, PATIENT_VIEW, with_fhir())
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200
    assert len(pages) == 5  # fhir_max_pages
    assert "liver-panel-due" in topics(response)  # the first pages are what was asked for


def test_a_slow_server_is_cut_off_at_the_deadline(make_settings: Any, keys: Keys) -> None:
    client = create_app(make_settings(fhir_deadline_seconds=0.5)).test_client()

    def slow(path: str, params: dict[str, str]) -> None:
        if is_liver_query(path, params):
            time.sleep(1.5)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake_fhir(mock, trt_man_chart(), slow)
        started = time.monotonic()
        response = call(client, keys, PATIENT_VIEW, with_fhir())
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert elapsed < 1.2
    assert "data-incomplete" in topics(response)
    assert "deadline exceeded" in response.json["cards"][-1]["detail"]


@pytest.mark.parametrize("resource_type", ["Patient", "MedicationRequest", "Condition"])
def test_when_data_every_rule_needs_cannot_be_read_the_answer_is_412(
    client: FlaskClient, keys: Keys, resource_type: str
) -> None:
    def down(path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        return (401, {}, "{}") if path.startswith(resource_type) else None

    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), down)
        response = call(client, keys, PATIENT_VIEW, with_fhir())
    assert response.status_code == 412
    assert response.json["error"] == "precondition_failed"
    assert "HTTP 401" in response.json["message"]
    assert len(response.json["missingPrefetch"]) == 1
    assert TOKEN not in response.get_data(as_text=True)


def test_an_optional_key_that_fails_changes_nothing(client: FlaskClient, keys: Keys) -> None:
    def no_statements(path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        return (404, {}, "{}") if path in ("MedicationStatement", "ImagingStudy") else None

    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), no_statements)
        response = call(client, keys, PATIENT_VIEW, with_fhir())
    assert response.status_code == 200
    assert "data-incomplete" not in topics(response)
    assert "estradiol-low" in topics(response)
