"""Server processes on 127.0.0.1 for the sandbox, the demo and the tests: a free port, waiting
until one answers, stopping it (and making it die with its parent)."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time

import requests


class ProcessError(Exception):
    """A server process did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], *, what: str, seconds: float = 40.0
) -> None:
    """Poll `url` until it answers 200; ProcessError if the process exits or time runs out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessError(f"{what} exited early")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise ProcessError(f"{what} did not answer at {url}")


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


def die_with_parent() -> None:
    """In a child process before exec: Linux sends it SIGTERM when its parent dies, so a
    sandbox killed outright (SIGKILL) leaves no server behind. Elsewhere it does nothing."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # prctl(2)
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
