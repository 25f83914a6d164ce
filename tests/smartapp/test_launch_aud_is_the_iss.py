"""SMART: in an EHR launch, `aud` is the launch's `iss` exactly as the EHR sent it, a trailing
slash too; the allowlist still compares issuers without it."""

from __future__ import annotations

import responses
from flask.testing import FlaskClient

from tests.smartapp.smart_helpers import (
    APP_BASE,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    open_launch_html,
    query_of,
)


def test_the_aud_of_an_ehr_launch_keeps_the_trailing_slash_of_its_iss(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    iss = f"{FHIR_BASE}/"
    response = open_launch_html(
        client, query_string={"iss": iss, "launch": sandbox.ehr.mint_launch(HARLAN)}
    )
    assert response.status_code == 302
    assert query_of(response.headers["Location"])["aud"] == iss


def test_an_ehr_launch_with_a_trailing_slash_reaches_the_dashboard(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    started = open_launch_html(
        client, query_string={"iss": f"{FHIR_BASE}/", "launch": sandbox.ehr.mint_launch(HARLAN)}
    )
    authorized = sandbox.app.test_client().get(
        started.headers["Location"].removeprefix(sandbox.ehr.base_url)
    )
    signed_in = client.get(authorized.headers["Location"].removeprefix(APP_BASE))
    assert signed_in.status_code == 303
    assert client.get(signed_in.headers["Location"]).status_code == 200
    discovery = [c.request.url for c in ehr.calls if "smart-configuration" in c.request.url]
    assert discovery == [f"{FHIR_BASE}/.well-known/smart-configuration"]  # no "//"
