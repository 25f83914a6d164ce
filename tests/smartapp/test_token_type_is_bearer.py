"""SMART: the token response's `token_type` is `Bearer` (compared case-insensitively, RFC 6749
s5.1). A DPoP or MAC token is not sent as a Bearer token: the sign-in or refresh is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask, Response, request
from flask.testing import FlaskClient

from smartapp.errors import AppError, Problem
from smartapp.flow import refresh_session
from smartapp.tokens import browser_hash, session_table, utc_now
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


def token_type_answered(
    sandbox: Sandbox,
    token_type: str | None,
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token"),
) -> None:
    """The sandbox's token responses to `grant_types` say `token_type` (None: leave it out)."""

    @sandbox.app.after_request
    def _change(response: Response) -> Response:
        if (
            request.path == "/auth/token"
            and request.form.get("grant_type") in grant_types
            and response.status_code == 200
        ):
            body = json.loads(response.get_data())
            body.pop("token_type")
            if token_type is not None:
                body["token_type"] = token_type
            response.set_data(json.dumps(body))
        return response


def callback(tmp_path: Path, sandbox: Sandbox) -> tuple[Flask, Any]:
    app = build_app(tmp_path)
    client = app.test_client()
    with bridged(sandbox):
        started = open_launch_html(
            client, query_string={"iss": FHIR_BASE, "launch": sandbox.ehr.mint_launch(HARLAN)}
        )
        authorized = sandbox.app.test_client().get(
            started.headers["Location"].removeprefix(sandbox.ehr.base_url)
        )
        return app, client.get(authorized.headers["Location"].removeprefix(APP_BASE))


def stored_sessions(app: Flask) -> int:
    with app.extensions["smartapp"].tokens.engine.connect() as connection:
        return len(connection.execute(session_table.select()).all())


@pytest.mark.parametrize("token_type", ["Bearer", "bearer", "BEARER", None])
def test_a_bearer_token_signs_in(tmp_path: Path, token_type: str | None) -> None:
    sandbox = build_sandbox()
    token_type_answered(sandbox, token_type)
    app, response = callback(tmp_path, sandbox)
    assert response.status_code == 303
    assert stored_sessions(app) == 1


@pytest.mark.parametrize("token_type", ["DPoP", "MAC", "N_A", ""])
def test_any_other_token_type_is_refused_with_a_clear_page(tmp_path: Path, token_type: str) -> None:
    sandbox = build_sandbox()
    token_type_answered(sandbox, token_type)
    app, response = callback(tmp_path, sandbox)
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert 'data-problem="token-failed"' in page
    assert "the EHR issued a token that is not a Bearer token" in page
    assert stored_sessions(app) == 0


def test_a_refresh_answered_with_another_token_type_is_refused(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    token_type_answered(sandbox, "DPoP", grant_types=("refresh_token",))
    target = launch_and_sign_in(client, sandbox)
    cookie = client.get_cookie("anastrozole_smart", path="/smart")
    assert cookie is not None
    runtime = app.extensions["smartapp"]
    session = runtime.tokens.session(
        target.rsplit("/", 1)[-1], browser_hash(cookie.value), utc_now()
    )
    with pytest.raises(AppError) as refused:
        refresh_session(runtime, session)
    assert refused.value.problem is Problem.TOKEN_FAILED
    assert "not a Bearer token" in (refused.value.detail or "")
