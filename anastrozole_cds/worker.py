"""The server's worker process: gunicorn's threaded worker, made safe against slow clients.

gunicorn's gthread worker gives a connection to a thread as soon as its first bytes arrive;
the thread then blocks reading the rest. Eight clients dripping their headers or bodies a
byte at a time held all eight threads of two workers: the service was offline for everyone,
with no authentication needed (issue 18). Here the worker's event loop reads each request
whole, without a thread, and only a request that has fully arrived goes to a thread, which
then reads it from memory. A request that has not arrived within `read_seconds` is answered
408; a head over `MAX_HEAD_BYTES` 431; a body over `max_body_bytes` 413 (its Content-Length,
or chunked, as it arrives); when the worker already holds `buffer_bytes` of unfinished
requests, a new one is answered 503. A slow client then costs a socket and its bytes, not a
thread. HTTP framing stays gunicorn's: this code only decides when a request has arrived,
and gunicorn's parser reads the very same bytes.

Every answer the server gives itself (these, and gunicorn's own 400 and 431) is JSON, like
the app's: {"error", "message"}.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

import orjson
from gunicorn import util  # type: ignore[import-untyped]
from gunicorn.glogging import Logger  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from anastrozole_cds.access_log import redacted_atoms

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024  # request line and headers; nginx's default allows 32 KiB
READ_CHUNK = 64 * 1024


# -- when has a request arrived? -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the bytes read so far call for: wait, hand the request to a thread, or refuse."""

    complete: bool = False
    status: int | None = None  # refuse with this status (and close)
    message: str = ""
    expects_continue: bool = False  # the client waits for "100 Continue" before its body


WAIT = Verdict()
ARRIVED = Verdict(complete=True)


class Arrival:
    """The bytes of one request as they arrive, and whether it has arrived whole (head and
    body). Incremental: each call looks only at what is new, so a body dripped in tiny chunks
    costs the loop no more than one sent at once. When in doubt it says "arrived": gunicorn's
    parser, which reads the same bytes, then answers (400...)."""

    def __init__(self, max_body_bytes: int) -> None:
        self.data = bytearray()
        self.max_body_bytes = max_body_bytes
        self.head_end: int | None = None  # where the body begins, once the head has come
        self.length: int | None = None
        self.chunked = self.expects = False
        self.position = 0  # chunked: the next chunk's size line, from the body's start
        self.total = 0  # chunked: the body's bytes so far

    def __len__(self) -> int:
        return len(self.data)

    def feed(self, data: bytes) -> Verdict:
        searched_from = max(0, len(self.data) - 3)
        self.data += data
        if self.head_end is None:
            end = self.data.find(b"\r\n\r\n", searched_from)
            if end < 0 or end > MAX_HEAD_BYTES:
                if len(self.data) > MAX_HEAD_BYTES:
                    return _refuse(
                        431, f"request line and headers larger than {MAX_HEAD_BYTES} bytes"
                    )
                return WAIT
            self.head_end = end + 4
            self.length, self.chunked, self.expects = _framing(bytes(self.data[:end]))
        body = len(self.data) - self.head_end
        if self.chunked:
            return self._chunks()
        if self.length is None or self.length <= 0:
            return ARRIVED
        if self.length > self.max_body_bytes:
            return _too_large(self.max_body_bytes)
        if body >= self.length:
            return ARRIVED
        return Verdict(expects_continue=self.expects and not body)

    def _chunks(self) -> Verdict:
        """Walk the chunks from where the last call stopped (RFC 9112, 7.1): arrived at the
        last chunk and the trailers' end."""
        assert self.head_end is not None
        data, start = self.data, self.head_end
        while True:
            at = start + self.position
            line_end = data.find(b"\r\n", at, at + 1024)
            if line_end < 0:
                if len(data) - at > 1024:  # no chunk-size line is that long
                    return ARRIVED
                return Verdict(expects_continue=self.expects and len(data) == start)
            size_text = bytes(data[at:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                return ARRIVED  # not chunked as it says: gunicorn's parser answers 400
            if size == 0:  # trailers, then an empty line
                rest = data[line_end + 2 :]
                return ARRIVED if rest.startswith(b"\r\n") or b"\r\n\r\n" in rest else WAIT
            if self.total + size > self.max_body_bytes:
                return _too_large(self.max_body_bytes)
            chunk_end = line_end + 2 + size + 2
            if chunk_end > len(data):
                return WAIT  # this chunk is still coming: its size line is read again then
            self.total += size
            self.position = chunk_end - start


def verdict(data: bytes, *, max_body_bytes: int) -> Verdict:
    """Whether `data` holds a whole HTTP/1.1 request (Arrival, all at once)."""
    return Arrival(max_body_bytes).feed(data)


def _framing(head: bytes) -> tuple[int | None, bool, bool]:
    """Content-Length (None when absent or not a number), chunked, Expect: 100-continue."""
    length: int | None = None
    chunked = expects = False
    for line in head.split(b"\r\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name, value = name.strip().lower(), value.strip().lower()
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
        elif name == b"transfer-encoding":
            chunked = chunked or b"chunked" in value
        elif name == b"expect":
            expects = value == b"100-continue"
    return length, chunked, expects


def _waits(found: Verdict) -> bool:
    return not found.complete and found.status is None


def _refuse(status: int, message: str) -> Verdict:
    return Verdict(status=status, message=message)


def _too_large(max_body_bytes: int) -> Verdict:
    # the app's own words for the same limit (anastrozole_cds/app.py)
    return _refuse(413, f"request body larger than {max_body_bytes} bytes")


# -- answers the server gives itself ---------------------------------------------------------------

_REASONS = {
    400: "Bad Request",
    408: "Request Timeout",
    413: "Content Too Large",
    414: "URI Too Long",
    417: "Expectation Failed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}
_ERROR_NAMES = {
    400: "bad_request",
    408: "request_timeout",
    413: "request_entity_too_large",  # what the app's own 413 says
    414: "uri_too_long",
    417: "expectation_failed",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


def json_error(status: int, message: str, *, retry_after: int | None = None) -> bytes:
    """A whole HTTP/1.1 response: the app's JSON error body, and the connection closed."""
    body = orjson.dumps({"error": _ERROR_NAMES.get(status, "error"), "message": message})
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    if retry_after is not None:
        head.append(f"Retry-After: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answers (util.write_error: an HTML page) as JSON."""
    message = mesg or reason
    util.write_nonblock(sock, json_error(status_int, message))


# -- the socket a thread reads a request from ------------------------------------------------------


class DeadlineSocket(socket.socket):
    """A client socket whose blocking reads end at a deadline for the whole request, and whose
    writes each time out: a thread never waits on a client for longer than that."""

    io_seconds: float = 10.0
    _read_deadline: float | None = None

    @classmethod
    def adopt(cls, sock: socket.socket, io_seconds: float) -> DeadlineSocket:
        adopted = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        adopted.io_seconds = io_seconds
        return adopted

    def read_within(self, seconds: float) -> None:
        """From now, every read must end within `seconds` in all."""
        self._read_deadline = time.monotonic() + seconds

    def setblocking(self, flag: bool) -> None:
        if flag:  # gunicorn makes it blocking for its threads: blocking with a timeout
            super().settimeout(self.io_seconds)
        else:  # back in the event loop
            self._read_deadline = None
            super().setblocking(False)

    def _arm(self) -> None:
        if self._read_deadline is None or self.gettimeout() == 0.0:
            return
        remaining = self._read_deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request took too long to arrive")
        super().settimeout(min(remaining, self.io_seconds))

    def recv(self, size: int, flags: int = 0) -> bytes:
        self._arm()
        return super().recv(size, flags)

    def recv_into(self, buffer: Any, size: int = 0, flags: int = 0) -> int:
        self._arm()
        return super().recv_into(buffer, size, flags)


# -- the worker ------------------------------------------------------------------------------------


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with each request read whole by the event loop before a thread takes it.
    `serve` makes a subclass with the limits of its settings (`configured`)."""

    read_seconds: ClassVar[float] = 10.0
    max_body_bytes: ClassVar[int] = 10 * 1024 * 1024
    buffer_bytes: ClassVar[int] = 64 * 1024 * 1024

    @classmethod
    def configured(
        cls, *, read_seconds: float, max_body_bytes: int, buffer_bytes: int
    ) -> type[BufferingThreadWorker]:
        return type(
            cls.__name__,
            (cls,),
            {
                "read_seconds": read_seconds,
                "max_body_bytes": max_body_bytes,
                "buffer_bytes": buffer_bytes,
            },
        )

    def init_process(self) -> None:
        util.write_error = write_json_error  # gunicorn's own 400/431 pages, as JSON
        self.arriving: deque[TConn] = deque()  # oldest first: each has the same read time
        self.buffered = 0  # bytes of the requests still arriving (event loop only)
        super().init_process()

    # -- the event loop (gunicorn's main thread) --------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = DeadlineSocket.adopt(client, self.read_seconds)
        self._await_request(TConn(self.cfg, sock, address, listener.getsockname()))

    def on_client_socket_readable(self, conn: TConn, client: socket.socket) -> None:
        """A kept-alive connection's next request begins: read it whole too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._await_request(conn)

    def _await_request(self, conn: TConn) -> None:
        """Read what has come (a kept-alive connection's request, often a new one's too),
        and wait in the loop for the rest, if any."""
        conn.arriving = Arrival(self.max_body_bytes)
        conn.continue_sent = False
        conn.arrive_by = time.monotonic() + self.read_seconds
        found = self._read_some(conn)
        if found is not None and _waits(found):
            self.arriving.append(conn)
            self.buffered += len(conn.arriving)
            self.poller.register(conn.sock, 1, partial(self._on_bytes, conn))  # EVENT_READ
            self._still_arriving(conn, found)
            return
        self._decide(conn, found)

    def _on_bytes(self, conn: TConn, _client: socket.socket) -> None:
        before = len(conn.arriving)
        found = self._read_some(conn)
        self.buffered += len(conn.arriving) - before
        if found is not None and _waits(found):
            self._still_arriving(conn, found)
            return
        self._stop_waiting(conn)
        self._decide(conn, found)

    def _read_some(self, conn: TConn) -> Verdict | None:
        """What the bytes read so far call for; None when the client has gone."""
        try:
            data = conn.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return WAIT
        except OSError:
            return None
        if not data:
            return None
        arrival: Arrival = conn.arriving
        try:
            return arrival.feed(data)
        except Exception:  # a fault here would end the worker and every connection it holds
            log.exception("a request's arrival could not be judged: gunicorn's parser reads it")
            return ARRIVED

    def _still_arriving(self, conn: TConn, found: Verdict) -> None:
        if self.buffered > self.buffer_bytes:
            self._stop_waiting(conn)
            self._refuse(conn, 503, "the server is busy: try again", retry_after=1)
        elif found.expects_continue and not conn.continue_sent:
            conn.continue_sent = True  # curl waits a second for it before sending the body
            self._send_quietly(conn, b"HTTP/1.1 100 Continue\r\n\r\n")

    def _decide(self, conn: TConn, found: Verdict | None) -> None:
        """For a connection no longer waited on: a thread takes it, or it is refused, or
        (its client gone) closed."""
        if found is None:
            self._close(conn)
        elif found.status is not None:
            self._refuse(conn, found.status, found.message)
        else:
            self.enqueue_req(conn)

    def _stop_waiting(self, conn: TConn) -> None:
        self.poller.unregister(conn.sock)
        self.arriving.remove(conn)
        self.buffered -= len(conn.arriving)

    def murder_pending(self) -> None:
        """Run by gunicorn's loop every second: requests that have not arrived in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.arriving and self.arriving[0].arrive_by <= now:
            conn = self.arriving[0]
            self._stop_waiting(conn)
            if conn.arriving:
                self._refuse(
                    conn, 408, f"the request did not arrive within {self.read_seconds:g} s"
                )
            else:  # an idle connection that never sent a request: nothing to answer
                self._close(conn)

    def _refuse(
        self, conn: TConn, status: int, message: str, retry_after: int | None = None
    ) -> None:
        log.info("request refused by the server (%d): %s", status, message)
        self._send_quietly(conn, json_error(status, message, retry_after=retry_after))
        self._close(conn)

    @staticmethod
    def _send_quietly(conn: TConn, data: bytes) -> None:
        """Best effort, never blocking the loop: a client that does not read loses it."""
        try:
            conn.sock.send(data)
        except OSError:
            return

    def _close(self, conn: TConn) -> None:
        self.nr_conns -= 1
        conn.close()

    # -- a thread ---------------------------------------------------------------------------------

    def handle(self, conn: TConn) -> Any:
        arrived: Arrival | None = getattr(conn, "arriving", None)
        conn.arriving = None
        conn.sock.read_within(self.read_seconds)
        if arrived is not None and len(arrived):
            conn.data_ready = True
            conn.sock.setblocking(True)
            conn.init()  # the parser, if this connection has none yet
            conn.parser.unreader.unread(bytes(arrived.data))
        return super().handle(conn)


class RedactingLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger, with SMART secrets kept out of the access log (access_log.py)."""

    def atoms(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> Any:
        return redacted_atoms(super().atoms(resp, req, environ, request_time), environ)
