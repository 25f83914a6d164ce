"""SSRF: the service sends a request (and the EHR's token) only to a FHIR server the calling
issuer may name; a server registered for another issuer gets nothing, and a redirect from an
allowed server to another host is not followed."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import ISSUER, PATIENT_VIEW, Keys, call, hook_body, trt_man_chart
from tests.faults.fault_fhir_server import Fault, FaultyFhirServer

OTHER_ISSUER = "https://other-ehr.example.org"
TOKEN = "ssrf-suite-token-93be11"


@pytest.fixture
def servers() -> Iterator[tuple[FaultyFhirServer, FaultyFhirServer]]:
    ours, theirs = FaultyFhirServer(trt_man_chart()).start(), FaultyFhirServer([]).start()
    yield ours, theirs
    ours.stop()
    theirs.stop()


@pytest.fixture
def client(
    servers: tuple[FaultyFhirServer, FaultyFhirServer],
    keys: Keys,
    make_settings: Callable[..., ProductSettings],
) -> FlaskClient:
    ours, theirs = servers
    jwks = str(keys.jwks_file)
    settings = make_settings(
        issuers=[
            {"iss": ISSUER, "jwks_file": jwks, "fhir_servers": [ours.base_url]},
            {"iss": OTHER_ISSUER, "jwks_file": jwks, "fhir_servers": [theirs.base_url]},
        ]
    )
    return create_app(settings).test_client()


def body_for(server: str) -> dict[str, object]:
    body = hook_body()
    body["fhirServer"] = server
    body["fhirAuthorization"] = {
        "access_token": TOKEN,
        "token_type": "Bearer",
        "scope": "patient/*.read",
    }
    return body


@pytest.mark.parametrize(
    "target",
    ["another issuer's server", "an unlisted path on our host", "an unlisted server"],
)
def test_a_fhir_server_not_allowed_for_the_issuer_gets_no_request_and_no_token(
    client: FlaskClient,
    keys: Keys,
    servers: tuple[FaultyFhirServer, FaultyFhirServer],
    target: str,
) -> None:
    ours, theirs = servers
    unlisted = FaultyFhirServer([]).start()
    try:
        url = {
            "another issuer's server": theirs.base_url,
            "an unlisted path on our host": f"{ours.origin}/admin",
            "an unlisted server": unlisted.base_url,
        }[target]
        response = call(client, keys, PATIENT_VIEW, body_for(url))
    finally:
        unlisted.stop()
    assert response.status_code == 412
    assert "not registered" in response.json["message"]
    assert ours.seen == [] and theirs.seen == [] and unlisted.seen == []


def test_the_same_server_is_used_for_the_issuer_it_is_registered_for(
    client: FlaskClient, keys: Keys, servers: tuple[FaultyFhirServer, FaultyFhirServer]
) -> None:
    ours, _ = servers
    response = call(client, keys, PATIENT_VIEW, body_for(ours.base_url))
    assert response.status_code == 200
    assert ours.seen and all(seen.authorization == f"Bearer {TOKEN}" for seen in ours.seen)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_to_another_host_does_not_carry_the_token(
    client: FlaskClient,
    keys: Keys,
    servers: tuple[FaultyFhirServer, FaultyFhirServer],
    status: int,
) -> None:
    ours, theirs = servers
    ours.fault = lambda path: (
        Fault(status=status, headers={"Location": f"{theirs.base_url}{path[len('/fhir') :]}"})
        if path.startswith("/fhir/Patient/")
        else None
    )
    response = call(client, keys, PATIENT_VIEW, body_for(ours.base_url))
    assert response.status_code == 412  # the patient could not be read: no guessing
    assert theirs.seen == []
    assert TOKEN not in response.get_data(as_text=True)
