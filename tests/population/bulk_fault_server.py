"""A FHIR Bulk Data server with SMART Backend Services on 127.0.0.1, whose faults are planted
by the test: 429/503 with Retry-After while polling, a connection dropped mid-file, a token
that expires mid-export, an error in the manifest, files on another host, gzip and ranges.

    server = BulkFaultServer(files={"Patient.ndjson": b"..."}, public_jwks=jwks).start()
    server.status_answers = [Answer(429, {"Retry-After": "2"}), Answer(202, {...})]
    ...
    server.stop()

Its token endpoint checks the client assertion as a SMART server must (signature with the
registered key, `typ`, `kid`, `iss` = `sub`, `aud` = the token URL, `exp` at most five
minutes ahead, a `jti` not seen before) and records every request it answers (`seen`).
"""

from __future__ import annotations

import gzip
import itertools
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FileFaults:
    """What a file download does: gzip, ranges, drops, a token it needs."""

    gzip: bool = False
    ranges: bool = True
    drop_first_after: int | None = None  # bytes sent before the first answer breaks off
    drops_left: int = 1


class BulkFaultServer:
    def __init__(
        self,
        files: dict[str, bytes],
        *,
        public_jwks: dict[str, Any] | None = None,
        client_id: str = "population-job",
        capabilities: tuple[str, ...] = ("permission-v2", "client-confidential-asymmetric"),
    ) -> None:
        self.files = files
        self.faults: dict[str, FileFaults] = {}
        self.public_jwks = public_jwks
        self.client_id = client_id
        self.capabilities = capabilities
        self.status_answers: list[Answer] = []  # answered in turn before the manifest
        self.kickoff_answer: Answer | None = None
        self.manifest_extra: dict[str, Any] = {}
        self.file_host: str | None = None  # another origin for the files' URLs
        self.token_lifetime = 300
        self.expire_after_uses: int | None = None  # a token refused after this many uses
        self.seen: list[Seen] = []
        self.assertions: list[dict[str, Any]] = []  # (header, claims) of accepted assertions
        self.granted: dict[str, dict[str, Any]] = {}  # token -> {"uses", "scope"}
        self._jtis: set[str] = set()
        self._tokens = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                server._handle(self, "GET")

            def do_POST(self) -> None:
                server._handle(self, "POST")

            def do_DELETE(self) -> None:
                server._handle(self, "DELETE")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=lambda: self._server.serve_forever(poll_interval=0.05), daemon=True
        )

    # -- where -----------------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.origin}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.origin}/auth/token"

    def start(self) -> BulkFaultServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def manifest(self) -> dict[str, Any]:
        host = self.file_host or self.origin
        return {
            "transactionTime": "2026-11-01T12:00:00+00:00",
            "request": f"{self.base_url}/Patient/$export",
            "requiresAccessToken": self.public_jwks is not None,
            "output": [
                {"type": name.split(".")[0], "url": f"{host}/files/{name}", "count": _count(body)}
                for name, body in self.files.items()
                if not name.startswith("error")
            ],
            "error": [
                {"type": "OperationOutcome", "url": f"{host}/files/{name}"}
                for name in self.files
                if name.startswith("error")
            ],
            **self.manifest_extra,
        }

    def paths(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    # -- answering ---------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path
        headers = {k.lower(): v for k, v in handler.headers.items()}
        body = handler.rfile.read(int(headers.get("content-length") or 0))
        with self._lock:
            self.seen.append(Seen(method, path, headers))
        try:
            answer = self._answer(method, path, headers, body, handler)
        except BrokenPipeError:
            return
        if answer is not None:
            _send(handler, answer)

    def _answer(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        body: bytes,
        handler: BaseHTTPRequestHandler,
    ) -> Answer | None:
        route = urllib.parse.urlsplit(path).path
        if route == "/fhir/.well-known/smart-configuration":
            return _json(
                200,
                {
                    "token_endpoint": self.token_url,
                    "capabilities": list(self.capabilities),
                    "token_endpoint_auth_methods_supported": ["private_key_jwt"],
                },
            )
        if route == "/auth/token" and method == "POST":
            return self._token(body)
        refused = self._refused(headers)
        if route.endswith("/$export"):
            if refused:
                return refused
            if "respond-async" not in headers.get("prefer", ""):
                return _outcome(400, "invalid", "Prefer: respond-async required")
            if self.kickoff_answer is not None:
                return self.kickoff_answer
            return Answer(202, {"Content-Location": f"{self.origin}/status/job-1"})
        if route.startswith("/status/"):
            if refused:
                return refused
            with self._lock:
                planted = self.status_answers.pop(0) if self.status_answers else None
            return planted or _json(200, self.manifest())
        if route.startswith("/files/"):
            name = route.removeprefix("/files/")
            if self.public_jwks is not None and refused:
                return refused
            return self._file(name, headers, handler)
        return _outcome(404, "not-found", f"no route {route}")

    def _refused(self, headers: dict[str, str]) -> Answer | None:
        """401 unless the request carries a token this server gave and has not expired."""
        if self.public_jwks is None:
            return None
        token = headers.get("authorization", "").removeprefix("Bearer ")
        with self._lock:
            grant = self.granted.get(token)
            if grant is None:
                return _outcome(401, "login", "no valid access token")
            grant["uses"] += 1
            expired = time.time() > grant["expires"] or (
                self.expire_after_uses is not None and grant["uses"] > self.expire_after_uses
            )
        return _outcome(401, "expired", "access token expired") if expired else None

    def _token(self, body: bytes) -> Answer:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        if form.get("grant_type") != "client_credentials":
            return _json(400, {"error": "unsupported_grant_type"})
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return _json(400, {"error": "invalid_request", "error_description": "assertion type"})
        problem = self._check_assertion(form.get("client_assertion", ""))
        if problem:
            return _json(401, {"error": "invalid_client", "error_description": problem})
        token = f"token-{next(self._tokens)}"
        with self._lock:
            self.granted[token] = {
                "uses": 0,
                "expires": time.time() + self.token_lifetime,
                "scope": form.get("scope", ""),
            }
        return _json(
            200,
            {
                "access_token": token,
                "token_type": "bearer",
                "expires_in": self.token_lifetime,
                "scope": form.get("scope", ""),
            },
        )

    def _check_assertion(self, assertion: str) -> str | None:
        assert self.public_jwks is not None
        try:
            header = jws.extract_compact(assertion.encode()).headers()
            keys = KeySet.import_key_set(self.public_jwks)  # type: ignore[arg-type]
            token = jwt.decode(assertion, keys, algorithms=["ES384", "RS384"])
        except (JoseError, ValueError) as error:
            return f"bad assertion: {error}"
        claims = token.claims
        now = time.time()
        checks = {
            "typ is JWT": header.get("typ") == "JWT",
            "kid names a registered key": any(
                k.get("kid") == header.get("kid") for k in self.public_jwks["keys"]
            ),
            "iss is the client": claims.get("iss") == self.client_id,
            "sub is iss": claims.get("sub") == claims.get("iss"),
            "aud is the token URL": claims.get("aud") == self.token_url,
            "exp within 5 minutes": isinstance(claims.get("exp"), int)
            and now < claims["exp"] <= now + 300,
            "jti new": isinstance(claims.get("jti"), str) and claims["jti"] not in self._jtis,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            return "assertion fails: " + ", ".join(failed)
        self._jtis.add(claims["jti"])
        self.assertions.append({"header": header, "claims": claims})
        return None

    def _file(
        self, name: str, headers: dict[str, str], handler: BaseHTTPRequestHandler
    ) -> Answer | None:
        content = self.files.get(name)
        if content is None:
            return _outcome(404, "not-found", "no such file")
        faults = self.faults.get(name, FileFaults())
        extra = {"Content-Type": "application/fhir+ndjson", "ETag": f'"{name}-v1"'}
        if faults.gzip and "gzip" in headers.get("accept-encoding", ""):
            content = gzip.compress(content, mtime=0)
            extra["Content-Encoding"] = "gzip"
        status, start = 200, 0
        wanted = headers.get("range", "")
        if (
            faults.ranges
            and wanted.startswith("bytes=")
            and headers.get("if-range") in (None, extra["ETag"])
        ):
            start = int(wanted.removeprefix("bytes=").split("-")[0])
            status = 206
            extra["Content-Range"] = f"bytes {start}-{len(content) - 1}/{len(content)}"
        if faults.ranges:
            extra["Accept-Ranges"] = "bytes"
        part = content[start:]
        if faults.drop_first_after is not None and faults.drops_left > 0:
            faults.drops_left -= 1
            handler.send_response(status)
            for key, value in {**extra, "Content-Length": str(len(part))}.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(part[: faults.drop_first_after])
            handler.wfile.flush()
            handler.close_connection = True
            return None  # the connection closes with the body short
        return Answer(status, extra, part)


def _count(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line.strip())


def _json(status: int, value: Any) -> Answer:
    return Answer(status, {"Content-Type": "application/json"}, orjson.dumps(value))


def _outcome(status: int, code: str, text: str) -> Answer:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }
    return Answer(status, {"Content-Type": "application/fhir+json"}, orjson.dumps(outcome))


def _send(handler: BaseHTTPRequestHandler, answer: Answer) -> None:
    handler.send_response(answer.status)
    for key, value in answer.headers.items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(answer.body)))
    handler.end_headers()
    handler.wfile.write(answer.body)
