"""A FHIR proxy that rewrites URLs as smart-launcher-v2's does, run as its own process:

    python -m tests.sandbox.launcher_proxy UPSTREAM_BASE PORT

smart-launcher-v2 (backend/routes/fhir/proxy.ts) builds the upstream URL with
`new URL(fhirServer + req.url).href.replace(/\\/\\s*\\//g, "/")`: every `//` in the URL, the
query included, becomes `/`; `fetch` then repairs `http:/host` (a special scheme). A search
sent as `code=http://loinc.org|2243-4` reaches the server as `code=http:/loinc.org|2243-4`,
which matches nothing: an empty 200. Like the launcher, it passes back only Content-Type,
ETag and Location, and rewrites the upstream base in bodies to its own, so that `next`
links come back through it.
"""

from __future__ import annotations

import re
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_DOUBLE_SLASH = re.compile(r"/\s*/")  # the launcher's expression, to the letter
_BROKEN_SCHEME = re.compile(r"^(https?):/(?!/)")
_KEPT_HEADERS = ("content-type", "etag", "location")


def launcher_url(upstream_base: str, request_path: str) -> str:
    """The URL the launcher fetches for a request path (after its own base)."""
    collapsed = _DOUBLE_SLASH.sub("/", upstream_base + request_path)
    return _BROKEN_SCHEME.sub(r"\1://", collapsed)


def serve(upstream_base: str, port: int) -> None:
    own_base = f"http://127.0.0.1:{port}/fhir"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.removeprefix("/fhir")
            request = urllib.request.Request(
                launcher_url(upstream_base, path),
                headers={"Accept": self.headers.get("Accept", "application/fhir+json")},
            )
            try:
                with urllib.request.urlopen(request, timeout=20) as answer:
                    status, headers, body = answer.status, answer.headers, answer.read()
            except urllib.error.HTTPError as error:
                status, headers, body = error.code, error.headers, error.read()
            body = body.replace(upstream_base.encode(), own_base.encode())
            self.send_response(status)
            for name in _KEPT_HEADERS:
                if headers.get(name):
                    self.send_header(name, headers[name])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    serve(sys.argv[1].rstrip("/"), int(sys.argv[2]))
