"""`anastrozole-cds load` against a mocked FHIR server: one transaction per patient."""

from __future__ import annotations

import json

import pytest
import requests
import responses
from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.ehr_client import DEFAULT_USER
from sandbox.loader import load_patients, transaction_for
from sandbox.patients import patient, sandbox_practitioner

BASE = "https://fhir.example.org/r4"
TOKEN = "secret-token-1234"


def test_the_transaction_puts_each_resource_at_its_stable_url_with_moved_dates() -> None:
    item = patient("trt-low-e2")
    bundle = transaction_for(item, BASE, days=22)
    first = bundle["entry"][0]
    assert first["request"] == {"method": "PUT", "url": f"Patient/{item.patient_id}"}
    assert first["fullUrl"] == f"{BASE}/Patient/{item.patient_id}"
    written = item.bundle["entry"][1]["resource"].get("recordedDate")
    moved = bundle["entry"][1]["resource"].get("recordedDate")
    assert written and moved and moved > written


@responses.activate
def test_each_patient_is_one_post_to_the_base_with_the_bearer_token() -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    results = load_patients(
        BASE, [patient("trt-low-e2"), patient("onc-no-dexa")], days=0, token=TOKEN
    )
    assert [r.ok for r in results] == [True, True]
    assert len(responses.calls) == 2
    call = responses.calls[0].request
    assert call.headers["Authorization"] == f"Bearer {TOKEN}"
    assert call.headers["Content-Type"] == "application/fhir+json"
    assert json.loads(call.body)["type"] == "transaction"


@responses.activate
def test_a_refusal_says_what_the_operation_outcome_says() -> None:
    outcome = {"resourceType": "OperationOutcome",
               "issue": [{"severity": "error", "code": "invalid", "diagnostics": "bad status"}]}  # fmt: skip
    responses.post(BASE, status=400, json=outcome)
    [result] = load_patients(BASE, [patient("trt-low-e2")], days=0, token=TOKEN)
    assert result.error == "HTTP 400: bad status"


@responses.activate
def test_a_dead_server_stops_the_load_and_the_cli_fails_without_showing_the_token() -> None:
    responses.post(BASE, body=requests.ConnectionError("refused"))
    result = CliRunner().invoke(main, ["load", "--fhir-server", BASE, "--token", TOKEN])
    assert result.exit_code == 1
    assert "cannot connect" in result.output
    assert TOKEN not in result.output
    assert len(responses.calls) == 1


@responses.activate
def test_unauthorized_is_explained() -> None:
    responses.post(BASE, status=401)
    result = CliRunner().invoke(main, ["load", "--fhir-server", BASE, "trt-low-e2"])
    assert result.exit_code == 1
    assert "HTTP 401 (unauthorized: check --token)" in result.output


@responses.activate
def test_a_server_url_without_a_scheme_stops_the_load_with_one_clear_reason() -> None:
    result = CliRunner().invoke(main, ["load", "--fhir-server", "127.0.0.1:8090/fhir"])
    assert result.exit_code == 1
    reason = "the FHIR server URL must start with http:// or https:// (got '127.0.0.1:8090/fhir')"
    assert result.output.count(reason) == 1  # the first patient says it, the rest are not tried
    assert "InvalidSchema" not in result.output
    assert len(responses.calls) == 0


def test_an_unknown_patient_is_a_clear_error() -> None:
    result = CliRunner().invoke(main, ["load", "--fhir-server", BASE, "nobody"])
    assert result.exit_code == 1
    assert "no synthetic patient 'nobody'" in result.output


@pytest.mark.parametrize("args", [["--no-shift"], ["--as-of", "2026-11-01"]])
@responses.activate
def test_no_shift_and_as_of_the_reference_day_load_the_dates_as_written(args: list[str]) -> None:
    responses.post(BASE, json={"resourceType": "Bundle", "type": "transaction-response"})
    result = CliRunner().invoke(main, ["load", "--fhir-server", BASE, *args, "trt-low-e2"])
    assert result.exit_code == 0, result.output
    sent = json.loads(responses.calls[0].request.body)
    written = patient("trt-low-e2").bundle["entry"]
    assert [e["resource"] for e in sent["entry"]] == [
        *(e["resource"] for e in written),
        sandbox_practitioner(),
    ]


def test_every_load_puts_the_sandbox_clinician_a_provider_login_can_list() -> None:
    """smart-launcher-v2's provider login lists Practitioner?_sort=given; with none it stops."""
    for key in ("trt-low-e2", "onc-no-dexa"):
        clinician = transaction_for(patient(key), BASE, days=0)["entry"][-1]
        assert clinician["request"] == {"method": "PUT", "url": "Practitioner/sandbox-clinician"}
        assert clinician["resource"]["name"][0]["given"] == ["Sam"]
    assert DEFAULT_USER == "Practitioner/sandbox-clinician"


def test_listing_the_patients_needs_no_fhir_server() -> None:
    listed = CliRunner().invoke(main, ["load", "--list"])
    assert listed.exit_code == 0, listed.output
    assert "trt-low-e2" in listed.output
    refused = CliRunner().invoke(main, ["load", "trt-low-e2"])
    assert refused.exit_code == 2
    assert "--fhir-server" in refused.output
