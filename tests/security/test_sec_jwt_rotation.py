"""The issuer's key set over real HTTP: a new `kid` is picked up, a removed one is refused once
the cached set expires; when the JWKS cannot be fetched, cached keys serve until their
lifetime ends, then calls are refused."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from joserfc.jwk import ECKey, KeySet

import cds_hooks.auth
from anastrozole_cds.app import create_app
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    bearer,
    hook_body,
    service_url,
    trt_man_prefetch,
)
from tests.security.sec_live_server import live_service

CACHE_SECONDS = 1
FAILURE_SECONDS = 0.5  # a failed fetch is not tried again before (30 s by default)


class JwksServer:
    """An issuer's JWKS endpoint on 127.0.0.1 whose keys and status the test changes."""

    def __init__(self) -> None:
        self.keys: list[Any] = []
        self.status = 200
        self.fetches = 0
        self.delay_seconds = 0.0
        jwks = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                jwks.fetches += 1
                time.sleep(jwks.delay_seconds)
                body = json.dumps(KeySet(jwks.keys).as_dict(private=False)).encode()
                self.send_response(jwks.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/.well-known/jwks.json"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def jwks(keys: Keys) -> Iterator[JwksServer]:
    server = JwksServer()
    server.keys = [keys.es384]
    yield server
    server.stop()


@pytest.fixture
def client(
    jwks: JwksServer, make_settings: Callable[..., ProductSettings], monkeypatch: pytest.MonkeyPatch
) -> FlaskClient:
    monkeypatch.setattr(cds_hooks.auth, "_MIN_REFRESH_SECONDS", 0.0)  # refetch on any unknown kid
    settings = make_settings(
        issuers=[{"iss": ISSUER, "jwks_url": jwks.url}],
        jwks_cache_seconds=CACHE_SECONDS,
        jwks_failure_cache_seconds=FAILURE_SECONDS,
    )
    return create_app(settings).test_client()


def status(client: FlaskClient, keys: Keys, key: Any) -> int:
    token = keys.sign(service_url(PATIENT_VIEW), key=key)
    body = hook_body(prefetch=trt_man_prefetch())
    return client.post(
        f"/cds-services/{PATIENT_VIEW}", json=body, headers=bearer(token)
    ).status_code


def test_a_new_kid_published_by_the_issuer_is_picked_up(
    client: FlaskClient, keys: Keys, jwks: JwksServer
) -> None:
    assert status(client, keys, keys.es384) == 200
    rotated = ECKey.generate_key("P-384", parameters={"kid": "ehr-es384-2027", "use": "sig"})
    assert status(client, keys, rotated) == 401  # not published yet
    jwks.keys = [keys.es384, rotated]
    assert status(client, keys, rotated) == 200


def test_a_removed_kid_is_refused_once_the_cached_set_expires(
    client: FlaskClient, keys: Keys, jwks: JwksServer
) -> None:
    rotated = ECKey.generate_key("P-384", parameters={"kid": "ehr-es384-2027", "use": "sig"})
    jwks.keys = [keys.es384, rotated]
    assert status(client, keys, keys.es384) == 200
    jwks.keys = [rotated]  # the old key is withdrawn
    time.sleep(CACHE_SECONDS + 0.2)
    assert status(client, keys, keys.es384) == 401
    assert status(client, keys, rotated) == 200


def test_when_the_jwks_cannot_be_fetched_cached_keys_serve_until_they_expire(
    client: FlaskClient, keys: Keys, jwks: JwksServer
) -> None:
    assert status(client, keys, keys.es384) == 200
    fetched = jwks.fetches
    jwks.status = 503
    assert status(client, keys, keys.es384) == 200  # within the cache lifetime
    assert jwks.fetches == fetched
    time.sleep(CACHE_SECONDS + 0.2)
    assert status(client, keys, keys.es384) == 401  # expired and not refreshable: refused
    failed = jwks.fetches
    assert status(client, keys, keys.es384) == 401  # and not fetched again at once
    assert jwks.fetches == failed
    jwks.status = 200
    time.sleep(FAILURE_SECONDS + 0.1)
    assert status(client, keys, keys.es384) == 200  # and back when the issuer is


# -- a failing JWKS URL under the real server (issue 18, finding 10) ------------------------------

SLOW_ISSUER = "https://slow-ehr.example.org"


@pytest.mark.integration
def test_a_slow_failing_jwks_url_is_fetched_once_and_keeps_no_thread_from_healthz(
    tmp_path: Path, keys: Keys, jwks: JwksServer
) -> None:
    """It was fetched again by every call, each waiting for it: /healthz took 5 s."""
    jwks.status, jwks.delay_seconds = 500, 1.5
    issuer = f'[[issuers]]\niss = "{SLOW_ISSUER}"\njwks_url = "{jwks.url}"\n'
    with live_service(tmp_path, keys, workers=1, tables_toml=issuer) as service:
        path = f"/cds-services/{PATIENT_VIEW}"

        def refused_call(_: int) -> int:
            token = keys.sign(f"{service.base}{path}", iss=SLOW_ISSUER)
            answer = requests.post(
                f"{service.base}{path}",
                json=hook_body(prefetch=trt_man_prefetch()),
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            return answer.status_code

        with ThreadPoolExecutor(max_workers=12) as pool:
            calls = [pool.submit(refused_call, n) for n in range(24)]
            time.sleep(0.3)  # the calls are waiting on the JWKS URL, or refused
            health = requests.get(f"{service.base}/healthz", timeout=1.5)
            assert health.status_code == 200
            assert {call.result() for call in calls} == {401}
        assert jwks.fetches == 1
