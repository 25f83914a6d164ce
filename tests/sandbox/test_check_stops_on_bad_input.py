"""`anastrozole-cds check` stops with one clear line, before calling the service, when what it
was given cannot work: a patient the FHIR server does not have, a URL without http(s)://, a
FHIR server that is down, a --select that names no draft."""

from __future__ import annotations

import pytest
import requests
import responses
from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.check import CheckRequest, run_check
from sandbox.ehr_client import SandboxError, hook_context, service_url

FHIR = "https://fhir.example.org/r4"
DRAFT = {"resourceType": "MedicationRequest", "id": "draft-tamoxifen", "status": "draft"}


def _check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *args])
    return result.exit_code, result.output


@responses.activate
def test_a_patient_the_server_does_not_have_stops_check_naming_the_id() -> None:
    responses.get(f"{FHIR}/Patient/nobody", status=404)
    code, output = _check("--fhir-server", FHIR, "--patient", "nobody")
    assert code == 1
    assert f"Patient/nobody not found on {FHIR}" in output
    assert f"anastrozole-cds load --fhir-server {FHIR} --list" in output
    assert "card" not in output
    # nothing prefetched, no service called (calls are filtered by server: a query another
    # test left running past its deadline may land here too)
    ours = [c.request.url for c in responses.calls if c.request.url.startswith(FHIR)]
    assert ours == [f"{FHIR}/Patient/nobody"]


@responses.activate
def test_a_synthetic_patients_key_given_as_the_id_is_told_its_patient_id() -> None:
    responses.get(f"{FHIR}/Patient/trt-low-e2", status=404)
    with pytest.raises(SandboxError) as raised:
        run_check(CheckRequest(fhir_server=FHIR, patient_id="trt-low-e2"))
    assert "its Patient id is trt-low-e2-pt-harlan-0417" in str(raised.value)


@responses.activate
def test_a_fhir_server_that_is_down_is_one_error_not_a_warning_per_query() -> None:
    responses.get(f"{FHIR}/Patient/p1", body=requests.ConnectionError("refused"))
    code, output = _check("--fhir-server", FHIR, "--patient", "p1")
    assert code == 1
    assert output.strip() == f"Error: cannot connect to {FHIR}: is the FHIR server running?"


@responses.activate
def test_a_read_the_server_refuses_points_to_the_token() -> None:
    responses.get(f"{FHIR}/Patient/p1", status=401)
    code, output = _check("--fhir-server", FHIR, "--patient", "p1")
    assert code == 1
    assert "HTTP 401" in output
    assert "--token" in output


@pytest.mark.parametrize(
    ("option", "url", "words"),
    [
        ("--fhir-server", "127.0.0.1:8090/fhir", "the FHIR server URL (--fhir-server)"),
        ("--service", "127.0.0.1:8082", "the service URL (--service)"),
    ],
)
@responses.activate
def test_a_url_without_a_scheme_is_one_clear_line(option: str, url: str, words: str) -> None:
    fhir = url if option == "--fhir-server" else FHIR
    args = ["--fhir-server", fhir, "--patient", "p1"]
    if option == "--service":
        args += ["--service", url]
    code, output = _check(*args)
    assert code == 1
    assert output.strip() == (f"Error: {words} must start with http:// or https:// (got {url!r})")
    assert len(responses.calls) == 0


def test_the_discovery_url_is_taken_as_the_services_base() -> None:
    expected = "http://127.0.0.1:8082/cds-services/anastrozole-monitor-order-select"
    assert service_url("http://127.0.0.1:8082/cds-services", "order-select") == expected
    assert service_url("http://127.0.0.1:8082/cds-services/", "order-select") == expected


def test_a_selection_that_names_no_draft_is_refused_with_the_drafts_named() -> None:
    with pytest.raises(SandboxError) as raised:
        hook_context(
            "order-select", "p1", draft_orders=[DRAFT], selections=["MedicationRequest/wrong-id"]
        )
    assert str(raised.value) == (
        "--select MedicationRequest/wrong-id names no draft order; "
        "the drafts are: MedicationRequest/draft-tamoxifen"
    )
    context = hook_context(
        "order-select", "p1", draft_orders=[DRAFT], selections=["MedicationRequest/draft-tamoxifen"]
    )
    assert context["selections"] == ["MedicationRequest/draft-tamoxifen"]
