"""Starting the sandbox's servers: a slow boot is waited for, a failed one shows its log, and the
demo names a port that is already taken before it starts anything."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sandbox.demo import run_demo
from sandbox.ehr_client import SandboxError
from sandbox.processes import (
    ProcessError,
    free_port,
    log_tail,
    port_in_use,
    start_server,
    stop_process,
    wait_until_ready,
)


class _SlowFirstAnswer(BaseHTTPRequestHandler):
    """Accepts at once but answers the first request late, as gunicorn does while its workers
    boot: the poller's 1 s read times out."""

    answered = 0

    def do_GET(self) -> None:
        _SlowFirstAnswer.answered += 1
        if _SlowFirstAnswer.answered == 1:
            time.sleep(1.5)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowFirstAnswer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/healthz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A port something listens on, as when an earlier demo is still running."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_server_that_times_out_while_booting_is_waited_for(slow_server: str) -> None:
    _SlowFirstAnswer.answered = 0
    still_running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        wait_until_ready(slow_server, still_running, what="the product", seconds=10)
    finally:
        stop_process(still_running)
    assert _SlowFirstAnswer.answered >= 2


def test_a_server_that_exits_early_is_reported_with_the_end_of_its_log(tmp_path: Path) -> None:
    log = tmp_path / "product.log"
    failing = [sys.executable, "-c",
               "print('booting'); print(\"[ERROR] Connection in use: ('127.0.0.1', 8080)\"); "
               "raise SystemExit(1)"]  # fmt: skip
    with pytest.raises(ProcessError) as raised:
        start_server(
            failing,
            env={},
            log=log,
            ready_url=f"http://127.0.0.1:{free_port()}/healthz",
            what="the product",
        )
    message = str(raised.value)
    assert message.startswith("the product exited early")
    assert "Connection in use: ('127.0.0.1', 8080)" in message
    assert str(log) not in message  # the demo removes the log: the message must not send you there


def test_the_log_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {n}\n" for n in range(40)))
    assert log_tail(log, lines=3) == "    line 37\n    line 38\n    line 39"
    assert log_tail(tmp_path / "missing.log") == "    (no log)"


def test_a_port_something_listens_on_is_in_use(listening_port: int) -> None:
    assert port_in_use(listening_port)
    assert not port_in_use(free_port())


@pytest.mark.parametrize("taken", ["product", "ehr"])
def test_the_demo_names_a_taken_port_before_starting_anything(
    listening_port: int, taken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(
        "sandbox.demo.start_fhir_server", lambda *args, **kwargs: started.append("fhir")
    )
    ports = (
        {"port": listening_port, "ehr_port": free_port()}
        if taken == "product"
        else {"port": free_port(), "ehr_port": listening_port}
    )
    with pytest.raises(SandboxError) as raised:
        run_demo(**ports, say=lambda _line: None)
    option = "--port" if taken == "product" else "--ehr-port"
    assert f"port {listening_port} on 127.0.0.1 is already in use" in str(raised.value)
    assert option in str(raised.value)
    assert started == []
