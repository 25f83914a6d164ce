"""Server processes on 127.0.0.1 for the sandbox, the demo and the tests: a free port, waiting
until one answers, stopping it (and making it die with its parent)."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests


class ProcessError(Exception):
    """A server process did not start; the message says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_in_use(port: int) -> bool:
    """True when 127.0.0.1:`port` cannot be bound: something already listens on it."""
    with socket.socket() as sock:
        # As servers bind: a port left in TIME_WAIT by a stopped server counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def log_tail(log: Path, lines: int = 15) -> str:
    """The last lines of a server's log, indented, to show before its folder is removed."""
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "    (no log)"
    last = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(f"    {line}" for line in last) or "    (the log is empty)"


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
        except requests.RequestException:
            # Not up yet: refused, or (gunicorn accepts before its workers boot) a read timeout.
            pass
        time.sleep(0.2)
    raise ProcessError(f"{what} did not answer at {url}")


def start_server(
    command: list[str], *, env: dict[str, str], log: Path, ready_url: str, what: str
) -> subprocess.Popen[bytes]:
    """Start a server writing to `log` and wait until `ready_url` answers 200. If it does not,
    stop it and raise ProcessError ending with the log's tail (the log may not outlive us)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, preexec_fn=die_with_parent
        )
    try:
        wait_until_ready(ready_url, process, what=what)
    except ProcessError as error:
        stop_process(process)
        raise ProcessError(f"{error}; the end of its log:\n{log_tail(log)}") from None
    return process


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
