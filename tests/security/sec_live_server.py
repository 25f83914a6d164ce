"""`anastrozole-cds serve` on a free 127.0.0.1 port with a test config, for tests that need
the real WSGI server (fuzzing, log greps, body limits)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anastrozole_cds.server import WORKER_READY
from sandbox.processes import ProcessError, free_port, stop_process, wait_until_ready
from tests.cds_hooks.cds_helpers import ISSUER, Keys

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class LiveService:
    base: str
    keys: Keys
    log: Path
    process: subprocess.Popen[bytes] | None = None  # the master

    def worker_pids(self) -> list[int]:
        """The workers that have built the app, in the order they did."""
        text = self.log.read_text(errors="replace")
        return [int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if WORKER_READY in line]

    def headers(self, path: str, **claims: Any) -> dict[str, str]:
        """A fresh signed JWT for one call to `path` (aud = the URL called)."""
        return {"Authorization": f"Bearer {self.keys.sign(f'{self.base}{path}', **claims)}"}


def wait_for_workers(log: Path, workers: int, process: subprocess.Popen[bytes]) -> None:
    """Until every worker has built the app (one answering /healthz says nothing of the
    others, and a test may count on them all)."""
    deadline = time.monotonic() + 60
    while log.read_text(errors="replace").count(WORKER_READY) < workers:
        if process.poll() is not None or time.monotonic() > deadline:
            raise ProcessError(f"{workers} workers did not all start")
        time.sleep(0.05)


@contextmanager
def live_service(
    folder: Path,
    keys: Keys,
    *,
    fhir_servers: tuple[str, ...] = (),
    workers: int = 1,
    extra_toml: str = "",
    log_level: str = "INFO",
    evaluation_time: str | None = "2026-11-01T12:00:00Z",
    store_url: str | None = None,
    tables_toml: str = "",
) -> Iterator[LiveService]:
    """Start the server, wait for /healthz, yield it, and stop it with SIGTERM.
    `evaluation_time`: the moment findings are judged at (None: now)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = folder / "anastrozole-cds.toml"
    servers = ", ".join(f'"{s}"' for s in fhir_servers)
    config.write_text(
        f"""{extra_toml}
public_base_url = "{base}"
store_url = "{store_url or f"sqlite:///{folder / 'store.sqlite3'}"}"
instance_path = "{folder}"
{f'evaluation_time = "{evaluation_time}"' if evaluation_time else ""}
log_level = "{log_level}"

[[issuers]]
iss = "{ISSUER}"
jwks_file = "{keys.jwks_file}"
fhir_servers = [{servers}]

{tables_toml}
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
        try:
            wait_until_ready(f"{base}/healthz", process, what="anastrozole-cds serve")
            wait_for_workers(log, workers, process)
        except ProcessError as error:
            raise RuntimeError(f"{error}:\n{log.read_text()}") from None
        yield LiveService(base, keys, log, process)
    finally:
        stop_process(process)
