"""A real FHIR R4 server for the sandbox: sekmet-fhir (pinned in the dev extra) on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.processes import ProcessError, free_port, start_server, stop_process


class FhirServerError(Exception):
    """The FHIR server could not be started; the message says why (and ends with its log)."""


@dataclass
class RunningFhirServer:
    base_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


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
    try:
        process = start_server(
            [str(executable), "serve", "--config", str(config)],
            env=env,
            log=log,
            ready_url=f"{base}/metadata",
            what="the FHIR server",
        )
    except ProcessError as error:
        raise FhirServerError(str(error)) from None
    return RunningFhirServer(base, process, log)
