"""A FHIR server on 127.0.0.1 that answers from resources in memory, except where a fault is
planted: slow answers, error statuses, Retry-After, truncated or non-JSON bodies, redirects.

    server = FaultyFhirServer(resources).start()
    server.fault = lambda path: Fault(status=503, headers={"Retry-After": "60"}) if ... else None
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.cds_hooks.cds_fhir_stub import StubFhirServer


@dataclass(frozen=True)
class Fault:
    """How to answer one request instead of the data."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_seconds: float = 0.0
    declared_length: int | None = None  # a Content-Length larger than the body: truncated


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    authorization: str | None


class FaultyFhirServer:
    """The stub FHIR search of the CDS tests behind a real socket, with planted faults."""

    def __init__(self, resources: list[dict[str, Any]], page_size: int = 50) -> None:
        self._data = StubFhirServer(resources, page_size=page_size)  # only its `answer`
        self._data._server.server_close()  # never served: its search is all we use
        self.fault: Callable[[str], Fault | None] | None = None
        self.seen: list[Seen] = []
        faulty = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                faulty.seen.append(Seen(self.command, self.path, self.headers.get("Authorization")))
                planted = faulty.fault(self.path) if faulty.fault else None
                if planted is None:
                    status, body = faulty._data.answer(self.path)
                    body = body.replace(faulty._data.base_url.encode(), faulty.base_url.encode())
                    planted = Fault(status=status, body=body)
                if planted.delay_seconds:
                    time.sleep(planted.delay_seconds)
                try:
                    self.send_response(planted.status)
                    self.send_header("Content-Type", "application/fhir+json")
                    length = planted.declared_length or len(planted.body)
                    self.send_header("Content-Length", str(length))
                    for name, value in planted.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(planted.body)
                    if planted.declared_length:
                        self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its deadline): fine

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def prefix(self) -> str:
        return "/fhir"

    @property
    def base_url(self) -> str:
        return f"{self.origin}{self.prefix}"

    def start(self) -> FaultyFhirServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def json_body(value: Any) -> bytes:
    return json.dumps(value).encode()
