"""A real FHIR R4 server for the sandbox: sekmet-fhir (pinned in the dev extra) on 127.0.0.1."""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

READY_SECONDS = 40.0


class FhirServerError(Exception):
    """The FHIR server could not be started; the message says why (and where its log is)."""


@dataclass
class RunningFhirServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def die_with_parent() -> None:
    """In a child process before exec: Linux sends it SIGTERM when its parent dies, so a
    sandbox killed outright (SIGKILL) leaves no server behind. Elsewhere it does nothing."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # prctl(2)
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL if it has not ended within 15 s."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def start_fhir_server(folder: Path, port: int | None = None) -> RunningFhirServer:
    """sekmet-fhir with a SQLite store in `folder`. Its simulator is off (it would act on the
    loaded orders) and so is its inbound profile validation (the patients are plain R4)."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "settings.yaml"
    config.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {folder / 'data'}\n"
        'validation:\n  inbound: "off"\nsimulator:\n  enabled: false\nlog_inbound: false\n'
    )
    executable = Path(sys.executable).parent / "sekmet"
    if not executable.exists():
        raise FhirServerError("sekmet-fhir is not installed: pip install -e '.[dev]'")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    log = folder / "fhir-server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [str(executable), "serve", "--config", str(config)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise FhirServerError(f"the FHIR server exited early; see {log}")
        try:
            if requests.get(f"{base}/metadata", timeout=1).status_code == 200:
                return RunningFhirServer(base, process, log)
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    stop_process(process)
    raise FhirServerError(f"the FHIR server did not answer at {base}; see {log}")
