"""The callback: state, PKCE verifier, token exchange (public and private_key_jwt), id_token."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from smartapp.tokens import PendingLaunch, browser_hash, launch_table, session_table, utc_now
from tests.smartapp.smart_helpers import (
    APP_BASE,
    CLIENT_ID,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    launch_and_sign_in,
    make_key_file,
    open_launch_html,
    query_of,
)

TOKEN_URL = "http://127.0.0.1:9999/auth/token"
JWKS_URL = "http://127.0.0.1:9999/auth/jwks"
ACCESS_TOKEN = "at-SECRET-0123456789"
REFRESH_TOKEN = "rt-SECRET-9876543210"


def start(client: FlaskClient, **query: str) -> dict[str, str]:
    """A launch; the authorize request's parameters."""
    response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1", **query})
    assert response.status_code == 302
    return query_of(response.headers["Location"])


def sessions(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["smartapp"].tokens.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(session_table.select())]


def assert_no_secrets(text: str) -> None:
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, "Traceback"):
        assert secret not in text


# -- state and PKCE --------------------------------------------------------------------------


def test_a_callback_with_an_unknown_state_is_refused_without_calling_the_ehr(
    client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    start(client)
    calls = len(ehr.calls)
    response = client.get("/smart/callback", query_string={"state": "forged", "code": "c"})
    assert response.status_code == 400
    assert "could not be matched" in response.get_data(as_text=True)
    assert len(ehr.calls) == calls  # no token request


def test_a_callback_without_state_is_refused(
    client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    start(client)
    assert client.get("/smart/callback", query_string={"code": "c"}).status_code == 400


def test_a_callback_in_another_browser_is_refused(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    state = start(client)["state"]
    with app.test_client() as other_browser:
        response = other_browser.get("/smart/callback", query_string={"state": state, "code": "c"})
    assert response.status_code == 400
    assert "could not be matched" in response.get_data(as_text=True)


def test_a_callback_is_used_once(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    authorize = start(client, launch=sandbox.ehr.mint_launch(HARLAN))
    redirect = sandbox.app.test_client().get("/auth/authorize", query_string=authorize)
    callback = redirect.headers["Location"].removeprefix(APP_BASE)
    assert client.get(callback).status_code == 303
    replay = client.get(callback)
    assert replay.status_code == 400


def test_an_expired_launch_is_refused(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    state = start(client)["state"]
    engine = app.extensions["smartapp"].tokens.engine
    with engine.begin() as connection:
        connection.execute(
            launch_table.update().values(
                expires_at=(utc_now() - timedelta(minutes=1)).replace(tzinfo=None)
            )
        )
    assert (
        client.get("/smart/callback", query_string={"state": state, "code": "c"}).status_code == 400
    )


def test_a_launch_without_its_pkce_verifier_is_not_completed(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    start(client)
    cookie = client.get_cookie("anastrozole_smart", path="/smart")
    assert cookie is not None
    app.extensions["smartapp"].tokens.save_launch(
        PendingLaunch(
            state="s-no-verifier",
            browser=browser_hash(cookie.value),
            iss=FHIR_BASE,
            launch="l1",
            code_verifier=None,
            nonce="n",
            redirect_uri=f"{APP_BASE}/smart/callback",
            token_endpoint=TOKEN_URL,
            issuer=None,
            jwks_uri=None,
            framed=False,
            expires_at=utc_now() + timedelta(minutes=5),
        )
    )
    calls = len(ehr.calls)
    response = client.get("/smart/callback", query_string={"state": "s-no-verifier", "code": "c"})
    assert response.status_code == 400
    assert "could not be completed safely" in response.get_data(as_text=True)
    assert len(ehr.calls) == calls


def test_the_ehr_refusing_access_is_said_plainly(
    client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    state = start(client)["state"]
    response = client.get(
        "/smart/callback", query_string={"state": state, "error": "access_denied"}
    )
    assert response.status_code == 403
    assert "did not give the app access" in response.get_data(as_text=True)


# -- the token exchange ------------------------------------------------------------------------


def fake_token_endpoint(mock: responses.RequestsMock, sandbox: Sandbox, **response: Any) -> None:
    mock.get(f"{FHIR_BASE}/.well-known/smart-configuration", json=sandbox.ehr.smart_configuration())
    mock.post(TOKEN_URL, **response)


def test_the_code_is_exchanged_with_the_pkce_verifier_as_a_public_client(
    app: Flask, client: FlaskClient, sandbox: Sandbox
) -> None:
    with responses.RequestsMock() as mock:
        fake_token_endpoint(
            mock,
            sandbox,
            json={
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": 300,
                "scope": "launch",
                "patient": HARLAN,
            },
        )
        state = start(client)["state"]
        response = client.get("/smart/callback", query_string={"state": state, "code": "the-code"})
        body = parse_qs(mock.calls[-1].request.body)
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/smart/app/")
    (pending_verifier,) = body["code_verifier"]
    assert len(pending_verifier) >= 43
    assert body["grant_type"] == ["authorization_code"]
    assert body["code"] == ["the-code"]
    assert body["client_id"] == [CLIENT_ID]
    assert body["redirect_uri"] == [f"{APP_BASE}/smart/callback"]
    assert "client_assertion" not in body
    (stored,) = sessions(app)
    assert stored["patient"] == HARLAN
    assert ACCESS_TOKEN not in stored["access_token"]  # sealed at rest
    cipher = app.extensions["smartapp"].tokens.cipher
    assert cipher.open(stored["access_token"], handle=stored["handle"]) == ACCESS_TOKEN


@pytest.mark.parametrize(
    ("token_response", "detail"),
    [
        (
            {"status": 400, "json": {"error": "invalid_grant", "error_description": "code used"}},
            "invalid_grant",
        ),
        ({"status": 401, "json": {"error": "invalid_client"}}, "invalid_client"),
        ({"status": 500, "body": "boom"}, "HTTP 500"),
        ({"status": 503, "body": "<html>maintenance</html>"}, "HTTP 503"),
        ({"body": requests.ConnectionError("refused")}, "could not be reached"),
        ({"body": requests.ReadTimeout("slow")}, "did not answer in time"),
        ({"json": {"token_type": "Bearer"}}, "no access token"),
    ],
)
def test_token_endpoint_errors_give_a_page_and_no_session(
    app: Flask, client: FlaskClient, sandbox: Sandbox, token_response: dict[str, Any], detail: str
) -> None:
    with responses.RequestsMock() as mock:
        fake_token_endpoint(mock, sandbox, **token_response)
        state = start(client)["state"]
        response = client.get("/smart/callback", query_string={"state": state, "code": "the-code"})
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert "The EHR did not complete the sign-in" in page and detail in page
    assert "the-code" not in page and "Traceback" not in page
    assert sessions(app) == []


def test_a_token_response_without_a_patient_is_refused(
    app: Flask, client: FlaskClient, sandbox: Sandbox
) -> None:
    with responses.RequestsMock() as mock:
        fake_token_endpoint(
            mock, sandbox, json={"access_token": ACCESS_TOKEN, "token_type": "Bearer"}
        )
        state = start(client)["state"]
        response = client.get("/smart/callback", query_string={"state": state, "code": "c"})
    assert response.status_code == 400
    assert "No patient was selected" in response.get_data(as_text=True)
    assert_no_secrets(response.get_data(as_text=True))
    assert sessions(app) == []


def test_tokens_stay_on_the_server_and_the_cookie_is_opaque(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    launch_and_sign_in(client, sandbox)
    (stored,) = sessions(app)
    cookie = client.get_cookie("anastrozole_smart", path="/smart")
    assert cookie is not None
    assert (
        stored["access_token"] not in cookie.value and stored["refresh_token"] not in cookie.value
    )
    assert stored["browser"] != cookie.value  # stored hashed
    assert len(cookie.value) >= 40


def test_the_launch_context_is_read_from_the_token_response(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    launch_and_sign_in(
        client,
        sandbox,
        encounter="enc-9",
        need_patient_banner=False,
        smart_style_url="http://127.0.0.1:9999/style.json",
        fhir_context=[{"reference": "MedicationRequest/mr-harlan-anastrozole"}],
        app_context='{"rule": "dexa-due"}',
    )
    (stored,) = sessions(app)
    assert stored["patient"] == HARLAN
    assert stored["encounter"] == "enc-9"
    assert stored["need_patient_banner"] is False
    assert stored["smart_style_url"] == "http://127.0.0.1:9999/style.json"
    assert stored["fhir_context"] == [{"reference": "MedicationRequest/mr-harlan-anastrozole"}]
    assert stored["app_context"] == '{"rule": "dexa-due"}'
    assert stored["fhir_user"] == f"{FHIR_BASE}/Practitioner/sandbox-clinician"  # from the id_token
    assert stored["refresh_token"]  # offline_access


# -- confidential asymmetric client --------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_confidential_client_signs_in_with_private_key_jwt(tmp_path: Path, alg: str) -> None:
    key_file = make_key_file(tmp_path, alg)
    sandbox = build_sandbox(key_file=key_file)  # the sandbox verifies the assertion (Authlib)
    app = build_app(tmp_path, client_auth="private_key_jwt", private_key_file=key_file)
    client = app.test_client()
    with bridged(sandbox) as mock:
        target = launch_and_sign_in(client, sandbox)
        token_call = next(c for c in mock.calls if c.request.url == sandbox.ehr.token_url)
        assert client.get(target).status_code == 200
    body = parse_qs(token_call.request.body)
    assert body["client_assertion_type"] == [
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    ]
    (assertion,) = body["client_assertion"]
    public = KeySet.import_key_set(app.test_client().get("/smart/jwks.json").json)
    token = jwt.decode(assertion, public, algorithms=[alg])
    assert token.header["alg"] == alg and token.header["typ"] == "JWT"
    assert token.header["kid"] == public.keys[0].kid
    assert token.claims["iss"] == token.claims["sub"] == CLIENT_ID
    assert token.claims["aud"] == sandbox.ehr.token_url
    assert token.claims["jti"]
    assert token.claims["exp"] <= time.time() + 300


def test_the_sandbox_refuses_a_confidential_client_that_signs_with_another_key(
    tmp_path: Path,
) -> None:
    registered = make_key_file(tmp_path / "registered")
    sandbox = build_sandbox(key_file=registered)
    app = build_app(
        tmp_path, client_auth="private_key_jwt", private_key_file=make_key_file(tmp_path / "other")
    )
    client = app.test_client()
    with bridged(sandbox):
        authorize = start(client, launch=sandbox.ehr.mint_launch(HARLAN))
        redirect = sandbox.app.test_client().get("/auth/authorize", query_string=authorize)
        response = client.get(redirect.headers["Location"].removeprefix(APP_BASE))
    assert response.status_code == 502
    assert "invalid_client" in response.get_data(as_text=True)


# -- id_token -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer_key() -> RSAKey:
    key = RSAKey.generate_key(2048, private=True)
    key.ensure_kid()
    return key


def id_token(key: RSAKey, sent_nonce: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {
        "iss": "http://127.0.0.1:9999/auth",
        "aud": CLIENT_ID,
        "sub": "dr-who",
        "iat": now,
        "exp": now + 300,
        "nonce": sent_nonce,
        "fhirUser": f"{FHIR_BASE}/Practitioner/dr-who",
    }
    payload.update(claims)
    return jwt.encode({"alg": "RS256", "kid": key.kid}, payload, key, algorithms=["RS256"])


@pytest.mark.parametrize(
    ("claims", "ok"),
    [
        ({}, True),
        ({"aud": "someone-else"}, False),
        ({"iss": "http://127.0.0.1:9999/other"}, False),
        ({"exp": int(time.time()) - 600}, False),
        ({"nonce": "not-ours"}, False),
    ],
)
def test_the_id_token_is_checked_for_signature_issuer_audience_expiry_and_nonce(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    issuer_key: RSAKey,
    claims: dict[str, Any],
    ok: bool,
) -> None:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            f"{FHIR_BASE}/.well-known/smart-configuration", json=sandbox.ehr.smart_configuration()
        )
        mock.get(JWKS_URL, json={"keys": [issuer_key.as_dict(private=False)]})
        query = start(client)
        token = id_token(issuer_key, query["nonce"], **claims)
        mock.post(
            TOKEN_URL,
            json={
                "access_token": ACCESS_TOKEN,
                "token_type": "Bearer",
                "patient": HARLAN,
                "id_token": token,
            },
        )
        response = client.get(
            "/smart/callback", query_string={"state": query["state"], "code": "c"}
        )
    if ok:
        assert response.status_code == 303
        assert sessions(app)[0]["fhir_user"] == f"{FHIR_BASE}/Practitioner/dr-who"
    else:
        assert response.status_code == 401
        assert "Your identity could not be confirmed" in response.get_data(as_text=True)
        assert sessions(app) == []


def test_an_id_token_signed_by_another_key_is_refused(
    app: Flask, client: FlaskClient, sandbox: Sandbox, issuer_key: RSAKey
) -> None:
    impostor = RSAKey.generate_key(2048, private=True)
    impostor.ensure_kid()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            f"{FHIR_BASE}/.well-known/smart-configuration", json=sandbox.ehr.smart_configuration()
        )
        mock.get(JWKS_URL, json={"keys": [issuer_key.as_dict(private=False)]})
        query = start(client)
        forged = id_token(impostor, query["nonce"])
        mock.post(
            TOKEN_URL, json={"access_token": ACCESS_TOKEN, "patient": HARLAN, "id_token": forged}
        )
        response = client.get(
            "/smart/callback", query_string={"state": query["state"], "code": "c"}
        )
    assert response.status_code == 401
    assert_no_secrets(response.get_data(as_text=True))
    assert forged not in response.get_data(as_text=True)
