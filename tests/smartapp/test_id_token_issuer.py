"""Where the id_token's keys come from when discovery names no OpenID issuer: an EHR known
only from its CapabilityStatement (SMART before 2.0), or a smart-configuration without
`issuer`/`jwks_uri`. SMART's "Steps for using an ID token": the id_token's own `iss`, then
`{iss}/.well-known/openid-configuration`, then its `jwks_uri`; the `iss` is trusted only on the
origin of the FHIR base or of the token endpoint."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request
from joserfc import jwt
from joserfc.jwk import RSAKey

from smartapp.tokens import session_table
from tests.smartapp.smart_helpers import (
    APP_BASE,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    launch_and_sign_in,
    open_launch_html,
)

SMART_CONFIGURATION = "/fhir/.well-known/smart-configuration"
OPENID_CONFIGURATION = "/auth/.well-known/openid-configuration"
SANDBOX_ISSUER = "http://127.0.0.1:9999/auth"


def rewrite_json(sandbox: Sandbox, path: str, change: Callable[[Any], Any]) -> None:
    """The sandbox EHR answers `path` with its JSON passed through `change`."""

    @sandbox.app.after_request
    def _rewrite(response: Response) -> Response:
        if request.path == path and response.status_code == 200:
            response.set_data(json.dumps(change(json.loads(response.get_data()))))
        return response


def resign_id_token(sandbox: Sandbox, key: RSAKey | None = None, **claims: Any) -> None:
    """The token response's id_token, with `claims` changed, signed with `key` (by default the
    sandbox's own key, published at its jwks_uri)."""
    signer = key or sandbox.ehr.id_token_key

    def change(body: dict[str, Any]) -> dict[str, Any]:
        token = jwt.decode(body["id_token"], sandbox.ehr.id_token_key)
        header = {"alg": "RS256", "kid": signer.kid}
        body["id_token"] = jwt.encode(header, {**token.claims, **claims}, signer)
        return body

    rewrite_json(sandbox, "/auth/token", change)


def capability_statement_only(sandbox: Sandbox) -> Sandbox:
    sandbox.faults[SMART_CONFIGURATION] = 404  # SMART before 2.0: only /metadata
    return sandbox


def without_openid_fields(sandbox: Sandbox) -> Sandbox:
    rewrite_json(
        sandbox,
        SMART_CONFIGURATION,
        lambda body: {k: v for k, v in body.items() if k not in ("issuer", "jwks_uri")},
    )
    return sandbox


def callback_of(app: Flask, sandbox: Sandbox) -> tuple[Any, list[str]]:
    """An EHR launch through to the callback: its response, and every URL the app requested."""
    client = app.test_client()
    with bridged(sandbox) as mock:
        started = open_launch_html(
            client, query_string={"iss": FHIR_BASE, "launch": sandbox.ehr.mint_launch(HARLAN)}
        )
        authorized = sandbox.app.test_client().get(
            started.headers["Location"].removeprefix(sandbox.ehr.base_url)
        )
        response = client.get(authorized.headers["Location"].removeprefix(APP_BASE))
        return response, [call.request.url for call in mock.calls]


def stored_fhir_user(app: Flask) -> str | None:
    with app.extensions["smartapp"].tokens.engine.connect() as connection:
        (row,) = connection.execute(session_table.select()).all()
    return str(row.fhir_user) if row.fhir_user else None


@pytest.mark.parametrize("discovered", [capability_statement_only, without_openid_fields])
def test_an_ehr_launch_signs_in_when_discovery_names_no_openid_issuer(
    tmp_path: Path, discovered: Callable[[Sandbox], Sandbox]
) -> None:
    sandbox = discovered(build_sandbox(scopes_version="v1"))
    app = build_app(tmp_path)
    client = app.test_client()
    with bridged(sandbox) as mock:
        target = launch_and_sign_in(client, sandbox)
        assert client.get(target).status_code == 200
        requested = [call.request.url for call in mock.calls]
    # the keys were found from the id_token's issuer, the EHR's auth server
    assert f"{SANDBOX_ISSUER}/.well-known/openid-configuration" in requested
    assert f"{SANDBOX_ISSUER}/jwks" in requested
    assert stored_fhir_user(app) == f"{FHIR_BASE}/Practitioner/sandbox-clinician"


def test_an_id_token_issuer_on_another_origin_is_refused_and_never_requested(
    tmp_path: Path,
) -> None:
    sandbox = capability_statement_only(build_sandbox())
    resign_id_token(sandbox, iss="http://issuer.example/auth")
    app = build_app(tmp_path)
    response, requested = callback_of(app, sandbox)
    assert response.status_code == 401
    assert "the id_token&#39;s issuer is not the EHR&#39;s sign-in service" in response.get_data(
        as_text=True
    )
    assert not any(url.startswith("http://issuer.example") for url in requested)


def test_an_id_token_issuer_on_the_same_host_but_another_port_is_refused(tmp_path: Path) -> None:
    sandbox = capability_statement_only(build_sandbox())
    resign_id_token(sandbox, iss="http://127.0.0.1:9998/auth")
    app = build_app(tmp_path)
    response, requested = callback_of(app, sandbox)
    assert response.status_code == 401
    assert not any(url.startswith("http://127.0.0.1:9998") for url in requested)


def test_an_openid_configuration_naming_another_issuer_is_refused(tmp_path: Path) -> None:
    sandbox = capability_statement_only(build_sandbox())
    rewrite_json(
        sandbox, OPENID_CONFIGURATION, lambda body: {**body, "issuer": "http://127.0.0.1:9999"}
    )
    app = build_app(tmp_path)
    response, _ = callback_of(app, sandbox)
    assert response.status_code == 401
    assert "names another issuer" in response.get_data(as_text=True)


def test_an_id_token_from_the_issuer_it_names_is_still_checked_against_its_keys(
    tmp_path: Path,
) -> None:
    impostor = RSAKey.generate_key(2048, private=True)
    impostor.ensure_kid()
    sandbox = capability_statement_only(build_sandbox())
    resign_id_token(sandbox, key=impostor)
    app = build_app(tmp_path)
    response, _ = callback_of(app, sandbox)
    assert response.status_code == 401
    assert "Your identity could not be confirmed" in response.get_data(as_text=True)
