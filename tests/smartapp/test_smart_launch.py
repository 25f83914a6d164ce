"""launch.html and the launch: issuer allowlist, discovery, PKCE, state, scopes, cookie."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import requests
import responses
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask import Flask
from flask.testing import FlaskClient

from sandbox.ehr_auth import capability_statement_for
from smartapp.tokens import launch_table
from tests.smartapp.smart_helpers import (
    APP_BASE,
    CLIENT_ID,
    FHIR_BASE,
    Sandbox,
    build_app,
    open_launch_html,
    query_of,
)

V2_RESOURCE_SCOPES = [
    "patient/Patient.r",
    "patient/Observation.rs",
    "patient/MedicationRequest.rs",
    "patient/Condition.rs",
    "patient/Procedure.rs",
    "patient/DiagnosticReport.rs",
]


def pending_launches(app: Flask) -> list[dict[str, object]]:
    engine = app.extensions["smartapp"].tokens.engine
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(launch_table.select())]


def test_launch_html_without_parameters_is_a_static_page_with_no_script(
    client: FlaskClient,
) -> None:
    response = client.get("/launch.html")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert 'action="smart/launch"' in page and 'name="iss"' in page
    assert "<script" not in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_the_top_level_launch_html_is_the_packaged_one_not_a_copy(client: FlaskClient) -> None:
    """One source: the page is package data (an installed wheel serves it); the project's
    top-level launch.html, which the design fixes, is a link to that file."""
    root = Path(__file__).resolve().parents[2]
    top_level = root / "launch.html"
    assert top_level.is_symlink()
    assert top_level.resolve() == (root / "smartapp" / "static" / "launch.html").resolve()
    served = client.get("/launch.html").get_data(as_text=True)
    assert served == (resources.files("smartapp") / "static" / "launch.html").read_text()


def test_ehr_launch_redirects_to_authorize_with_pkce_state_aud_and_v2_scopes(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "xyz123"})
    assert response.status_code == 302
    location = response.headers["Location"]
    assert location.startswith(f"{sandbox.ehr.issuer}/authorize?")
    query = query_of(location)
    assert query["response_type"] == "code"
    assert query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == f"{APP_BASE}/smart/callback"
    assert query["launch"] == "xyz123"
    assert query["aud"] == FHIR_BASE
    assert query["code_challenge_method"] == "S256"
    assert len(query["state"]) >= 32
    scopes = query["scope"].split()
    assert scopes[:3] == ["launch", "openid", "fhirUser"]
    assert scopes[3:9] == V2_RESOURCE_SCOPES and scopes[-1] == "online_access"
    (pending,) = pending_launches(app)
    assert pending["state"] == query["state"]
    assert create_s256_code_challenge(pending["code_verifier"]) == query["code_challenge"]
    assert query["nonce"] == pending["nonce"]


def test_each_launch_gets_its_own_state_and_verifier(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    states = {
        query_of(client.get("/smart/launch", query_string={"iss": FHIR_BASE}).headers["Location"])[
            "state"
        ]
        for _ in range(3)
    }
    assert len(states) == 3
    assert len({row["code_verifier"] for row in pending_launches(app)}) == 3


def test_standalone_launch_asks_for_a_patient_and_sends_no_launch(
    client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    response = open_launch_html(client, query_string={"iss": FHIR_BASE + "/"})
    query = query_of(response.headers["Location"])
    assert "launch" not in query
    assert query["scope"].split()[0] == "launch/patient"
    assert query["aud"] == FHIR_BASE


def test_launch_html_goes_to_the_default_issuer_when_one_is_configured(
    tmp_path: Path, ehr: responses.RequestsMock
) -> None:
    app = build_app(tmp_path, default_issuer=FHIR_BASE)
    response = open_launch_html(app.test_client())
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["aud"] == FHIR_BASE


def test_an_issuer_not_in_the_allowlist_gets_a_clear_page_and_no_redirect(
    client: FlaskClient,
) -> None:
    with responses.RequestsMock() as mock:  # any HTTP call would fail the test
        response = open_launch_html(
            client, query_string={"iss": "https://evil.example/fhir", "launch": "a"}
        )
        assert not mock.calls
    assert response.status_code == 403
    assert "Location" not in response.headers
    page = response.get_data(as_text=True)
    assert "This EHR is not registered with the app" in page
    assert "Set-Cookie" not in response.headers


def test_a_launch_without_issuer_or_default_says_so(client: FlaskClient) -> None:
    response = client.get("/smart/launch")
    assert response.status_code == 400
    assert "The app was not opened from an EHR" in response.get_data(as_text=True)


def test_older_servers_are_found_through_the_capability_statement_and_get_v1_scopes(
    client: FlaskClient, sandbox: Sandbox
) -> None:
    with responses.RequestsMock() as mock:
        mock.get(f"{FHIR_BASE}/.well-known/smart-configuration", status=404)
        mock.get(f"{FHIR_BASE}/metadata", json=capability_statement_for(sandbox.ehr))
        response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1"})
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(f"{sandbox.ehr.issuer}/authorize?")
    assert "patient/Observation.read" in query["scope"].split()
    assert "patient/Patient.read" in query["scope"].split()
    assert ".rs" not in query["scope"]


@pytest.mark.parametrize(
    ("capabilities", "expected"),
    [
        (["launch-ehr", "permission-v1"], "patient/Observation.read"),
        (["launch-ehr", "permission-v1", "permission-v2"], "patient/Observation.rs"),
        (["launch-ehr"], "patient/Observation.rs"),
    ],
)
def test_scopes_follow_the_permission_version_the_server_advertises(
    client: FlaskClient, sandbox: Sandbox, capabilities: list[str], expected: str
) -> None:
    config = sandbox.ehr.smart_configuration() | {"capabilities": capabilities}
    with responses.RequestsMock() as mock:
        mock.get(f"{FHIR_BASE}/.well-known/smart-configuration", json=config)
        response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1"})
    assert expected in query_of(response.headers["Location"])["scope"].split()


def test_a_server_without_pkce_s256_is_refused(client: FlaskClient, sandbox: Sandbox) -> None:
    config = sandbox.ehr.smart_configuration() | {"code_challenge_methods_supported": ["plain"]}
    with responses.RequestsMock() as mock:
        mock.get(f"{FHIR_BASE}/.well-known/smart-configuration", json=config)
        response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1"})
    assert response.status_code == 502
    assert "cannot be used safely" in response.get_data(as_text=True)


def test_an_unreachable_ehr_gets_a_page_not_a_stack_trace(client: FlaskClient) -> None:
    with responses.RequestsMock() as mock:
        mock.get(
            f"{FHIR_BASE}/.well-known/smart-configuration",
            body=requests.ConnectionError("refused"),
        )
        response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1"})
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert "sign-in service could not be reached" in page
    assert "Traceback" not in page


def test_discovery_is_cached_per_issuer(client: FlaskClient, sandbox: Sandbox) -> None:
    with responses.RequestsMock() as mock:
        mock.get(
            f"{FHIR_BASE}/.well-known/smart-configuration", json=sandbox.ehr.smart_configuration()
        )
        for _ in range(3):
            assert client.get("/smart/launch", query_string={"iss": FHIR_BASE}).status_code == 302
        assert len(mock.calls) == 1


def test_the_browser_cookie_is_httponly_lax_and_not_secure_over_http(
    client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l"})
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("anastrozole_smart=")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/smart" in cookie
    assert "Secure" not in cookie


def test_framed_by_the_ehr_over_https_the_cookie_is_samesite_none_and_secure(
    tmp_path: Path, ehr: responses.RequestsMock
) -> None:
    app = build_app(tmp_path, redirect_url="https://app.example/smart/callback")
    response = open_launch_html(
        app.test_client(),
        query_string={"iss": FHIR_BASE, "launch": "l"},
        headers={"Sec-Fetch-Dest": "iframe"},
    )
    cookie = response.headers["Set-Cookie"]
    assert "SameSite=None" in cookie and "Secure" in cookie and "HttpOnly" in cookie
    unframed = open_launch_html(app.test_client(), query_string={"iss": FHIR_BASE, "launch": "l"})
    assert "SameSite=Lax" in unframed.headers["Set-Cookie"]
    assert "Secure" in unframed.headers["Set-Cookie"]
    assert (
        query_of(response.headers["Location"])["redirect_uri"]
        == "https://app.example/smart/callback"
    )


def test_the_ehr_may_frame_the_app_and_nobody_else(client: FlaskClient) -> None:
    policy = client.get("/launch.html").headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' http://127.0.0.1:9999" in policy
    assert "X-Frame-Options" not in client.get("/launch.html").headers


def test_an_allowed_issuer_written_in_capitals_is_the_same_issuer(
    tmp_path: Path, ehr: responses.RequestsMock
) -> None:
    """Scheme and host compare without case (RFC 3986, 6.2.2.1), the path exactly."""
    shouted = FHIR_BASE.replace("http://", "HTTP://") + "/"
    app = build_app(tmp_path, allowed_issuers=(shouted,), default_issuer=shouted)
    assert app.extensions["smartapp"].smart.allowed_issuers == (FHIR_BASE,)
    client = app.test_client()
    response = client.get("/smart/launch", query_string={"iss": shouted, "launch": "l"})
    assert response.status_code == 302
    other_path = client.get("/smart/launch", query_string={"iss": FHIR_BASE.upper(), "launch": "l"})
    assert other_path.status_code == 403
