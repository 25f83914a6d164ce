"""An `error` sent to the redirect URL is shown only for a launch this browser started (its
`state`), and only as a known OAuth error code: anyone can send a browser to the redirect URL,
with any text."""

from __future__ import annotations

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from tests.smartapp.smart_helpers import FHIR_BASE, open_launch_html, query_of

PHISHING = "Your session is compromised. Call the helpdesk at +1-555-0100 now"


def started_state(client: FlaskClient) -> str:
    response = open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": "l1"})
    assert response.status_code == 302
    return query_of(response.headers["Location"])["state"]


@pytest.mark.parametrize("state", [None, "forged"])
def test_an_error_without_this_browsers_state_is_a_state_mismatch(
    client: FlaskClient, ehr: responses.RequestsMock, state: str | None
) -> None:
    started_state(client)
    query = {"error": PHISHING} | ({"state": state} if state else {})
    response = client.get("/smart/callback", query_string=query)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'data-problem="state-mismatch"' in page
    assert "helpdesk" not in page


def test_an_error_with_the_state_of_another_browser_is_a_state_mismatch(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock
) -> None:
    state = started_state(client)
    with app.test_client() as other_browser:
        response = other_browser.get(
            "/smart/callback", query_string={"state": state, "error": "access_denied"}
        )
    assert response.status_code == 400
    assert 'data-problem="state-mismatch"' in response.get_data(as_text=True)


@pytest.mark.parametrize("error", ["access_denied", "invalid_scope", "login_required"])
def test_a_known_error_code_with_this_browsers_state_is_shown(
    client: FlaskClient, ehr: responses.RequestsMock, error: str
) -> None:
    response = client.get(
        "/smart/callback", query_string={"state": started_state(client), "error": error}
    )
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert 'data-problem="authorization-refused"' in page
    assert f"the EHR answered {error}" in page


@pytest.mark.parametrize("error", [PHISHING, "<b>access_denied</b>", "access_denied\nforged"])
def test_any_other_error_text_is_never_shown(
    client: FlaskClient,
    ehr: responses.RequestsMock,
    caplog: pytest.LogCaptureFixture,
    error: str,
) -> None:
    response = client.get(
        "/smart/callback", query_string={"state": started_state(client), "error": error}
    )
    assert response.status_code == 403
    page = response.get_data(as_text=True)
    assert "the EHR answered an unrecognised error" in page
    assert "helpdesk" not in page and "<b>" not in page and "forged" not in page
    assert "helpdesk" not in caplog.text and "forged" not in caplog.text
