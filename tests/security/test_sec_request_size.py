"""A 50 MB body is refused with 413 before it is read, on the real WSGI server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

from tests.cds_hooks.cds_helpers import PATIENT_VIEW, Keys
from tests.security.sec_live_server import LiveService, live_service

pytestmark = pytest.mark.integration

FIFTY_MB = 50 * 1024 * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("sized"), keys) as running:
        yield running


def _raw_post(service: LiveService, path: str, headers: dict[str, str], sent: bytes) -> bytes:
    """POST announcing a 50 MB body but sending only `sent`: the answer must come anyway."""
    parts = urlsplit(service.base)
    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc}",
        "Content-Type: application/json",
        f"Content-Length: {FIFTY_MB}",
        *(f"{name}: {value}" for name, value in headers.items()),
        "",
        "",
    ]
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as sock:
        sock.sendall("\r\n".join(lines).encode() + sent)
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)  # times out (failing the test) if the server waits
            if not chunk:
                break
            answer += chunk
    return answer


@pytest.mark.parametrize(
    "path", [f"/cds-services/{PATIENT_VIEW}", f"/cds-services/{PATIENT_VIEW}/feedback"]
)
def test_a_50_mb_body_is_refused_early_with_413(service: LiveService, path: str) -> None:
    answer = _raw_post(service, path, service.headers(path), b'{"hook": "patient-view", ')
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    refused = orjson.loads(body)
    assert refused["error"] == "request_entity_too_large"
    assert "larger than" in refused["message"]


def test_the_server_stays_healthy_after_refusing_it(service: LiveService, tmp_path: Path) -> None:
    import requests

    path = f"/cds-services/{PATIENT_VIEW}"
    requests.post(f"{service.base}{path}", data=b"x" * 1024, headers=service.headers(path))
    assert requests.get(f"{service.base}/healthz", timeout=5).status_code == 200
