"""Trusting the HL7 CDS Hooks sandbox with the settings docs/integrators.md gives
(docs/examples/cds-hooks-sandbox.toml): its calls carry a `jku` header naming its key set,
which is accepted because the issuer lists it. Its key set is served here on 127.0.0.1 in
place of https://sandbox.cds-hooks.org (no internet in the tests); the JWTs are signed as the
sandbox signs them (ES384; `typ`, `kid` and `jku` in the header; iss, aud, exp = iat + 300,
iat, jti)."""

from __future__ import annotations

import os
import sys
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet

from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from sandbox.processes import free_port, start_server, stop_process
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, empty_prefetch, hook_body, patient

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "cds-hooks-sandbox.toml"
SANDBOX_ISSUER = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"  # the kid of the sandbox's key


class KeySetServer:
    """Serves one key set at /.well-known/jwks.json on 127.0.0.1, counting the reads."""

    def __init__(self, keys: KeySet) -> None:
        body = orjson.dumps(keys.as_dict(private=False))
        self.reads = 0
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                served.reads += 1
                found = self.path == "/.well-known/jwks.json"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body) if found else 0))
                self.end_headers()
                if found:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"


@pytest.fixture(scope="module")
def sandbox_key() -> ECKey:
    return ECKey.generate_key("P-384", parameters={"kid": SANDBOX_KID, "use": "sig"})


@pytest.fixture(scope="module")
def key_set(sandbox_key: ECKey) -> Iterator[KeySetServer]:
    server = KeySetServer(KeySet([sandbox_key]))
    yield server
    server.server.shutdown()
    server.server.server_close()


def signed_as_the_sandbox(key: ECKey, audience: str, jku: str) -> str:
    now = int(time.time())
    header = {"alg": "ES384", "typ": "JWT", "kid": SANDBOX_KID, "jku": jku}
    claims = {"iss": SANDBOX_ISSUER, "aud": audience, "exp": now + 300, "iat": now,
              "jti": str(uuid.uuid4())}  # fmt: skip
    return jwt.encode(header, claims, key, algorithms=["ES384"])


def documented_settings(jwks_url: str, base: str) -> str:
    """The example settings, with the key set served here for the sandbox's."""
    text = EXAMPLE.read_text().replace(SANDBOX_JKU, jwks_url)
    return text.replace("https://cds.example.org", base)


def a_patient_view_call() -> bytes:
    prefetch = empty_prefetch()
    prefetch["patient"] = patient()
    return orjson.dumps(hook_body(prefetch=prefetch))


def test_the_documented_settings_name_the_sandboxs_issuer_and_key_set() -> None:
    (issuer,) = tomllib.loads(EXAMPLE.read_text())["issuers"]
    assert issuer["iss"] == SANDBOX_ISSUER
    assert issuer["jwks_url"] == SANDBOX_JKU and SANDBOX_JKU in issuer["allowed_jku"]


@pytest.mark.integration
def test_with_the_documented_settings_the_sandboxs_calls_are_answered_over_http(
    tmp_path: Path, key_set: KeySetServer, sandbox_key: ECKey
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = tmp_path / "cds.toml"
    config.write_text(
        f'store_url = "sqlite:///{tmp_path / "store.sqlite3"}"\n'
        f'instance_path = "{tmp_path}"\n' + documented_settings(key_set.url, base)
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    command = [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1", "--config", str(config)]  # fmt: skip
    process = start_server(command, env=env, log=tmp_path / "serve.log",
                           ready_url=f"{base}/healthz", what="serve")  # fmt: skip
    try:
        url = f"{base}/cds-services/{PATIENT_VIEW}"
        for _ in range(2):  # the key set is fetched once, then cached
            token = signed_as_the_sandbox(sandbox_key, url, jku=key_set.url)
            response = requests.post(
                url, data=a_patient_view_call(), timeout=30,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )  # fmt: skip
            assert response.status_code == 200, response.text
        assert key_set.reads == 1
    finally:
        stop_process(process)


@pytest.mark.parametrize(
    ("allowed_jku", "status"),
    [(True, 200), (False, 401)],
    ids=["jku-listed", "jku-not-listed"],
)
def test_a_key_set_saved_to_a_file_needs_the_sandboxs_jku_listed(
    tmp_path: Path, sandbox_key: ECKey, key_set: KeySetServer, allowed_jku: bool, status: int
) -> None:
    """Offline: the sandbox's key set saved to a file. Its `jku` header must still be listed;
    the file is used and nothing is fetched."""
    jwks_file = tmp_path / "sandbox-jwks.json"
    jwks_file.write_bytes(orjson.dumps(KeySet([sandbox_key]).as_dict(private=False)))
    issuer: dict[str, Any] = {"iss": SANDBOX_ISSUER, "jwks_file": str(jwks_file)}
    if allowed_jku:
        issuer["allowed_jku"] = [SANDBOX_JKU]
    base = "https://cds.example.org"
    settings = load_settings(
        public_base_url=base, store_url="sqlite://", instance_path=tmp_path, issuers=[issuer]
    )
    reads_before = key_set.reads
    url = f"{base}/cds-services/{PATIENT_VIEW}"
    token = signed_as_the_sandbox(sandbox_key, url, jku=SANDBOX_JKU)
    client = create_app(settings).test_client()
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}", data=a_patient_view_call(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == status
    refused = 'anastrozole_cds_jwt_refusals_total{reason="jku_not_allowed"} 1.0'
    assert (refused in client.get("/metrics").get_data(as_text=True)) is (status == 401)
    assert key_set.reads == reads_before
