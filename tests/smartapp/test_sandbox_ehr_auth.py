"""The sandbox SMART authorization server (sandbox/ehr_auth.py, on Authlib): codes single use,
redirect_uri checked, PKCE required, aud checked, the SMART launch context and an id_token."""

from __future__ import annotations

import secrets
import time
from typing import Any

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.ehr_auth import grants_read
from tests.smartapp.smart_helpers import (
    APP_BASE,
    CLIENT_ID,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    build_sandbox,
    make_key_file,
    query_of,
)

REDIRECT = f"{APP_BASE}/smart/callback"
VERIFIER = "v" * 20 + "erifier-0123456789-abcdefghijklmnop"
SCOPE = "launch openid fhirUser patient/Patient.r patient/Observation.rs offline_access"


@pytest.fixture
def ehr_client(sandbox: Sandbox) -> FlaskClient:
    return sandbox.app.test_client()


def authorize(client: FlaskClient, sandbox: Sandbox, **overrides: Any) -> Any:
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": REDIRECT,
        "scope": SCOPE,
        "state": "st-1",
        "aud": FHIR_BASE,
        "launch": sandbox.ehr.mint_launch(HARLAN, app_context='{"rule": "dexa-due"}'),
        "code_challenge": create_s256_code_challenge(VERIFIER),
        "code_challenge_method": "S256",
        "nonce": secrets.token_urlsafe(8),  # a nonce is used once
    }
    params.update(overrides)
    return client.get(
        "/auth/authorize", query_string={k: v for k, v in params.items() if v is not None}
    )


def code_from(response: Any) -> str:
    assert response.status_code == 302, response.get_data(as_text=True)
    query = query_of(response.headers["Location"])
    assert query["state"] == "st-1"
    return query["code"]


def exchange(client: FlaskClient, code: str, **overrides: Any) -> Any:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": CLIENT_ID,
        "code_verifier": VERIFIER,
    }
    form.update(overrides)
    return client.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def test_smart_configuration_advertises_pkce_s256_and_v2(ehr_client: FlaskClient) -> None:
    config = ehr_client.get("/fhir/.well-known/smart-configuration").json
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert {
        "launch-ehr",
        "permission-v2",
        "client-confidential-asymmetric",
        "sso-openid-connect",
    } <= set(config["capabilities"])
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]


def test_a_code_becomes_tokens_with_the_smart_launch_context(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    response = exchange(ehr_client, code_from(authorize(ehr_client, sandbox, nonce="n-known")))
    assert response.status_code == 200, response.json
    token = response.json
    assert token["token_type"] == "Bearer" and token["access_token"]
    assert token["patient"] == HARLAN and token["need_patient_banner"] is True
    assert token["appContext"] == '{"rule": "dexa-due"}'
    assert token["refresh_token"]  # offline_access
    assert token["scope"] == SCOPE
    keys = KeySet.import_key_set(ehr_client.get("/auth/jwks").json)
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    assert id_token.claims["iss"] == sandbox.ehr.issuer
    assert id_token.claims["aud"] == CLIENT_ID
    assert id_token.claims["nonce"] == "n-known"
    assert id_token.claims["fhirUser"] == f"{FHIR_BASE}/Practitioner/sandbox-clinician"
    assert id_token.claims["exp"] > time.time()


def test_no_refresh_token_without_offline_access(sandbox: Sandbox, ehr_client: FlaskClient) -> None:
    code = code_from(authorize(ehr_client, sandbox, scope="launch openid patient/Patient.r"))
    assert "refresh_token" not in exchange(ehr_client, code).json


def test_a_code_is_used_once_and_a_replay_revokes_its_tokens(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    code = code_from(authorize(ehr_client, sandbox))
    first = exchange(ehr_client, code)
    assert first.status_code == 200
    replay = exchange(ehr_client, code)
    assert replay.status_code == 400 and replay.json["error"] == "invalid_grant"
    assert sandbox.ehr.token_record(first.json["access_token"]).is_revoked()


def test_the_pkce_verifier_is_required_and_checked(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    missing = exchange(ehr_client, code_from(authorize(ehr_client, sandbox)), code_verifier=None)
    assert missing.status_code == 400 and missing.json["error"] == "invalid_request"
    wrong = exchange(ehr_client, code_from(authorize(ehr_client, sandbox)), code_verifier="w" * 50)
    assert wrong.status_code == 400 and wrong.json["error"] == "invalid_grant"


def test_a_public_client_must_use_pkce(sandbox: Sandbox, ehr_client: FlaskClient) -> None:
    code = code_from(
        authorize(ehr_client, sandbox, code_challenge=None, code_challenge_method=None)
    )
    response = exchange(ehr_client, code, code_verifier=None)
    assert response.status_code == 400 and "code_verifier" in response.json["error_description"]


def test_the_redirect_uri_is_checked_at_authorize_and_at_the_token_endpoint(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    unregistered = authorize(ehr_client, sandbox, redirect_uri="https://evil.example/cb")
    assert unregistered.status_code == 400  # never redirected to an unregistered URI
    assert "Location" not in unregistered.headers
    code = code_from(authorize(ehr_client, sandbox))
    other = exchange(ehr_client, code, redirect_uri=f"{APP_BASE}/elsewhere")
    assert other.status_code == 400 and other.json["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"aud": "https://other.example/fhir"}, "aud"),
        ({"launch": "unknown-launch"}, "launch"),
        ({"launch": None, "scope": "openid patient/Patient.r"}, "launch"),
    ],
)
def test_aud_and_launch_are_checked_and_errors_go_back_with_the_state(
    sandbox: Sandbox, ehr_client: FlaskClient, override: dict[str, Any], words: str
) -> None:
    response = authorize(ehr_client, sandbox, **override)
    assert response.status_code == 302
    query = query_of(response.headers["Location"])
    assert response.headers["Location"].startswith(REDIRECT)
    assert query["error"] == "invalid_request" and words in query["error_description"]
    assert query["state"] == "st-1" and "code" not in query


def test_a_standalone_launch_gets_the_sandbox_patient(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    code = code_from(
        authorize(ehr_client, sandbox, launch=None, scope="launch/patient openid patient/Patient.r")
    )
    assert exchange(ehr_client, code).json["patient"] == HARLAN


def test_refresh_tokens_rotate(sandbox: Sandbox, ehr_client: FlaskClient) -> None:
    first = exchange(ehr_client, code_from(authorize(ehr_client, sandbox))).json
    form = {
        "grant_type": "refresh_token",
        "refresh_token": first["refresh_token"],
        "client_id": CLIENT_ID,
    }
    second = ehr_client.post("/auth/token", data=form)
    assert second.status_code == 200
    assert second.json["access_token"] != first["access_token"]
    assert second.json["refresh_token"] != first["refresh_token"]
    assert second.json["patient"] == HARLAN
    again = ehr_client.post("/auth/token", data=form)
    assert again.status_code == 400 and again.json["error"] == "invalid_grant"


def test_a_confidential_client_must_sign_a_fresh_assertion(tmp_path: Any) -> None:
    from authlib.oauth2.rfc7523 import private_key_jwt_sign

    from ehr.keys import load_signing_key

    key_file = make_key_file(tmp_path)
    sandbox = build_sandbox(key_file=key_file)
    client = sandbox.app.test_client()
    signing = load_signing_key(key_file)

    def assertion(**claims: Any) -> str:
        return private_key_jwt_sign(
            signing.key,
            CLIENT_ID,
            sandbox.ehr.token_url,
            alg="ES384",
            claims=claims or None,
            header={"kid": signing.kid},
        )

    no_assertion = exchange(client, code_from(authorize(client, sandbox)))
    assert no_assertion.status_code in (400, 401) and no_assertion.json["error"] == "invalid_client"
    signed = assertion(jti="j-1", exp=int(time.time()) + 120)
    assertion_form = {
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": signed,
        "client_id": None,
    }
    ok = exchange(client, code_from(authorize(client, sandbox)), **assertion_form)
    assert ok.status_code == 200, ok.json
    replayed = exchange(client, code_from(authorize(client, sandbox)), **assertion_form)
    assert replayed.json["error"] == "invalid_client"  # jti used before
    long_lived = assertion(jti="j-2", exp=int(time.time()) + 3600)
    too_long = exchange(
        client,
        code_from(authorize(client, sandbox)),
        **{**assertion_form, "client_assertion": long_lived},
    )
    assert too_long.json["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("scope", "resource", "search", "granted"),
    [
        ("patient/Observation.rs", "Observation", True, True),
        ("patient/Observation.r", "Observation", True, False),
        ("patient/Observation.r", "Observation", False, True),
        ("patient/Observation.read", "Observation", True, True),
        ("patient/*.read", "Condition", True, True),
        ("patient/*.cruds", "Condition", True, True),
        ("patient/Observation.rs?category=laboratory", "Observation", True, True),
        ("patient/Patient.r", "Observation", False, False),
        ("system/Observation.rs", "Observation", True, False),
        ("patient/Observation.write", "Observation", False, False),
    ],
)
def test_smart_scopes_are_read_as_v1_or_v2(
    scope: str, resource: str, search: bool, granted: bool
) -> None:
    assert grants_read(scope, resource, search=search) is granted


def test_the_fhir_stub_requires_the_sandbox_token_for_that_patient(
    sandbox: Sandbox, ehr_client: FlaskClient
) -> None:
    token = exchange(ehr_client, code_from(authorize(ehr_client, sandbox))).json["access_token"]
    assert ehr_client.get(f"/fhir/Patient/{HARLAN}").status_code == 401
    bearer = {"Authorization": f"Bearer {token}"}
    assert ehr_client.get(f"/fhir/Patient/{HARLAN}", headers=bearer).json["id"] == HARLAN
    assert ehr_client.get("/fhir/Patient/someone-else", headers=bearer).status_code == 403
    assert (
        ehr_client.get(
            "/fhir/Condition", query_string={"patient": HARLAN}, headers=bearer
        ).status_code
        == 403
    )
    page = ehr_client.get(
        "/fhir/Observation", query_string={"patient": HARLAN, "_count": 100}, headers=bearer
    ).json
    assert page["resourceType"] == "Bundle" and len(page["entry"]) == 4  # paged
    assert page["link"][-1]["relation"] == "next"


def test_the_ehr_launch_button_only_opens_registered_apps(ehr_client: FlaskClient) -> None:
    good = ehr_client.get(
        "/ehr/launch", query_string={"patient": HARLAN, "app": f"{APP_BASE}/launch.html"}
    )
    assert good.status_code == 302
    query = query_of(good.headers["Location"])
    assert query["iss"] == FHIR_BASE and query["launch"]
    assert (
        ehr_client.get(
            "/ehr/launch", query_string={"app": "https://evil.example/launch"}
        ).status_code
        == 400
    )
