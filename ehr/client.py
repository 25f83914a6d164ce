"""A small FHIR R4 REST client: reads and searches with paging, timeouts, one deadline.

Errors are values: every query gives a `QueryResult` that holds the resources it got and,
when it did not get them all, a short reason ("timeout", "HTTP 500", ...) and its class
(`fault`: "timeout", "http_5xx", ...; what callers act on). Nothing raises
for anything the server does. The access token is sent in the `Authorization` header only;
it never appears in a log line, a reason, a repr or an exception text, and neither does the
query string (it names the patient).

    client = FhirClient("https://ehr.example/fhir", access_token=token)
    results = client.fetch_all(
        {"patient": "Patient/123", "labs": "Observation?patient=123&code=2243-4"},
        deadline_seconds=2.5,
    )
    results["labs"].resources   # tuple of resource dicts, newest page first
    results["labs"].usable      # False when it failed or was cut short by an error
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Literal, get_args
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from requests.utils import get_environ_proxies
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from ehr.urls import canonical_base_url, encode_search, is_under_base, origin_of

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
RETRYABLE_STATUS = frozenset({429, 503})
_DEFAULT_BACKOFF_SECONDS = 0.2


class Outcome(StrEnum):
    """How a query ended."""

    COMPLETE = "complete"  # every page there was
    TRUNCATED = "truncated"  # stopped at the page limit: the first pages, as the server sorted them
    PARTIAL = "partial"  # some pages, then an error or the deadline
    FAILED = "failed"  # nothing usable


# Why a query failed, as a fixed class: what callers act on (a 401 or 403 is "unauthorized")
# and what /metrics counts; `reason` says the same in words, for people.
Fault = Literal[
    "timeout",
    "connection_failed",
    "unauthorized",
    "rate_limited",
    "http_4xx",
    "http_5xx",
    "bad_response",
    "link_refused",
    "other",
]
FAULTS: tuple[Fault, ...] = get_args(Fault)
_TIMEOUT: Fault = "timeout"
_OTHER: Fault = "other"


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What one read or search gave: resources, and why it is not complete when it is not."""

    key: str
    outcome: Outcome
    resources: tuple[dict[str, Any], ...] = ()
    reason: str | None = None
    pages: int = 0
    fault: Fault | None = None  # set with `reason` when an error ended the query
    status: int | None = None  # the HTTP status that ended it, if one did (401 or 403...)

    @property
    def usable(self) -> bool:
        """True when the resources are all there were (or the first pages, by design)."""
        return self.outcome in (Outcome.COMPLETE, Outcome.TRUNCATED)


@dataclass(frozen=True, slots=True)
class NextPage:
    """The `next` link of a searchset page read elsewhere (a CDS client's prefetch): where a
    query goes on from. Followed under the same rules as the client's own paging."""

    url: str


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """Timeouts and caps. The overall deadline is given per call."""

    connect_timeout: float = 1.0
    read_timeout: float = 2.0
    max_pages: int = 5
    max_retries: int = 2
    max_workers: int = 8
    max_response_bytes: int = 16 * 1024 * 1024
    # All the queries of one call (fetch_all, get) together: what a call may hold in memory.
    max_call_bytes: int = 32 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment on the monotonic clock after which no more work starts."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0


class _Fault(Exception):
    """Why a page could not be had; its text is the reason a QueryResult carries."""

    def __init__(self, reason: str, fault: Fault, *, status: int | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"not a fault class: {fault!r}")
        super().__init__(reason)
        self.fault = fault
        self.status = status


@dataclass
class _Progress:
    resources: list[dict[str, Any]] = field(default_factory=list)
    pages: int = 0


class _ByteBudget:
    """The bytes all the queries of one call may still read (ClientLimits.max_call_bytes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._left = limit
        self._lock = threading.Lock()

    def take(self, size: int) -> None:
        with self._lock:
            if size > self._left:
                raise _Fault(
                    f"response too large: more than {self.limit} bytes for one call", "bad_response"
                )
            self._left -= size

    def give_back(self, size: int) -> None:
        """A page dropped half-read: its bytes are not kept, the other queries may use them."""
        with self._lock:
            self._left += size


class _Stop:
    """Ends the queries of one call at its deadline: once `abandon` has run no request starts
    (so no token is sent after the call has ended), and the sockets of requests in flight are
    shut, so a thread blocked reading a server that drips its answer wakes at once. A socket
    read timeout alone does not bound a query: it is per read, and a byte every second
    resets it."""

    def __init__(self, budget: _ByteBudget | None = None) -> None:
        self.lock = threading.Lock()
        self.budget = budget  # the call's bytes, shared by its queries
        self._abandoned = False
        self._live: dict[int, HTTPConnection] = {}  # by thread: one request at a time each

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> None:
        with self.lock:
            self._abandoned = True
            live, self._live = list(self._live.values()), {}
        for connection in live:
            _shut(connection)

    def sending(self, connection: HTTPConnection) -> None:
        """Called, holding the lock, just before a request is written; refuses once abandoned."""
        if self._abandoned:
            raise _Abandoned("the call that made this query has ended")
        self._live[threading.get_ident()] = connection

    def done(self) -> None:
        """This thread's request is over (its response read and closed)."""
        with self.lock:
            self._live.pop(threading.get_ident(), None)

    def __enter__(self) -> _Stop:
        _current.stop = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _current.stop = None


_current = threading.local()  # the _Stop of the query this thread runs, if any


class _Abandoned(OSError):
    """A request refused because its call has ended (an OSError: urllib3 passes it on)."""


def _shut(connection: HTTPConnection) -> None:
    sock = connection.sock
    if sock is None:
        return
    # The plain socket's shutdown, also for TLS (SSLSocket.shutdown would drop its TLS state
    # under the reading thread); an OSError: already closed, nothing left to wake.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _StoppableConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> None:
        stop: _Stop | None = getattr(_current, "stop", None)
        if stop is None:
            return super().request(*args, **kwargs)
        if self.sock is None:
            self.connect()  # outside the lock: it may take the connect timeout
        with stop.lock:  # held while the request is written: a small GET, it never waits
            stop.sending(self)
            super().request(*args, **kwargs)


class _StoppableHTTPSConnection(_StoppableConnection, HTTPSConnection):
    pass


class _StoppablePool(HTTPConnectionPool):
    ConnectionCls = _StoppableConnection


class _StoppableHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _StoppableHTTPSConnection


class _StoppableAdapter(HTTPAdapter):
    """Connections whose requests a `_Stop` can refuse and interrupt."""

    _pools: ClassVar[dict[str, type[HTTPConnectionPool]]] = {
        "http": _StoppablePool,
        "https": _StoppableHTTPSPool,
    }

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pools

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = self._pools
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        stop: _Stop | None = getattr(_current, "stop", None)
        if stop is not None and stop.abandoned:  # the last moment before anything is sent
            raise requests.ConnectionError("the call that made this query has ended")
        return super().send(request, *args, **kwargs)


class FhirClient:
    """Reads and searches one FHIR server, with or without a bearer token.

    Thread-safe for `fetch_all`, which runs its queries in parallel threads. Close it (or use
    it as a context manager) to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        *,
        access_token: str | None = None,
        limits: ClientLimits | None = None,
        session: requests.Session | None = None,
        user_agent: str = "anastrozole-cds",
    ) -> None:
        # The token goes only below this base: spaces, a trailing slash and the case of the
        # scheme and host are taken out once, here (never `/fhir%20/...`).
        self.base_url = canonical_base_url(base_url)
        parts = urlsplit(self.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("FHIR base URL must be an absolute http(s) URL")
        self.limits = limits or ClientLimits()
        self._session = session or _session_for(self.base_url, self.limits.max_workers)
        self._headers = {"Accept": FHIR_JSON, "User-Agent": user_agent}
        if access_token:
            self._headers["Authorization"] = f"Bearer {access_token}"

    def __repr__(self) -> str:  # never shows the token
        return f"FhirClient({self.base_url!r}, token={'yes' if 'Authorization' in self._headers else 'no'})"

    def __enter__(self) -> FhirClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()

    # -- public interface -------------------------------------------------------------------

    def fetch_all(
        self, queries: Mapping[str, str | NextPage], *, deadline_seconds: float
    ) -> dict[str, QueryResult]:
        """Run every query (relative read or search URL, or the `next` link of a page someone
        else read) in parallel within one deadline.

        Queries still running at the deadline are reported as failed ("deadline exceeded")
        with whatever pages they had; their threads stop at once: no request of theirs starts
        after this returns, and those in flight are cut off.
        """
        deadline = Deadline.after(deadline_seconds)
        if not queries:
            return {}
        progress = {key: _Progress() for key in queries}
        stop = _Stop(_ByteBudget(self.limits.max_call_bytes))
        workers = max(1, min(len(queries), self.limits.max_workers))
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fhir-query")
        futures: dict[Future[QueryResult], str] = {
            executor.submit(self._run, key, path, deadline, progress[key], stop): key
            for key, path in queries.items()
        }
        try:
            wait(futures, timeout=max(0.0, deadline.remaining()))
        finally:
            stop.abandon()
            executor.shutdown(wait=False, cancel_futures=True)
        results: dict[str, QueryResult] = {}
        for future, key in futures.items():
            results[key] = self._collect(key, future, progress[key])
        return results

    def get(self, path: str, *, deadline_seconds: float, key: str | None = None) -> QueryResult:
        """One read or search (following `next` links), within its own deadline: a request
        still running at the deadline is cut off."""
        stop = _Stop(_ByteBudget(self.limits.max_call_bytes))
        timer = threading.Timer(max(0.0, deadline_seconds), stop.abandon)
        timer.daemon = True
        timer.start()
        try:
            return self._run(
                key or path.split("?", 1)[0],
                path,
                Deadline.after(deadline_seconds),
                _Progress(),
                stop,
            )
        finally:
            timer.cancel()

    # -- one query ----------------------------------------------------------------------------

    def _collect(self, key: str, future: Future[QueryResult], progress: _Progress) -> QueryResult:
        if future.done() and not future.cancelled():
            error = future.exception()
            if error is None:
                return future.result()
            log.error("FHIR query %r failed unexpectedly: %s", key, type(error).__name__)
            reason, fault = f"internal error ({type(error).__name__})", _OTHER
        else:
            reason, fault = "deadline exceeded", _TIMEOUT
        outcome = Outcome.PARTIAL if progress.pages else Outcome.FAILED
        return QueryResult(key, outcome, tuple(progress.resources), reason, progress.pages, fault)

    def _run(
        self, key: str, path: str | NextPage, deadline: Deadline, progress: _Progress, stop: _Stop
    ) -> QueryResult:
        started = time.monotonic()
        try:
            url: str | None = (
                self._next_url(path.url) if isinstance(path, NextPage) else self._first_url(path)
            )
            seen: set[str] = set()
            while url is not None:
                if progress.pages >= self.limits.max_pages:
                    return self._done(
                        key, Outcome.TRUNCATED, progress, f"stopped after {progress.pages} pages"
                    )
                if url in seen:
                    return self._done(key, Outcome.TRUNCATED, progress, "paging loop")
                seen.add(url)
                with stop:
                    body = self._get_json(url, deadline, stop)
                resources, next_url = _page_contents(body)
                progress.resources.extend(resources)
                progress.pages += 1
                url = self._next_url(next_url) if next_url else None
        except _Fault as fault:
            outcome = Outcome.PARTIAL if progress.pages else Outcome.FAILED
            result = self._done(key, outcome, progress, str(fault), fault.fault, fault.status)
        else:
            result = self._done(key, Outcome.COMPLETE, progress, None)
        log.debug(
            "FHIR %s %s: %s, %d resources, %d pages, %.0f ms",
            "next page" if isinstance(path, NextPage) else resource_type_of(path),
            key,
            result.outcome.value,
            len(result.resources),
            result.pages,
            (time.monotonic() - started) * 1000,
        )
        return result

    @staticmethod
    def _done(
        key: str,
        outcome: Outcome,
        progress: _Progress,
        reason: str | None,
        fault: Fault | None = None,
        status: int | None = None,
    ) -> QueryResult:
        return QueryResult(
            key, outcome, tuple(progress.resources), reason, progress.pages, fault, status
        )

    def _first_url(self, path: str) -> str:
        if urlsplit(path).scheme or path.startswith("//"):
            raise _Fault("query must be relative to the FHIR base URL", "link_refused")
        return encode_search(f"{self.base_url}/{path.lstrip('/')}")

    def _next_url(self, link: str) -> str:
        """A `next` link, followed only below the base URL the token is for (not another
        host, nor another path on the same host), its search values encoded as ours are."""
        url = urljoin(self.base_url + "/", link)
        if not is_under_base(url, self.base_url):
            other_host = not is_under_base(origin_of(url), origin_of(self.base_url))
            where = "to another host" if other_host else "outside the FHIR base path"
            raise _Fault(f"next link {where} refused", "link_refused")
        return encode_search(url)

    def _get_json(self, url: str, deadline: Deadline, stop: _Stop) -> Any:
        retries = 0
        while True:
            response = self._send(url, deadline, stop)
            try:
                status = response.status_code
                if status in RETRYABLE_STATUS and retries < self.limits.max_retries:
                    pause = _retry_after(response.headers.get("Retry-After"))
                    if pause < deadline.remaining() - 0.05:
                        retries += 1
                        time.sleep(pause)
                        continue
                    raise _Fault(
                        f"HTTP {status} ({_STATUS_WORDS.get(status, 'error')}), no time to retry",
                        _status_fault(status),
                        status=status,
                    )
                if status != 200:
                    raise _Fault(
                        f"HTTP {status} ({_STATUS_WORDS.get(status, 'error')})",
                        _status_fault(status),
                        status=status,
                    )
                content = self._read_body(response, deadline, stop)
            finally:
                response.close()
                stop.done()
            try:
                return orjson.loads(content)
            except orjson.JSONDecodeError:
                raise _Fault("malformed JSON", "bad_response") from None

    def _send(self, url: str, deadline: Deadline, stop: _Stop) -> requests.Response:
        remaining = deadline.remaining()
        if remaining <= 0 or stop.abandoned:
            raise _Fault("deadline exceeded", "timeout")
        timeout = (
            min(self.limits.connect_timeout, remaining),
            min(self.limits.read_timeout, remaining),
        )
        try:
            return self._session.get(
                url, headers=self._headers, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.RequestException as error:
            raise _request_fault(error, stop, reading=False) from None

    def _read_body(self, response: requests.Response, deadline: Deadline, stop: _Stop) -> bytes:
        chunks: list[bytes] = []
        size = taken = 0
        try:
            for chunk in response.iter_content(chunk_size=64 * 1024):
                size += len(chunk)
                if size > self.limits.max_response_bytes:
                    raise _Fault("response too large", "bad_response")
                if stop.budget is not None:
                    stop.budget.take(len(chunk))
                    taken += len(chunk)
                if deadline.expired:
                    raise _Fault("deadline exceeded", "timeout")
                chunks.append(chunk)
        except requests.RequestException as error:
            if stop.budget is not None:
                stop.budget.give_back(taken)
            raise _request_fault(error, stop, reading=True) from None
        except _Fault:
            if stop.budget is not None:
                stop.budget.give_back(taken)
            raise
        return b"".join(chunks)


def _request_fault(error: requests.RequestException, stop: _Stop, *, reading: bool) -> _Fault:
    """The fault a requests exception stands for; any, once the call has cut the query off."""
    if stop.abandoned:  # the socket was shut at the deadline: whatever it then said
        return _Fault("deadline exceeded", "timeout")
    if isinstance(error, requests.exceptions.ContentDecodingError):
        return _Fault("body not decodable (Content-Encoding)", "bad_response")
    if isinstance(error, requests.Timeout) or _is_read_timeout(error):
        return _Fault("timeout while reading" if reading else "timeout", "timeout")
    if reading:  # the body broke off: the server closed or reset the connection
        return _Fault("connection lost while reading", "connection_failed")
    if isinstance(error, requests.ConnectionError):
        return _Fault("connection failed", "connection_failed")
    return _Fault(f"request failed ({type(error).__name__})", "other")


def _is_read_timeout(error: requests.RequestException) -> bool:
    """requests reports a read timeout in the body as a ConnectionError that wraps it."""
    return any(isinstance(arg, ReadTimeoutError) for arg in error.args)


def _session_for(base_url: str, pool_size: int) -> requests.Session:
    """A session for one server, with what requests would read from the environment on every
    request read once here: the proxy for this URL (HTTPS_PROXY, NO_PROXY...) and the CA bundle
    (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE). Re-reading them cost about a third of each query's
    CPU (measured). ~/.netrc is not read: this client sends no credentials but its token."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = get_environ_proxies(base_url)
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    adapter = _StoppableAdapter(pool_connections=1, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


_STATUS_WORDS = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    410: "gone",
    429: "rate limited",
    500: "server error",
    502: "bad gateway",
    503: "unavailable",
    504: "gateway timeout",
}


def _status_fault(status: int) -> Fault:
    if status in (401, 403):
        return "unauthorized"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "http_4xx"
    if 500 <= status < 600:
        return "http_5xx"
    return "other"  # a redirect (never followed) or another answer that is not 200


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return _DEFAULT_BACKOFF_SECONDS
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return _DEFAULT_BACKOFF_SECONDS
    return max(0.0, moment.timestamp() - time.time())


def _page_contents(body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """The resources of one response (a Bundle's entries, or one resource) and its next link."""
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        raise _Fault("not a FHIR resource", "bad_response")
    if body["resourceType"] == "OperationOutcome":
        raise _Fault("OperationOutcome instead of data", "bad_response")
    if body["resourceType"] != "Bundle":
        return [body], None
    resources: list[dict[str, Any]] = []
    entries = body.get("entry", [])
    if entries is None:
        entries = []
    if not isinstance(entries, list):
        raise _Fault("Bundle.entry is not a list", "bad_response")
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        resource = entry.get("resource")
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            if reports_an_error(resource):
                raise _Fault("OperationOutcome error in the searchset", "bad_response")
            continue
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            resources.append(resource)
    return resources, next_link(body)


def next_link(bundle: Any) -> str | None:
    """The `next` link of a searchset Bundle: there are more pages (FHIR R4 3.1.1.4.3)."""
    links = bundle.get("link") if isinstance(bundle, dict) else None
    found = None
    for link in links if isinstance(links, list) else ():
        if (
            isinstance(link, dict)
            and link.get("relation") == "next"
            and isinstance(link.get("url"), str)
            and link["url"].strip()
        ):
            found = link["url"].strip()
    return found


def reports_an_error(outcome: Any) -> bool:
    """An OperationOutcome entry that says the search failed (FHIR R4 Bundle, search.mode
    "outcome": issues of severity error or fatal mean the matches cannot be trusted)."""
    issues = outcome.get("issue") if isinstance(outcome, dict) else None
    return isinstance(issues, list) and any(
        isinstance(issue, dict) and issue.get("severity") in ("error", "fatal") for issue in issues
    )


def resource_type_of(path: str) -> str:
    """The resource type a relative read or search path asks for: `Patient` for
    `Patient/p1`, `Observation` for `Observation?patient=p1`."""
    return path.split("?", 1)[0].split("/", 1)[0]
