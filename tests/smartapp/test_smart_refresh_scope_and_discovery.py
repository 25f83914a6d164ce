"""Over real HTTP on 127.0.0.1: the refresh token the app asks for (`online_access`, or
`offline_access` when set), and the EHR's smart-configuration: endpoints written relative
are resolved against the FHIR base, and one issuer written several ways is discovered once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask, jsonify

from tests.smartapp.smart_helpers import (
    LOW_E2,
    LiveEhr,
    base_of,
    build_app,
    live_ehr,
    query_of,
    scenario_now,
    serving,
)

pytestmark = pytest.mark.integration


def sign_in(live: LiveEhr) -> requests.Response:
    """A browser's way through the EHR launch: every redirect followed, cookies kept."""
    with requests.Session() as browser:
        response = browser.get(live.launch_url(), timeout=30)
    assert response.status_code == 200, response.text[:300]
    assert response.url.startswith(f"{live.app_base}/smart/app/")
    return response


@pytest.mark.parametrize("refresh_scope", ["online_access", "offline_access"])
def test_the_app_asks_for_the_refresh_scope_set_and_keeps_the_refresh_token(
    tmp_path: Path, refresh_scope: str
) -> None:
    settings = {} if refresh_scope == "online_access" else {"refresh_scope": refresh_scope}
    with live_ehr(tmp_path, **settings) as live:
        sign_in(live)
        (issued,) = live.sandbox.ehr.by_access.values()
    granted = issued.scope.split()  # what the app asked for (the sandbox grants it all)
    assert ("online_access" in granted) is (refresh_scope == "online_access")
    assert ("offline_access" in granted) is (refresh_scope == "offline_access")
    assert issued.refresh_token  # the EHR gives one for either


class RelativeEhr:
    """An EHR whose smart-configuration writes its endpoints relative, counting each read."""

    def __init__(self) -> None:
        self.reads = 0
        self.app = Flask("relative-ehr")

        @self.app.get("/fhir/.well-known/smart-configuration")
        def configuration() -> Any:
            self.reads += 1
            return jsonify(
                {
                    "authorization_endpoint": "/auth/authorize",  # from the host's root
                    "token_endpoint": "auth/token",  # below the FHIR base
                    "capabilities": ["launch-ehr", "permission-v2"],
                    "code_challenge_methods_supported": ["S256"],
                }
            )


@pytest.fixture
def relative_ehr(tmp_path: Path) -> Iterator[tuple[RelativeEhr, str, str]]:
    """The EHR and the app, each on a 127.0.0.1 port: (ehr, its FHIR base, the app's base)."""
    ehr = RelativeEhr()
    with serving(ehr.app) as ehr_server, serving() as app_server:
        fhir_base = f"{base_of(ehr_server)}/fhir"
        app: Flask = build_app(
            tmp_path, now=scenario_now(LOW_E2), app_base=base_of(app_server),
            allowed_issuers=(fhir_base,),
        )  # fmt: skip
        app_server.app = app
        yield ehr, fhir_base, base_of(app_server)


def authorize_url(app_base: str, iss: str) -> str:
    """Where an EHR launch from `iss` sends the browser."""
    with requests.Session() as browser:
        response = browser.get(
            f"{app_base}/smart/launch", params={"iss": iss, "launch": "l-1"},
            allow_redirects=False, timeout=10,
        )  # fmt: skip
    assert response.status_code == 302, response.text[:300]
    return str(response.headers["Location"])


def test_relative_endpoints_are_resolved_against_the_fhir_base(
    relative_ehr: tuple[RelativeEhr, str, str],
) -> None:
    _, fhir_base, app_base = relative_ehr
    location = authorize_url(app_base, fhir_base)
    origin = fhir_base.removesuffix("/fhir")
    assert location.startswith(f"{origin}/auth/authorize?")
    assert query_of(location)["aud"] == fhir_base


def test_one_issuer_written_several_ways_is_discovered_once_and_each_keeps_its_aud(
    relative_ehr: tuple[RelativeEhr, str, str],
) -> None:
    ehr, fhir_base, app_base = relative_ehr
    shouted = fhir_base.replace("http://", "HTTP://")
    for iss in (fhir_base, fhir_base + "/", shouted, f" {fhir_base}/ "):
        assert query_of(authorize_url(app_base, iss))["aud"] == iss.strip()
    assert ehr.reads == 1
