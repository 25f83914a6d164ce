"""Sign out: a POST from the dashboard's own form ends this browser's sessions, clears the
cookie and says how to open the app again; a GET, a forged form, another site or another
browser changes nothing. The refresh token goes back to the EHR when it offers revocation."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from flask import Flask, request
from flask.testing import FlaskClient

from smartapp.tokens import browser_hash, session_table, sign_out_token
from tests.smartapp.smart_helpers import Sandbox, launch_and_sign_in

COOKIE = "anastrozole_smart"


def form_token(client: FlaskClient, target: str) -> str:
    """The sign-out form's token, read from the dashboard as the browser would."""
    page = client.get(target).get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page)
    assert found, "no sign-out form on the dashboard"
    return found.group(1)


def sign_out_url(target: str) -> str:
    return f"{target}/sign-out"


def session_rows(app: Flask) -> list[dict[str, Any]]:
    with app.extensions["smartapp"].tokens.engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(session_table.select())]


def cookie_value(client: FlaskClient) -> str | None:
    cookie = client.get_cookie(COOKIE, path="/smart")
    return cookie.value if cookie else None


def test_the_dashboard_has_a_sign_out_form_and_still_no_script(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    response = client.get(target)
    page = response.get_data(as_text=True)
    assert f'<form class="sign-out" method="post" action="{sign_out_url(target)}">' in page
    assert "<script" not in page
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_signing_out_ends_the_session_and_clears_the_cookie(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    cookie = cookie_value(client)
    assert cookie is not None
    response = client.post(sign_out_url(target), data={"csrf_token": form_token(client, target)})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "You have signed out" in page and "open it from the patient's chart in the EHR" in page
    assert response.headers["Cache-Control"] == "no-store"
    (cleared,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    assert f"{COOKIE}=;" in cleared and "Max-Age=0" in cleared and "Path=/smart" in cleared
    assert cookie_value(client) is None
    assert session_rows(app) == []

    expired = client.get(target)
    assert expired.status_code == 401
    assert "Your session has ended" in expired.get_data(as_text=True)
    client.set_cookie(COOKIE, cookie, path="/smart")  # even with the old cookie kept
    assert client.get(target).status_code == 401


def test_signing_out_twice_is_harmless(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    cookie = cookie_value(client)
    token = form_token(client, target)
    assert client.post(sign_out_url(target), data={"csrf_token": token}).status_code == 200
    client.set_cookie(COOKIE, cookie or "", path="/smart")  # the form sent again (reload)
    again = client.post(sign_out_url(target), data={"csrf_token": token})
    assert again.status_code == 200
    assert "You have signed out" in again.get_data(as_text=True)


def test_signing_out_ends_every_session_of_this_browser(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    first = launch_and_sign_in(client, sandbox)
    second = launch_and_sign_in(client, sandbox)
    browser = browser_hash(cookie_value(client) or "")
    with app.extensions["smartapp"].tokens.engine.begin() as connection:  # two tabs, one cookie
        connection.execute(session_table.update().values(browser=browser))
    assert client.get(first).status_code == 200 and client.get(second).status_code == 200
    response = client.post(sign_out_url(first), data={"csrf_token": form_token(client, first)})
    assert response.status_code == 200
    assert session_rows(app) == []


@pytest.mark.parametrize(
    "form",
    [{}, {"csrf_token": ""}, {"csrf_token": "0" * 64}, {"csrf_token": "for-another-handle"}],
    ids=["missing", "empty", "wrong", "another-handle"],
)
def test_a_sign_out_without_the_form_token_is_refused(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    form: dict[str, str],
) -> None:
    target = launch_and_sign_in(client, sandbox)
    if form.get("csrf_token") == "for-another-handle":
        form = {"csrf_token": sign_out_token(cookie_value(client) or "", "another-handle")}
    response = client.post(sign_out_url(target), data=form)
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "The app did not sign out" in page and "sign-out-refused" in page
    assert not any(h.startswith(f"{COOKIE}=") for h in response.headers.getlist("Set-Cookie"))
    assert len(session_rows(app)) == 1
    assert client.get(target).status_code == 200  # still signed in


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://localhost:8443"},
    ],
)
def test_a_sign_out_from_another_site_is_refused_even_with_the_token(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, headers: dict[str, str]
) -> None:
    target = launch_and_sign_in(client, sandbox)
    token = form_token(client, target)
    response = client.post(sign_out_url(target), data={"csrf_token": token}, headers=headers)
    assert response.status_code == 403
    assert client.get(target).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"},
        {"Origin": "null"},  # what a page sent with Referrer-Policy no-referrer posts
        {},
    ],
    ids=["same-origin", "null-origin", "old-browser"],
)
def test_a_sign_out_from_the_app_page_is_accepted(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, headers: dict[str, str]
) -> None:
    target = launch_and_sign_in(client, sandbox)
    token = form_token(client, target)
    response = client.post(sign_out_url(target), data={"csrf_token": token}, headers=headers)
    assert response.status_code == 200


def test_a_get_does_not_sign_out(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    token = form_token(client, target)
    response = client.get(sign_out_url(target), query_string={"csrf_token": token})
    assert response.status_code == 405
    assert len(session_rows(app)) == 1
    assert cookie_value(client) is not None
    assert client.get(target).status_code == 200


def test_another_browser_cannot_end_the_session(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    with app.test_client() as other_browser:
        no_cookie = other_browser.post(sign_out_url(target), data={"csrf_token": "x"})
        assert no_cookie.status_code == 401
        # Its own cookie, and the token that goes with it: valid for that browser alone.
        other_browser.set_cookie(COOKIE, "the-other-browser", path="/smart")
        token = sign_out_token("the-other-browser", target.rsplit("/", 1)[-1])
        response = other_browser.post(sign_out_url(target), data={"csrf_token": token})
        assert response.status_code == 200
    assert len(session_rows(app)) == 1
    assert client.get(target).status_code == 200


# -- revocation (RFC 7009) -----------------------------------------------------------------------


def offer_revocation(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, str]]:
    """Give the sandbox EHR a revocation endpoint; the requests it receives."""
    received: list[dict[str, str]] = []
    endpoint = f"{sandbox.ehr.issuer}/revoke"
    configuration = sandbox.ehr.smart_configuration
    monkeypatch.setattr(
        sandbox.ehr,
        "smart_configuration",
        lambda: {**configuration(), "revocation_endpoint": endpoint},
    )

    def revoke() -> tuple[str, int]:
        received.append(request.form.to_dict())
        issued = sandbox.ehr.by_refresh.get(request.form.get("token", ""))
        if issued is not None:
            issued.revoked = True
        return "", 200

    sandbox.app.add_url_rule("/auth/revoke", "revoke", revoke, methods=["POST"])
    return received


def test_signing_out_revokes_the_refresh_token_at_the_ehr(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    received = offer_revocation(sandbox, monkeypatch)
    target = launch_and_sign_in(client, sandbox)
    (issued,) = sandbox.ehr.by_access.values()
    response = client.post(sign_out_url(target), data={"csrf_token": form_token(client, target)})
    assert response.status_code == 200
    assert received == [
        {
            "token": issued.refresh_token,
            "token_type_hint": "refresh_token",
            "client_id": "anastrozole-test",
        }
    ]
    assert issued.is_revoked()
    calls = [call for call in ehr.calls if call.request.url.endswith("/auth/revoke")]
    assert parse_qs(str(calls[0].request.body))["token"] == [issued.refresh_token]


@pytest.mark.parametrize(
    "fault", [503, requests.ConnectionError("down"), requests.Timeout("slow")], ids=str
)
def test_a_failing_revocation_endpoint_does_not_stop_the_sign_out(
    app: Flask,
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    fault: int | Exception,
) -> None:
    offer_revocation(sandbox, monkeypatch)
    target = launch_and_sign_in(client, sandbox)
    sandbox.faults["/auth/revoke"] = fault
    response = client.post(sign_out_url(target), data={"csrf_token": form_token(client, target)})
    assert response.status_code == 200
    assert session_rows(app) == []


def test_without_a_revocation_endpoint_nothing_is_sent(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    target = launch_and_sign_in(client, sandbox)
    response = client.post(sign_out_url(target), data={"csrf_token": form_token(client, target)})
    assert response.status_code == 200
    assert not [call for call in ehr.calls if "revoke" in call.request.url]
