"""After sign-in: expired tokens, refresh, FHIR 401/403/500, sessions bound to the browser.
Every failure is a page a clinician understands, and no token leaks into a page or a log."""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from smartapp.tokens import session_table, utc_now
from tests.smartapp.smart_helpers import Sandbox, launch_and_sign_in


def all_tokens(sandbox: Sandbox) -> list[str]:
    tokens = []
    for issued in sandbox.ehr.by_access.values():
        tokens.append(issued.access_token)
        if issued.refresh_token:
            tokens.append(issued.refresh_token)
    return tokens


# The sandbox plays the EHR, which knows its tokens (Authlib's server logs them at DEBUG);
# everything else in the process is the product, and must never log one.
EHR_SIDE_LOGGERS = ("authlib", "sandbox")


def assert_nothing_leaks(text: str, sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    logged = "\n".join(
        record.getMessage()
        for record in caplog.records
        if not record.name.startswith(EHR_SIDE_LOGGERS)
    )
    for token in all_tokens(sandbox):
        assert token not in text
        assert token not in logged
    assert "Traceback" not in text


def expire_in_app(app: Flask, *, drop_refresh: bool = False) -> None:
    values: dict[str, object] = {
        "access_expires_at": (utc_now() - timedelta(minutes=5)).replace(tzinfo=None)
    }
    if drop_refresh:
        values["refresh_token"] = None
    with app.extensions["smartapp"].tokens.engine.begin() as connection:
        connection.execute(session_table.update().values(**values))


def refresh_calls(mock: responses.RequestsMock, sandbox: Sandbox) -> list[dict[str, list[str]]]:
    return [
        parse_qs(call.request.body)
        for call in mock.calls
        if call.request.url == sandbox.ehr.token_url
        and "grant_type=refresh_token" in str(call.request.body)
    ]


@pytest.fixture(autouse=True)
def _debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


def test_the_dashboard_opens_after_sign_in(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = launch_and_sign_in(client, sandbox)
    response = client.get(target)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    assert_nothing_leaks(response.get_data(as_text=True), sandbox, caplog)


def test_an_expired_access_token_is_refreshed_with_the_refresh_token(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = launch_and_sign_in(client, sandbox)
    first_token = next(iter(sandbox.ehr.by_access))
    expire_in_app(app)
    response = client.get(target)
    assert response.status_code == 200
    (refresh,) = refresh_calls(ehr, sandbox)
    assert refresh["client_id"] == ["anastrozole-test"]
    fhir_calls = [c for c in ehr.calls if "/fhir/Patient/" in c.request.url]
    assert fhir_calls[-1].request.headers["Authorization"] != f"Bearer {first_token}"
    assert sandbox.ehr.by_access[first_token].is_revoked()  # rotated: the old grant is spent
    assert client.get(target).status_code == 200  # and the new token is kept
    assert len(refresh_calls(ehr, sandbox)) == 1
    assert_nothing_leaks(response.get_data(as_text=True), sandbox, caplog)


def test_an_expired_access_token_without_refresh_token_ends_the_session(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = launch_and_sign_in(client, sandbox)
    expire_in_app(app, drop_refresh=True)
    response = client.get(target)
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "Your session has ended" in page and "Open the app again" in page
    assert refresh_calls(ehr, sandbox) == []
    assert client.get(target).status_code == 401  # the session is gone
    assert_nothing_leaks(page, sandbox, caplog)


def test_a_refused_refresh_ends_the_session(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    target = launch_and_sign_in(client, sandbox)
    for issued in sandbox.ehr.by_access.values():
        issued.revoked = True  # the EHR withdrew the grant
    expire_in_app(app)
    response = client.get(target)
    assert response.status_code == 401
    assert "Your session has ended" in response.get_data(as_text=True)
    assert len(refresh_calls(ehr, sandbox)) == 1
    assert_nothing_leaks(response.get_data(as_text=True), sandbox, caplog)


def test_an_unreachable_token_endpoint_during_refresh_is_said(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    expire_in_app(app)
    sandbox.faults["/auth/token"] = requests.ConnectionError("down")
    response = client.get(target)
    assert response.status_code == 502
    assert "could not be reached" in response.get_data(as_text=True)


def test_a_fhir_401_is_retried_once_after_a_refresh(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.ehr.expire_access_tokens()  # the EHR says the token is no longer good
    response = client.get(target)
    assert response.status_code == 200
    assert len(refresh_calls(ehr, sandbox)) == 1


@pytest.mark.parametrize(("status", "refreshes"), [(401, 1), (403, 0)])
def test_a_fhir_server_that_keeps_refusing_gives_an_access_page(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    status: int,
    refreshes: int,
) -> None:
    """A 401 says the token is no longer good: one refresh, then the page. A 403 says the
    token lacks a scope: a new token of the same grant would not have it, so no refresh."""
    target = launch_and_sign_in(client, sandbox)
    sandbox.fhir.fail_with = status
    response = client.get(target)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "The EHR did not let the app read this chart" in page
    assert f"HTTP {status}" in page
    assert len(refresh_calls(ehr, sandbox)) == refreshes
    assert_nothing_leaks(page, sandbox, caplog)


def test_a_fhir_401_without_refresh_token_gives_the_access_page(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    with app.extensions["smartapp"].tokens.engine.begin() as connection:
        connection.execute(session_table.update().values(refresh_token=None))
    sandbox.fhir.fail_with = 401
    response = client.get(target)
    assert response.status_code == 403
    assert refresh_calls(ehr, sandbox) == []


@pytest.mark.parametrize("status", [500, 502, 404])
def test_a_failing_fhir_server_gives_a_page_and_judges_nothing(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    status: int,
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.fhir.fail_with = status
    response = client.get(target)
    assert response.status_code == 502
    page = response.get_data(as_text=True)
    assert "could not be read from the EHR" in page and "Nothing was judged" in page
    assert 'class="finding ' not in page
    assert_nothing_leaks(page, sandbox, caplog)


def test_an_unreachable_fhir_server_gives_a_page(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.faults["/fhir/Patient"] = requests.ConnectionError("refused")
    response = client.get(target)
    assert response.status_code == 502
    assert "connection failed" in response.get_data(as_text=True)


def test_a_failing_optional_query_is_named_on_the_page(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    sandbox.faults["/fhir/Procedure"] = 500
    response = client.get(target)
    assert response.status_code == 200
    assert "procedures (DXA scans) could not be read (HTTP 500" in response.get_data(as_text=True)


def test_a_session_is_bound_to_the_browser_that_signed_in(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    with app.test_client() as other_browser:
        response = other_browser.get(target)
        assert response.status_code == 401
        other_browser.set_cookie("anastrozole_smart", "guessed", path="/smart")
        assert other_browser.get(target).status_code == 401


def test_an_unknown_session_handle_is_an_expired_session_page(client: FlaskClient) -> None:
    client.set_cookie("anastrozole_smart", "x", path="/smart")
    response = client.get("/smart/app/no-such-handle")
    assert response.status_code == 401
    assert "Your session has ended" in response.get_data(as_text=True)


def test_a_session_ends_after_its_lifetime(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    with app.extensions["smartapp"].tokens.engine.begin() as connection:
        connection.execute(
            session_table.update().values(
                expires_at=(utc_now() - timedelta(seconds=1)).replace(tzinfo=None)
            )
        )
    assert client.get(target).status_code == 401


def test_an_unexpected_error_is_a_page_with_a_reference_not_a_stack_trace(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    target = launch_and_sign_in(client, sandbox)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail that must not leak")

    monkeypatch.setattr("smartapp.page.build_dashboard", broken)
    response = client.get(target)
    assert response.status_code == 500
    page = response.get_data(as_text=True)
    assert "Something went wrong in the app" in page
    assert "internal detail" not in page and "Traceback" not in page
    assert response.headers["X-Request-Id"] in page


def test_a_second_launch_in_the_same_browser_keeps_the_first_tab_open(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    """Two patients in two tabs: the second launch goes through launch.html to /smart/launch,
    where the browser's cookie is sent; its sign-in gives the browser a new cookie and moves
    the first session to it, so the first session stays this browser's."""
    first = launch_and_sign_in(client, sandbox)
    second = launch_and_sign_in(client, sandbox)
    assert second != first
    assert client.get(first).status_code == 200
    assert client.get(second).status_code == 200


def test_launch_html_sends_the_launch_on_to_smart_launch_with_its_parameters(
    client: FlaskClient,
) -> None:
    response = client.get(
        "/launch.html", query_string={"iss": "https://x.example/fhir", "launch": "a b"}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/smart/launch?iss=https://x.example/fhir&launch=a+b"
