"""`anastrozole-cds serve` on a free 127.0.0.1 port with a test config, for tests that need
the real WSGI server (fuzzing, log greps, body limits)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.cds_hooks.cds_helpers import ISSUER, Keys

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveService:
    base: str
    keys: Keys
    log: Path

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        """A fresh signed JWT for one call to `path` (aud = the URL called)."""
        return {"Authorization": f"Bearer {self.keys.sign(f'{self.base}{path}', **claims)}"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def live_service(
    folder: Path,
    keys: Keys,
    *,
    fhir_servers: tuple[str, ...] = (),
    workers: int = 1,
    extra_toml: str = "",
    log_level: str = "INFO",
) -> Iterator[LiveService]:
    """Start the server, wait for /healthz, yield it, and stop it with SIGTERM."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = folder / "anastrozole-cds.toml"
    servers = ", ".join(f'"{s}"' for s in fhir_servers)
    config.write_text(
        f"""{extra_toml}
public_base_url = "{base}"
store_url = "sqlite:///{folder / "store.sqlite3"}"
instance_path = "{folder}"
evaluation_time = "2026-11-01T12:00:00Z"
log_level = "{log_level}"

[[issuers]]
iss = "{ISSUER}"
jwks_file = "{keys.jwks_file}"
fhir_servers = [{servers}]
"""
    )
    log = folder / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANASTROZOLE_CDS_")}
    command = [sys.executable, "-m", "anastrozole_cds.cli", "serve", "--host", "127.0.0.1",
               "--port", str(port), "--workers", str(workers), "--config", str(config)]  # fmt: skip
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_for_health(base, process, log)
        yield LiveService(base, keys, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_health(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"serve exited early:\n{log.read_text()}")
        try:
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"serve did not answer /healthz:\n{log.read_text()}")
