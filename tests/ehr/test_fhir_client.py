"""ehr.client.FhirClient: paging, timeouts, retries, one deadline, errors as values."""

from __future__ import annotations

import ast
import inspect
import json
import logging
import time
from typing import Any

import pytest
import requests
import responses

from ehr import client as client_module
from ehr.client import FAULTS, ClientLimits, FhirClient, Outcome, QueryResult, _retry_after

BASE = "https://ehr.example.org/fhir"
TOKEN = "secret-token-8d2f"


def bundle(*ids: str, next_url: str | None = None, outcome: bool = False) -> dict[str, Any]:
    entries: list[dict[str, Any]] = [
        {"resource": {"resourceType": "Observation", "id": i}} for i in ids
    ]
    if outcome:
        entries.append(
            {"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}}
        )
    body: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    if next_url:
        body["link"] = [{"relation": "self", "url": "x"}, {"relation": "next", "url": next_url}]
    return body


def client(**limits: Any) -> FhirClient:
    return FhirClient(BASE, access_token=TOKEN, limits=ClientLimits(**limits))


def ids(result: QueryResult) -> list[str]:
    return [r["id"] for r in result.resources]


@responses.activate
def test_a_read_gives_the_resource_and_sends_the_token_and_accept_header() -> None:
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    result = client().get("Patient/p1", deadline_seconds=2)
    assert result.outcome is Outcome.COMPLETE and result.usable
    assert result.resources == ({"resourceType": "Patient", "id": "p1"},)
    request = responses.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept"] == "application/fhir+json"


@responses.activate
def test_a_search_follows_next_links_and_drops_outcome_entries() -> None:
    responses.get(
        f"{BASE}/Observation",
        json=bundle("a", "b", next_url=f"{BASE}/Observation?page=2", outcome=True),
    )
    responses.get(f"{BASE}/Observation?page=2", json=bundle("c"))
    result = client().get("Observation?patient=p1", deadline_seconds=2)
    assert result.outcome is Outcome.COMPLETE
    assert ids(result) == ["a", "b", "c"]
    assert result.pages == 2


@responses.activate
def test_a_relative_next_link_is_resolved_against_the_base() -> None:
    responses.get(f"{BASE}/Observation", json=bundle("a", next_url="Observation?page=2"))
    responses.get(f"{BASE}/Observation?page=2", json=bundle("b"))
    assert ids(client().get("Observation", deadline_seconds=2)) == ["a", "b"]


@responses.activate
def test_paging_stops_at_the_page_limit() -> None:
    for page in range(1, 10):
        responses.get(
            f"{BASE}/Observation?page={page}",
            json=bundle(str(page), next_url=f"{BASE}/Observation?page={page + 1}"),
        )
    result = client(max_pages=3).get("Observation?page=1", deadline_seconds=2)
    assert result.outcome is Outcome.TRUNCATED and result.usable
    assert ids(result) == ["1", "2", "3"]
    assert "3 pages" in (result.reason or "")


@responses.activate
def test_a_paging_loop_stops() -> None:
    responses.get(f"{BASE}/Observation", json=bundle("a", next_url=f"{BASE}/Observation"))
    result = client().get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.TRUNCATED
    assert len(responses.calls) == 1


@responses.activate
def test_a_next_link_to_another_host_is_refused_and_the_token_not_sent_there() -> None:
    responses.get(
        f"{BASE}/Observation",
        json=bundle("a", next_url="https://evil.example/fhir/Observation?p=2"),
    )
    result = client().get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.PARTIAL and not result.usable
    assert ids(result) == ["a"]
    assert result.reason == "next link to another host refused"
    assert result.fault == "link_refused"
    assert len(responses.calls) == 1


@pytest.mark.parametrize(
    ("status", "reason", "fault"),
    [
        (400, "HTTP 400 (bad request)", "http_4xx"),
        (401, "HTTP 401 (unauthorized)", "unauthorized"),
        (403, "HTTP 403 (forbidden)", "unauthorized"),
        (404, "HTTP 404 (not found)", "http_4xx"),
        (500, "HTTP 500 (server error)", "http_5xx"),
        (302, "HTTP 302 (error)", "other"),
    ],
)
@responses.activate
def test_an_http_error_is_a_failed_result(status: int, reason: str, fault: str) -> None:
    responses.get(f"{BASE}/Observation", status=status, json={"resourceType": "OperationOutcome"})
    result = client().get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.FAILED
    assert (result.reason, result.fault) == (reason, fault)
    assert result.resources == ()


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "malformed JSON"),
        ("[1, 2]", "not a FHIR resource"),
        ('{"resourceType": "OperationOutcome"}', "OperationOutcome instead of data"),
        ('{"resourceType": "Bundle", "entry": {}}', "Bundle.entry is not a list"),
    ],
)
@responses.activate
def test_a_body_that_is_not_fhir_is_a_failed_result(body: str, reason: str) -> None:
    responses.get(f"{BASE}/Observation", body=body)
    result = client().get("Observation", deadline_seconds=2)
    assert (result.outcome, result.reason) == (Outcome.FAILED, reason)
    assert result.fault == "bad_response"


@pytest.mark.parametrize(
    ("error", "reason", "fault"),
    [
        (requests.exceptions.ConnectTimeout(), "timeout", "timeout"),
        (requests.exceptions.ReadTimeout(), "timeout", "timeout"),
        (requests.exceptions.ConnectionError(), "connection failed", "connection_failed"),
        (requests.exceptions.TooManyRedirects(), "request failed (TooManyRedirects)", "other"),
    ],
)
@responses.activate
def test_network_errors_are_failed_results(error: Exception, reason: str, fault: str) -> None:
    responses.get(f"{BASE}/Observation", body=error)
    result = client().get("Observation", deadline_seconds=2)
    assert (result.outcome, result.reason, result.fault) == (Outcome.FAILED, reason, fault)


@responses.activate
def test_an_error_after_the_first_page_keeps_what_was_read() -> None:
    responses.get(f"{BASE}/Observation", json=bundle("a", next_url=f"{BASE}/Observation?page=2"))
    responses.get(f"{BASE}/Observation?page=2", status=500)
    result = client().get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.PARTIAL
    assert ids(result) == ["a"]


@pytest.mark.parametrize("status", [429, 503])
@responses.activate
def test_429_and_503_are_retried_when_retry_after_fits(status: int) -> None:
    responses.get(f"{BASE}/Observation", status=status, headers={"Retry-After": "0"})
    responses.get(f"{BASE}/Observation", json=bundle("a"))
    result = client().get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.COMPLETE and ids(result) == ["a"]
    assert len(responses.calls) == 2


@responses.activate
def test_a_retry_after_beyond_the_deadline_is_not_waited_for() -> None:
    responses.get(f"{BASE}/Observation", status=429, headers={"Retry-After": "30"})
    started = time.monotonic()
    result = client().get("Observation", deadline_seconds=1)
    assert time.monotonic() - started < 0.5
    assert result.reason == "HTTP 429 (rate limited), no time to retry"
    assert result.fault == "rate_limited"


@responses.activate
def test_retries_are_bounded() -> None:
    responses.get(f"{BASE}/Observation", status=503, headers={"Retry-After": "0"})
    result = client(max_retries=2).get("Observation", deadline_seconds=2)
    assert result.outcome is Outcome.FAILED
    assert len(responses.calls) == 3


@responses.activate
def test_other_errors_are_not_retried() -> None:
    responses.get(f"{BASE}/Observation", status=500)
    client().get("Observation", deadline_seconds=2)
    assert len(responses.calls) == 1


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after("3") == 3.0
    assert _retry_after(None) == pytest.approx(0.2)
    assert _retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after("soon") == pytest.approx(0.2)


@responses.activate
def test_a_response_too_large_is_refused() -> None:
    responses.get(f"{BASE}/Observation", body=json.dumps(bundle(*[str(i) for i in range(500)])))
    result = client(max_response_bytes=1000).get("Observation", deadline_seconds=2)
    assert result.reason == "response too large"
    assert result.fault == "bad_response"


@responses.activate
def test_fetch_all_runs_queries_in_parallel_within_one_deadline() -> None:
    def slow(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        time.sleep(0.6)
        return 200, {}, json.dumps(bundle("slow"))

    responses.add_callback(responses.GET, f"{BASE}/Observation", callback=slow)
    responses.add_callback(responses.GET, f"{BASE}/Condition", callback=slow)
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    started = time.monotonic()
    results = client().fetch_all(
        {"obs": "Observation", "cond": "Condition", "patient": "Patient/p1"}, deadline_seconds=2
    )
    assert time.monotonic() - started < 1.1  # parallel, not 1.2 s in a row
    assert all(result.outcome is Outcome.COMPLETE for result in results.values())
    assert set(results) == {"obs", "cond", "patient"}


@responses.activate(assert_all_requests_are_fired=False)
def test_a_query_still_running_at_the_deadline_is_reported_as_failed() -> None:
    def very_slow(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        time.sleep(1.0)
        return 200, {}, json.dumps(bundle("late"))

    responses.add_callback(responses.GET, f"{BASE}/Observation", callback=very_slow)
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    started = time.monotonic()
    results = client().fetch_all(
        {"obs": "Observation", "patient": "Patient/p1"}, deadline_seconds=0.3
    )
    assert time.monotonic() - started < 0.9  # the slow query takes 1 s
    assert (results["obs"].outcome, results["obs"].reason) == (Outcome.FAILED, "deadline exceeded")
    assert results["obs"].fault == "timeout"
    assert results["patient"].usable


def test_an_empty_set_of_queries_gives_nothing() -> None:
    assert client().fetch_all({}, deadline_seconds=1) == {}


def test_queries_must_be_relative() -> None:
    result = client().get("https://evil.example/fhir/Patient/1", deadline_seconds=1)
    assert result.outcome is Outcome.FAILED
    assert result.reason == "query must be relative to the FHIR base URL"
    assert result.fault == "link_refused"


def test_the_base_url_must_be_absolute() -> None:
    with pytest.raises(ValueError, match="absolute"):
        FhirClient("ehr.example/fhir")


@responses.activate
def test_the_token_never_appears_in_repr_reasons_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    responses.get(f"{BASE}/Observation", status=401)
    responses.get(f"{BASE}/Condition", body=requests.exceptions.ConnectionError(f"Bearer {TOKEN}"))
    fhir = client()
    with caplog.at_level(logging.DEBUG):
        results = fhir.fetch_all({"a": "Observation", "b": "Condition"}, deadline_seconds=1)
    assert TOKEN not in repr(fhir)
    assert all(TOKEN not in (r.reason or "") for r in results.values())
    assert all(TOKEN not in record.getMessage() for record in caplog.records)
    assert all("patient" not in record.getMessage() for record in caplog.records)


def test_a_client_without_token_sends_no_authorization() -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        with FhirClient(BASE) as fhir:
            fhir.get("Patient/p1", deadline_seconds=1)
        assert "Authorization" not in mock.calls[0].request.headers


def test_every_fault_names_its_class() -> None:
    """Each `_Fault` in ehr/client.py gives its class as a literal from the fixed set, or as
    `_status_fault(status)`: callers and /metrics never read the reason's words."""
    raised = [
        node
        for node in ast.walk(ast.parse(inspect.getsource(client_module)))
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "_Fault"
    ]
    assert len(raised) >= 14
    for node in raised:
        fault = node.args[1]
        if isinstance(fault, ast.Call):
            assert getattr(fault.func, "id", None) == "_status_fault", ast.unparse(node)
        else:
            assert isinstance(fault, ast.Constant) and fault.value in FAULTS, ast.unparse(node)
    for status in (301, 400, 401, 403, 404, 429, 500, 503):
        assert client_module._status_fault(status) in FAULTS


# -- what the environment says about reaching the server --------------------------------------------


def test_the_proxy_and_ca_bundle_of_the_environment_are_honoured(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Read once per client, as requests would on every request: HTTPS_PROXY (unless NO_PROXY
    names the server) and REQUESTS_CA_BUNDLE."""
    bundle_file = tmp_path / "ca.pem"
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.hospital.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle_file))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = FhirClient("https://ehr.example.org/fhir")._session
    assert session.proxies.get("https") == "http://proxy.hospital.example:3128"
    assert session.verify == str(bundle_file)
    monkeypatch.setenv("NO_PROXY", "ehr.example.org")
    assert "https" not in FhirClient("https://ehr.example.org/fhir")._session.proxies


@responses.activate
def test_no_credentials_from_a_netrc_file_are_ever_sent(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """Without a token the client sends no Authorization at all: requests would otherwise add
    Basic credentials that ~/.netrc holds for the host."""
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine {BASE.split('/')[2].split(':')[0]} login alice password s3cret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    responses.get(f"{BASE}/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
    result = FhirClient(BASE).get("Patient/p1", deadline_seconds=2)
    assert result.usable
    assert "Authorization" not in responses.calls[0].request.headers
