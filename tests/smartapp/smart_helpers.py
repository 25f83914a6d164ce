"""Shared pieces of the SMART app tests: the product app with the SMART blueprint, the
sandbox EHR (Authlib authorization server + FHIR stub), a bridge that lets `requests` reach
the sandbox's WSGI app through `responses` (no sockets), and live servers on 127.0.0.1."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import responses
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import BaseWSGIServer, make_server

import smartapp
from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from ehr.keys import generate_key, private_jwks, public_jwks, write_key_file
from sandbox.ehr_auth import SandboxClient, SandboxEhr
from smartapp.config import SmartSettings
from tests.conftest import expected_scenarios
from tests.smartapp.fhir_stub import FhirStub

EHR_BASE = "http://127.0.0.1:9999"  # loopback: Authlib allows http there; never dialled (bridged)
FHIR_BASE = f"{EHR_BASE}/fhir"
APP_BASE = "http://localhost"  # the Flask test client's host
CLIENT_ID = "anastrozole-test"
LOW_E2 = "man_trt_anastrozole_low_e2.json"
HARLAN = "pt-harlan-0417"


def scenario_now(fixture: str) -> datetime:
    return datetime.fromisoformat(expected_scenarios()[fixture]["now"].replace("Z", "+00:00"))


def make_key_file(directory: Path, alg: str = "ES384") -> Path:
    path = directory / f"smart-key-{alg}.json"
    write_key_file(path, private_jwks([generate_key(alg)], [alg]))  # type: ignore[list-item]
    return path


def build_app(
    tmp_path: Path,
    *,
    now: datetime | None = None,
    app_base: str = APP_BASE,
    **smart: Any,
) -> Flask:
    """The product app (create_app) with the SMART app registered on it."""
    product = load_settings(
        store_url="sqlite://",
        instance_path=tmp_path,
        evaluation_time=now or scenario_now(LOW_E2),
        public_base_url=app_base if app_base != APP_BASE else None,
    )
    app = create_app(product)
    values: dict[str, Any] = {"allowed_issuers": (FHIR_BASE,), "client_id": CLIENT_ID}
    values.update(smart)
    smartapp.init_app(
        app,
        product,
        app.extensions["runtime.store"],
        smart_settings=SmartSettings(**values),
    )
    return app


@dataclass
class Sandbox:
    ehr: SandboxEhr
    app: Flask
    fhir: FhirStub
    # path prefix -> HTTP status or exception: what the bridged EHR answers there instead
    faults: dict[str, int | Exception] = field(default_factory=dict)


def build_sandbox(
    base_url: str = EHR_BASE,
    *,
    app_base: str = APP_BASE,
    key_file: Path | None = None,
    fixtures: tuple[str, ...] = (LOW_E2,),
    **options: Any,
) -> Sandbox:
    client = SandboxClient(
        CLIENT_ID,
        redirect_uris=(f"{app_base}/smart/callback",),
        auth_method="private_key_jwt" if key_file else "none",
        jwks=public_jwks(key_file) if key_file else None,
        launch_urls=(f"{app_base}/launch.html",),
    )
    ehr = SandboxEhr(base_url, clients=[client], standalone_patient=HARLAN, **options)
    app = ehr.create_app()
    fhir = FhirStub(ehr)
    for fixture in fixtures:
        fhir.load_fixture(fixture)
    app.register_blueprint(fhir.blueprint())
    return Sandbox(ehr, app, fhir)


def bridge(
    mock: responses.RequestsMock,
    base_url: str,
    wsgi_app: Flask,
    faults: dict[str, int | Exception] | None = None,
) -> None:
    """Answer `requests` calls to base_url from a WSGI app, in process; `faults` (looked up
    at each call) make chosen paths fail instead."""
    client = wsgi_app.test_client()
    faults = faults if faults is not None else {}

    def forward(request: Any) -> tuple[int, dict[str, str], Any]:
        url = urlsplit(request.url)
        for prefix, fault in faults.items():
            if url.path.startswith(prefix):
                if isinstance(fault, Exception):
                    return 0, {}, fault
                return (
                    fault,
                    {"Content-Type": "application/fhir+json"},
                    b'{"resourceType": "OperationOutcome"}',
                )
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() in ("authorization", "content-type", "accept")
        }
        response = client.open(
            url.path,
            base_url=base_url,
            query_string=url.query,
            method=request.method,
            headers=headers,
            data=request.body,
        )
        kept = {
            k: v
            for k, v in response.headers.items()
            if k.lower() in ("content-type", "www-authenticate", "location")
        }
        return response.status_code, kept, response.get_data()

    pattern = re.compile(re.escape(base_url) + r"(/.*)?$")
    for method in ("GET", "POST"):
        mock.add_callback(method, pattern, callback=forward)


@contextmanager
def bridged(sandbox: Sandbox) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bridge(mock, sandbox.ehr.base_url, sandbox.app, sandbox.faults)
        yield mock


def query_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def launch_and_sign_in(
    client: FlaskClient, sandbox: Sandbox, patient: str = HARLAN, **launch: Any
) -> str:
    """EHR launch -> authorize (sandbox) -> callback; the dashboard URL. Must run bridged."""
    launch_id = sandbox.ehr.mint_launch(patient, **launch)
    started = open_launch_html(
        client, query_string={"iss": sandbox.ehr.fhir_base, "launch": launch_id}
    )
    assert started.status_code == 302, started.get_data(as_text=True)
    authorized = sandbox.app.test_client().get(
        started.headers["Location"].removeprefix(sandbox.ehr.base_url)
    )
    assert authorized.status_code == 302, authorized.get_data(as_text=True)
    callback = authorized.headers["Location"].removeprefix(APP_BASE)
    finished = client.get(callback)
    assert finished.status_code == 303, finished.get_data(as_text=True)
    return str(finished.headers["Location"])


# -- live servers on 127.0.0.1 -------------------------------------------------------------------


@contextmanager
def serving(app: Flask | None = None) -> Iterator[BaseWSGIServer]:
    """A threaded WSGI server on a free 127.0.0.1 port; set `server.app` before requests."""
    server = make_server("127.0.0.1", 0, app or Flask("placeholder"), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def base_of(server: BaseWSGIServer) -> str:
    return f"http://127.0.0.1:{server.server_port}"


def open_launch_html(client: FlaskClient, **kwargs: Any) -> Any:
    """GET /launch.html as a browser does: it sends the launch on to /smart/launch (where the
    app's cookie is sent), which answers; other answers come back as they are."""
    first = client.get("/launch.html", **kwargs)
    location = first.headers.get("Location", "")
    if first.status_code != 302 or not location.startswith("/smart/launch"):
        return first
    kwargs.pop("query_string", None)
    return client.get(location, **kwargs)


@dataclass
class LiveEhr:
    """The sandbox EHR and the app, each on a 127.0.0.1 port (for the browser tests)."""

    sandbox: Sandbox
    ehr_base: str
    app_base: str

    def launch_url(self, path: str = "/ehr/launch", **params: str) -> str:
        query = {"patient": HARLAN, "app": f"{self.app_base}/launch.html", **params}
        return f"{self.ehr_base}{path}?{urlencode(query)}"


@contextmanager
def live_ehr(folder: Path, *, style_path: str | None = None, **smart: Any) -> Iterator[LiveEhr]:
    """Serve both; `style_path`: the EHR's launches carry `{ehr_base}{style_path}` as their
    smart_style_url; `smart`: the app's SMART settings besides its issuer."""
    with serving() as ehr_server, serving() as app_server:
        ehr_base, app_base = base_of(ehr_server), base_of(app_server)
        style = {"style_url": f"{ehr_base}{style_path}"} if style_path else {}
        sandbox = build_sandbox(ehr_base, app_base=app_base, **style)
        ehr_server.app = sandbox.app
        app_server.app = build_app(
            folder,
            now=scenario_now(LOW_E2),
            app_base=app_base,
            allowed_issuers=(sandbox.ehr.fhir_base,),
            **smart,
        )
        yield LiveEhr(sandbox, ehr_base, app_base)
