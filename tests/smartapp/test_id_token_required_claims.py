"""The id_token must carry the nonce the app sent, and `sub` and `iat` (OpenID Connect Core
3.1.3.7 step 11 and s2): without them the sign-in is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Response, request
from joserfc import jwt

from tests.smartapp.smart_helpers import (
    APP_BASE,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    open_launch_html,
)


def id_token_changed(sandbox: Sandbox, drop: tuple[str, ...], **claims: Any) -> None:
    """The sandbox's id_token without the `drop` claims, with `claims`, signed with its key."""
    key = sandbox.ehr.id_token_key

    @sandbox.app.after_request
    def _change(response: Response) -> Response:
        if request.path == "/auth/token" and response.status_code == 200:
            body = json.loads(response.get_data())
            token = jwt.decode(body["id_token"], key)
            kept = {k: v for k, v in token.claims.items() if k not in drop}
            body["id_token"] = jwt.encode({"alg": "RS256", "kid": key.kid}, kept | claims, key)
            response.set_data(json.dumps(body))
        return response


def sign_in(tmp_path: Path, sandbox: Sandbox) -> Any:
    """An EHR launch through to the callback's response."""
    client = build_app(tmp_path).test_client()
    with bridged(sandbox):
        started = open_launch_html(
            client, query_string={"iss": FHIR_BASE, "launch": sandbox.ehr.mint_launch(HARLAN)}
        )
        authorized = sandbox.app.test_client().get(
            started.headers["Location"].removeprefix(sandbox.ehr.base_url)
        )
        return client.get(authorized.headers["Location"].removeprefix(APP_BASE))


def test_the_sandbox_id_token_with_every_claim_signs_in(tmp_path: Path) -> None:
    sandbox = build_sandbox()
    id_token_changed(sandbox, drop=())
    assert sign_in(tmp_path, sandbox).status_code == 303


@pytest.mark.parametrize(
    ("drop", "claims", "named"),
    [
        (("nonce",), {}, "nonce"),
        ((), {"nonce": "another-sign-in"}, "nonce"),
        (("sub",), {}, "sub"),
        (("iat",), {}, "iat"),
        (("nonce", "sub", "iat"), {}, "iat,nonce,sub"),
    ],
)
def test_an_id_token_without_the_nonce_sent_or_without_sub_or_iat_is_refused(
    tmp_path: Path, drop: tuple[str, ...], claims: dict[str, Any], named: str
) -> None:
    sandbox = build_sandbox()
    id_token_changed(sandbox, drop, **claims)
    response = sign_in(tmp_path, sandbox)
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert 'data-problem="identity-unverified"' in page
    assert f"&#39;{named}&#39;" in page  # the claim at fault is named for the help desk
