"""A query the deadline cut off stops there: its thread does not outlive the call (a server
that drips its answer resets every socket read timeout), and no request of it, nor its token,
goes out after the call has returned."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from ehr.client import FhirClient, Outcome

BODY = b'{"resourceType":"Bundle","type":"searchset","entry":[]}' + b" " * 200
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\nContent-Length: %d\r\n\r\n"
    % len(BODY)
)


class DrippingServer:
    """Answers every request a byte every 0.1 s: its headers (`drips="headers"`) or its body."""

    def __init__(self, drips: str) -> None:
        self.drips = drips
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._closing = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/fhir"

    def _serve(self) -> None:
        while not self._closing:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                request += chunk
            answer = HEAD + BODY
            sent = len(HEAD) if self.drips == "body" else 0
            try:
                connection.sendall(answer[:sent])
                for index in range(sent, len(answer)):
                    if self._closing:
                        return
                    connection.sendall(answer[index : index + 1])
                    time.sleep(0.1)
            except OSError:
                return  # the client cut the query off: what we want

    def stop(self) -> None:
        self._closing = True
        self._listener.close()


@pytest.fixture(params=["headers", "body"])
def dripping(request: pytest.FixtureRequest) -> Iterator[DrippingServer]:
    server = DrippingServer(request.param)
    yield server
    server.stop()


def query_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fhir-query")]


def test_fetch_all_leaves_no_query_running_after_its_deadline(dripping: DrippingServer) -> None:
    client = FhirClient(dripping.base_url, access_token="drip-token")
    started = time.monotonic()
    results = client.fetch_all({"labs": "Observation?patient=p1"}, deadline_seconds=0.4)
    assert time.monotonic() - started < 1.0
    assert (results["labs"].outcome, results["labs"].reason) == (
        Outcome.FAILED,
        "deadline exceeded",
    )
    for thread in query_threads():
        thread.join(timeout=1.0)  # the answer would take 25 s or more
    assert not any(t.is_alive() for t in query_threads())


def test_get_returns_at_its_deadline_from_a_dripping_server(dripping: DrippingServer) -> None:
    started = time.monotonic()
    result = FhirClient(dripping.base_url).get("Observation?patient=p1", deadline_seconds=0.4)
    assert time.monotonic() - started < 1.0
    assert (result.outcome, result.fault) == (Outcome.FAILED, "timeout")


@responses.activate(assert_all_requests_are_fired=False)
def test_no_request_goes_out_after_fetch_all_has_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    """A thread that checked its deadline, then lost the CPU before sending (a busy machine;
    made certain here by slowing requests down), must not send once the call is over."""
    base = "https://ehr.example.org/fhir"
    sent_at: list[float] = []

    def answer(request: requests.PreparedRequest) -> tuple[int, dict[str, str], str]:
        sent_at.append(time.monotonic())
        return 200, {}, '{"resourceType": "Patient", "id": "p1"}'

    responses.add_callback(responses.GET, f"{base}/Patient/p1", callback=answer)
    merge = requests.Session.merge_environment_settings

    def descheduled(self: requests.Session, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.4)
        return merge(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "merge_environment_settings", descheduled)
    client = FhirClient(base, access_token="late-token")
    results = client.fetch_all({"patient": "Patient/p1"}, deadline_seconds=0.15)
    returned = time.monotonic()
    for thread in query_threads():
        thread.join(timeout=2.0)
    assert results["patient"].fault == "timeout"
    assert [moment for moment in sent_at if moment >= returned] == []
