"""The EHR may grant fewer scopes than the app asks for (SMART App Launch: "this can be
different from the scopes requested"). The page reads what was granted and names the rest;
only a refused token (401) is worth a refresh, never a refused scope (403)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
import responses
from flask.testing import FlaskClient

from sandbox.ehr_auth import SandboxClient
from smartapp.fetch import ChartQuery, granted
from tests.smartapp.smart_helpers import (
    CLIENT_ID,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    launch_and_sign_in,
)
from tests.smartapp.test_smart_session import refresh_calls


def withhold(sandbox: Sandbox, *resource_types: str) -> None:
    """The EHR grants every scope the app asks for but those on these resource types."""
    withheld = tuple(f"patient/{name}." for name in resource_types)

    class GrantsLess(SandboxClient):
        def get_allowed_scope(self, scope: str | None) -> str:
            return " ".join(item for item in (scope or "").split() if not item.startswith(withheld))

    registered = sandbox.ehr.clients[CLIENT_ID]
    values = {field.name: getattr(registered, field.name) for field in fields(registered)}
    sandbox.ehr.clients[CLIENT_ID] = GrantsLess(**values)


def fhir_paths(sandbox: Sandbox) -> list[str]:
    return [path.split("?", 1)[0] for path in sandbox.fhir.requests]


@pytest.mark.parametrize(
    ("resource_type", "label"),
    [("Procedure", "procedures (DXA scans)"), ("DiagnosticReport", "lab and DXA reports")],
)
def test_a_non_essential_type_not_granted_is_not_asked_for_and_is_named_as_a_gap(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    resource_type: str,
    label: str,
) -> None:
    withhold(sandbox, resource_type)
    target = launch_and_sign_in(client, sandbox)
    response = client.get(target)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert f"<li>{label}: not granted by the EHR</li>" in page
    assert not any(path.startswith(f"/fhir/{resource_type}") for path in fhir_paths(sandbox))
    assert refresh_calls(ehr, sandbox) == []


def test_a_403_on_a_non_essential_query_is_a_gap_not_a_denial(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.faults["/fhir/Procedure"] = 403
    response = client.get(target)
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "procedures (DXA scans) could not be read (HTTP 403 (forbidden))" in page
    assert refresh_calls(ehr, sandbox) == []


def test_a_403_on_essential_data_is_the_access_page_without_a_refresh(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.fhir.fail_with = 403
    response = client.get(target)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "The EHR did not let the app read this chart" in page and "HTTP 403" in page
    assert refresh_calls(ehr, sandbox) == []


def test_a_401_is_still_refreshed_once_then_the_access_page(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.fhir.fail_with = 401
    response = client.get(target)
    assert response.status_code == 403
    assert "HTTP 401" in response.get_data(as_text=True)
    assert len(refresh_calls(ehr, sandbox)) == 1


@pytest.mark.parametrize(
    ("withheld", "named"),
    [
        (("Observation",), "lab results (Observation)"),
        (("Patient", "Condition"), "the patient&#39;s demographics (Patient), the problem list"),
    ],
)
def test_an_essential_type_not_granted_is_named_and_nothing_is_read_or_refreshed(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    withheld: tuple[str, ...],
    named: str,
) -> None:
    withhold(sandbox, *withheld)
    target = launch_and_sign_in(client, sandbox)
    response = client.get(target)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert f"the EHR did not grant access to {named}" in page
    assert sandbox.fhir.requests == []
    assert refresh_calls(ehr, sandbox) == []


def test_an_extra_resource_configured_but_not_granted_is_named_as_a_gap(
    tmp_path: Path,
) -> None:
    sandbox = build_sandbox()
    withhold(sandbox, "ServiceRequest")
    app = build_app(tmp_path, extra_resources=("ServiceRequest",))
    with bridged(sandbox), app.test_client() as client:
        response = client.get(launch_and_sign_in(client, sandbox))
    assert response.status_code == 200
    assert "<li>open DXA and lab orders: not granted by the EHR</li>" in response.get_data(
        as_text=True
    )
    assert not any(path.startswith("/fhir/ServiceRequest") for path in fhir_paths(sandbox))


PATIENT_READ = ChartQuery("patient", "the patient", "Patient/1", True, "Patient", search=False)
LAB_SEARCH = ChartQuery("labs", "lab results", "Observation?patient=1", True, "Observation")


@pytest.mark.parametrize(
    ("scope", "query", "covered"),
    [
        ("", PATIENT_READ, True),  # no scope in the token response: try, and read the answer
        ("patient/Patient.r", PATIENT_READ, True),
        ("patient/Patient.rs", PATIENT_READ, True),
        ("user/Patient.cruds", PATIENT_READ, True),
        ("patient/Patient.read", PATIENT_READ, True),
        ("patient/*.read", PATIENT_READ, True),
        ("patient/Patient.*", PATIENT_READ, True),
        ("patient/Patient.write", PATIENT_READ, False),
        ("patient/Patient.c", PATIENT_READ, False),
        ("launch/patient openid fhirUser", PATIENT_READ, False),
        ("patient/Observation.rs", PATIENT_READ, False),
        ("patient/Observation.rs?category=laboratory", LAB_SEARCH, True),
        ("patient/Observation.r", LAB_SEARCH, False),
        ("patient/Observation.read", LAB_SEARCH, True),
    ],
)
def test_the_granted_scope_covers_a_query(scope: str, query: ChartQuery, covered: bool) -> None:
    assert granted(scope, query) is covered


@pytest.mark.parametrize(
    ("scope", "covered"),
    [
        ("patient/Observation.r patient/Observation.s", True),  # a grant split as .r and .s
        ("patient/Observation.s patient/Observation.r", True),
        ("patient/Observation.s", True),  # SMART 2.x: `s` is the search interaction
        ("patient/Observation.r", False),
        ("user/*.rs", True),
        ("patient/*.*", True),
    ],
)
def test_permissions_add_up_across_the_grant(scope: str, covered: bool) -> None:
    assert granted(scope, LAB_SEARCH) is covered
