"""The one browser cookie all of a browser's sessions share: the app mints it and never adopts a
value planted in the browser (session fixation), and once a launch of the browser came in the
EHR's iframe it stays SameSite=None, so a later top-level launch does not cut that iframe off."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.smartapp.smart_helpers import (
    APP_BASE,
    HARLAN,
    Sandbox,
    build_app,
    launch_and_sign_in,
    open_launch_html,
)
from tests.smartapp.test_smart_sign_out import form_token, sign_out_url

COOKIE = "anastrozole_smart"
PLANTED = "attacker-chosen-value"
IN_THE_EHR_IFRAME = {"Sec-Fetch-Dest": "iframe", "Sec-Fetch-Site": "cross-site"}
TOP_LEVEL = {"Sec-Fetch-Dest": "document", "Sec-Fetch-Site": "cross-site"}


def cookie_value(client: FlaskClient) -> str:
    cookie = client.get_cookie(COOKIE, path="/smart")
    assert cookie is not None
    return cookie.value


def set_cookie_header(response: TestResponse) -> str:
    (header,) = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]
    return header


def test_a_cookie_value_the_app_did_not_mint_is_not_adopted(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    client.set_cookie(COOKIE, PLANTED, path="/smart")
    target = launch_and_sign_in(client, sandbox)
    assert cookie_value(client) != PLANTED
    assert client.get(target).status_code == 200
    with app.test_client() as planter:
        planter.set_cookie(COOKIE, PLANTED, path="/smart")
        assert planter.get(target).status_code == 401


def test_a_second_launch_keeps_the_first_open_under_the_cookie_of_its_sign_in(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    first = launch_and_sign_in(client, sandbox)
    after_first = cookie_value(client)
    second = launch_and_sign_in(client, sandbox)
    assert cookie_value(client) != after_first  # a new cookie at each sign-in
    assert client.get(first).status_code == 200  # both sessions moved to it
    assert client.get(second).status_code == 200


def test_a_cookie_the_app_minted_for_another_browser_opens_nothing_after_sign_in(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    """Session fixation with a real cookie: an attacker launches to get one the app minted,
    plants it in the clinician's browser, and waits for the clinician to sign in."""
    with app.test_client() as attacker:
        launch_and_sign_in(attacker, sandbox)
        planted = cookie_value(attacker)
    client.set_cookie(COOKIE, planted, path="/smart")
    target = launch_and_sign_in(client, sandbox)
    assert cookie_value(client) != planted
    assert client.get(target).status_code == 200
    with app.test_client() as planter:
        planter.set_cookie(COOKIE, planted, path="/smart")
        assert planter.get(target).status_code == 401


@pytest.fixture
def over_https(tmp_path: Path) -> Iterator[FlaskClient]:
    """A browser on the app as served over https: the cookie is Secure, so SameSite=None is
    possible."""
    with build_app(tmp_path, cookie_secure="always").test_client() as client:
        yield client


@dataclass(frozen=True)
class SignedIn:
    launch_cookie: str  # the Set-Cookie of /smart/launch
    callback_cookie: str  # and of the callback
    page: str  # the dashboard's URL

    @property
    def cookies(self) -> tuple[str, str]:
        return self.launch_cookie, self.callback_cookie


def sign_in(client: FlaskClient, sandbox: Sandbox, headers: dict[str, str]) -> SignedIn:
    """An EHR launch, the browser sending these Fetch Metadata headers."""
    launch_id = sandbox.ehr.mint_launch(HARLAN)
    started = open_launch_html(
        client,
        query_string={"iss": sandbox.ehr.fhir_base, "launch": launch_id},
        headers=headers,
    )
    assert started.status_code == 302
    authorized = sandbox.app.test_client().get(
        started.headers["Location"].removeprefix(sandbox.ehr.base_url)
    )
    finished = client.get(authorized.headers["Location"].removeprefix(APP_BASE), headers=headers)
    assert finished.status_code == 303
    return SignedIn(
        set_cookie_header(started), set_cookie_header(finished), finished.headers["Location"]
    )


def test_a_top_level_launch_after_a_framed_one_keeps_the_cookie_samesite_none(
    over_https: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    framed = sign_in(over_https, sandbox, IN_THE_EHR_IFRAME)
    assert all("SameSite=None" in c and "Secure" in c for c in framed.cookies)
    later = sign_in(over_https, sandbox, TOP_LEVEL)
    assert all("SameSite=None" in c and "Secure" in c for c in later.cookies)
    assert over_https.get(framed.page, headers=IN_THE_EHR_IFRAME).status_code == 200


def test_a_browser_never_framed_keeps_samesite_lax(
    over_https: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    for _ in range(2):
        signed_in = sign_in(over_https, sandbox, TOP_LEVEL)
        assert all("SameSite=Lax" in c for c in signed_in.cookies)


def test_signing_out_top_level_clears_the_cookie_as_the_framed_session_set_it(
    over_https: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    sign_in(over_https, sandbox, IN_THE_EHR_IFRAME)
    top_level = sign_in(over_https, sandbox, TOP_LEVEL)
    response = over_https.post(
        sign_out_url(top_level.page),
        data={"csrf_token": form_token(over_https, top_level.page)},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 200
    cleared = set_cookie_header(response)
    assert "Max-Age=0" in cleared and "SameSite=None" in cleared and "Secure" in cleared


def test_the_page_handle_is_not_in_the_app_error_log(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the cookie, the handle is the other half of a session's key: never logged."""
    target = launch_and_sign_in(client, sandbox)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("broken")

    monkeypatch.setattr("smartapp.page.build_dashboard", broken)
    assert client.get(target).status_code == 500
    (logged,) = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert "unhandled RuntimeError on smartapp.dashboard" in logged
    assert target.rsplit("/", 1)[1] not in logged
