"""A FHIR Bulk Data Access 2.0 client: kick-off, status polling, downloads, into a folder.

    client = BulkClient("https://ehr.example/fhir", auth=auth, progress=print)
    manifest_path = client.export(ExportRequest(types=("Patient", "Observation")), Path("out"))

- **Kick-off** `[base]/Patient/$export` or `[base]/Group/[id]/$export` with `_type`,
  `_typeFilter` and `_since`; `Prefer: respond-async` (and `handling=strict` with a type
  filter, so that a server that cannot apply it says so rather than exporting everything).
- **Polling** the status URL honours `Retry-After` (delta-seconds or an HTTP-date) on 202,
  429 and 503, and reports `X-Progress`; without one it backs off from 1 to 60 seconds.
- **Downloads** run `parallel` at a time, each retried (a dropped connection resumes with a
  Range request when the server allows it, else starts again), asked for gzip and saved as the
  server sends it: `NAME.ndjson.gz` when gzipped, else `NAME.ndjson`. A file is written to a
  `.part` name and renamed when whole (its length, gzip stream and `count` checked), so a
  file with its final name is complete and is not fetched again when the export resumes.
- **Resume**: the job (status URL, then manifest) is kept in `.export-in-progress.json`; run
  again with the same request and folder, and it polls or downloads where it stopped.
- **The manifest is saved last**, as `manifest.json`, each entry with its local `file`: a
  folder holding one is a complete export.
- **The token** (SMART Backend Services, `ehr.backend_services`) goes to the kick-off and
  status URLs, and to a file URL only when the manifest says `requiresAccessToken` and the
  file is on the server the export was kicked off at (same scheme, host and port): never to
  another host. A token refused mid-export (401) is renewed once and the request repeated.

Errors are `BulkError`, one line, never a token.
"""

from __future__ import annotations

import email.utils
import gzip
import os
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode, urljoin, urlsplit

import orjson
import requests
import urllib3.exceptions
from requests.utils import get_environ_proxies

from ehr.backend_services import AuthError, BackendServicesAuth

FHIR_JSON: Final = "application/fhir+json"
STATE_FILE: Final = ".export-in-progress.json"
MANIFEST_FILE: Final = "manifest.json"
ERROR_FOLDER: Final = "error"
TIMEOUT: Final = (10, 120)  # connect, read (seconds)
# Answers that may pass: a 500 only when its OperationOutcome says "transient" (Bulk Data:
# "a transient error ... the client MAY retry"); any other 500 is the export failing.
RETRYABLE: Final = frozenset({429, 502, 503, 504})
MAX_WAIT: Final = 3600.0  # the longest Retry-After honoured (seconds)
CHUNK: Final = 1 << 20


class BulkError(Exception):
    """The export failed; the message says why in one line (never a token)."""


@dataclass(frozen=True, slots=True)
class ExportRequest:
    """What to export: every patient, or a Group's, of these types (all when empty)."""

    group: str | None = None
    types: tuple[str, ...] = ()
    type_filters: tuple[str, ...] = ()
    since: str | None = None

    def url(self, base: str) -> str:
        path = f"Group/{self.group}/$export" if self.group else "Patient/$export"
        query = [("_type", ",".join(self.types))] if self.types else []
        query += [("_typeFilter", f) for f in self.type_filters]
        query += [("_since", self.since)] if self.since else []
        return f"{base.rstrip('/')}/{path}" + (f"?{urlencode(query)}" if query else "")


@dataclass(frozen=True, slots=True)
class Download:
    """One file of the manifest: where it is, and the local name it is saved under."""

    url: str
    stem: str  # "Observation.000" (the suffix depends on the encoding the server sends)
    kind: str  # "output" or "error"
    index: int  # its place in the manifest's list
    count: int | None
    folder: str = ""  # "" or "error"


@dataclass(slots=True)
class Retry:
    """How often and how long to retry what may pass (transient errors, dropped lines)."""

    attempts: int = 6
    first_backoff: float = 1.0
    max_backoff: float = 60.0
    max_poll: float = 24 * 3600.0  # give up waiting for the export after this

    def backoff(self, attempt: int) -> float:
        return min(self.max_backoff, self.first_backoff * 2**attempt)


@dataclass
class BulkClient:
    """Exports from one FHIR server into a folder (see the module docstring)."""

    base_url: str
    auth: BackendServicesAuth | None = None
    parallel: int = 4
    progress: Callable[[str], None] = lambda line: None
    retry: Retry = field(default_factory=Retry)
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    _local: threading.local = field(default_factory=threading.local, repr=False)

    def __post_init__(self) -> None:
        self._origin = _origin(self.base_url)

    # -- the whole export ---------------------------------------------------------------------

    def export(self, request: ExportRequest, folder: Path) -> Path:
        """Kick off (or resume) the export and download it; the saved manifest's path."""
        folder.mkdir(parents=True, exist_ok=True)
        if (folder / MANIFEST_FILE).exists():
            raise BulkError(
                f"{folder} already holds a complete export ({MANIFEST_FILE}): choose another --out"
            )
        kick_off_url = request.url(self.base_url)
        state = self._resumed(folder, kick_off_url)
        if state.get("manifest") is None:
            if not state.get("status_url"):
                _check_empty(folder)
                state = {"request": kick_off_url, "status_url": self.kick_off(kick_off_url)}
                _write_json(folder / STATE_FILE, state)
            state["manifest"] = self.wait(state["status_url"])
            _write_json(folder / STATE_FILE, state)
        manifest: dict[str, Any] = state["manifest"]
        saved = self.download_all(manifest, folder)
        for download, name in saved:
            manifest[download.kind][download.index]["file"] = name
        _write_json(folder / MANIFEST_FILE, manifest)  # last: the export is complete
        (folder / STATE_FILE).unlink()
        return folder / MANIFEST_FILE

    def _resumed(self, folder: Path, kick_off_url: str) -> dict[str, Any]:
        path = folder / STATE_FILE
        if not path.exists():
            return {}
        try:
            state = orjson.loads(path.read_bytes())
        except orjson.JSONDecodeError:
            raise BulkError(f"{path} is damaged: delete it to start the export again") from None
        if not isinstance(state, dict) or state.get("request") != kick_off_url:
            raise BulkError(
                f"{folder} holds another export in progress ({STATE_FILE}): choose another "
                "--out, or delete that file to start this one"
            )
        self.progress("resuming the export in progress in this folder")
        return state

    # -- kick-off and status ------------------------------------------------------------------

    def kick_off(self, url: str) -> str:
        """Start the export; the status URL (Content-Location) to poll."""
        prefer = "respond-async" + (", handling=strict" if "_typeFilter=" in url else "")
        headers = {"Accept": FHIR_JSON, "Prefer": prefer}
        response = self._request("GET", url, headers, what="the kick-off")
        if response.status_code != 202:
            raise BulkError(f"the kick-off was refused: {_answer(response)}")
        location = response.headers.get("Content-Location")
        if not location:
            raise BulkError("the kick-off was accepted without a Content-Location to poll")
        self.progress("export started")
        return urljoin(url, location)

    def wait(self, status_url: str) -> dict[str, Any]:
        """Poll until the export is done; its manifest."""
        started = self.clock()
        attempt = 0
        while True:
            response = self._request(
                "GET", status_url, {"Accept": "application/json"}, what="the status request"
            )
            status = response.status_code
            if status == 200:
                return _manifest(response)
            if status == 202 or _transient(response):
                if status == 202:
                    self.progress(
                        f"export in progress: {response.headers.get('X-Progress') or 'no progress said'}"
                    )
                elif attempt >= self.retry.attempts and "Retry-After" not in response.headers:
                    raise BulkError(f"the status request failed: {_answer(response)}")
                wait = retry_after(response.headers.get("Retry-After"), self.retry.backoff(attempt))
                attempt += 1
                if self.clock() - started + wait > self.retry.max_poll:
                    raise BulkError(f"the export did not finish in {self.retry.max_poll:.0f} s")
                self.sleep(wait)
                continue
            if status in (404, 410):
                raise BulkError(
                    f"the export is gone from the server ({_answer(response)}): delete "
                    f"{STATE_FILE} in the folder and run again"
                )
            raise BulkError(f"the export failed: {_answer(response)}")

    # -- downloads ----------------------------------------------------------------------------

    def download_all(self, manifest: dict[str, Any], folder: Path) -> list[tuple[Download, str]]:
        """Every output and error file, `parallel` at a time; (file, local name) each."""
        needs_token = manifest.get("requiresAccessToken") is True
        downloads = list(_downloads(manifest))
        self.progress(f"downloading {len(downloads)} files")
        with ThreadPoolExecutor(max(1, self.parallel)) as pool:
            return list(pool.map(lambda d: (d, self.download(d, folder, needs_token)), downloads))

    def download(self, download: Download, folder: Path, needs_token: bool) -> str:
        """One file into `folder` (its `error/` for an error file); its name there."""
        target = folder / download.folder if download.folder else folder
        target.mkdir(parents=True, exist_ok=True)
        for suffix in (".ndjson.gz", ".ndjson"):
            done = target / f"{download.stem}{suffix}"
            if done.exists():  # complete: renamed only when whole
                return str(done.relative_to(folder))
        send_token = needs_token and _origin(download.url) == self._origin
        part = target / f"{download.stem}.part"
        for attempt in range(self.retry.attempts + 1):
            try:
                suffix = self._fetch(download, part, send_token)
            except _Transient as transient:
                if attempt == self.retry.attempts:
                    raise BulkError(
                        f"{download.url}: {transient} ({attempt + 1} attempts)"
                    ) from None
                self.sleep(
                    transient.wait if transient.wait is not None else self.retry.backoff(attempt)
                )
                continue
            name = target / f"{download.stem}{suffix}"
            part.replace(name)
            _meta(part).unlink(missing_ok=True)
            self.progress(f"downloaded {name.relative_to(folder)}")
            return str(name.relative_to(folder))
        raise AssertionError("unreachable")

    def _fetch(self, download: Download, part: Path, send_token: bool) -> str:
        """Fetch (or go on fetching) into `part`; the suffix for its encoding. _Transient
        when it may pass on a retry."""
        meta = _read_meta(part)
        have = part.stat().st_size if part.exists() and meta else 0
        headers = {"Accept": "application/fhir+ndjson", "Accept-Encoding": "gzip"}
        if have:
            headers["Range"] = f"bytes={have}-"
            if meta.get("validator"):
                headers["If-Range"] = meta["validator"]
        response = self._request(
            "GET", download.url, headers, what=download.url, token=send_token, stream=True
        )
        with response:
            status = response.status_code
            if _transient(response):
                raise _Transient(
                    f"HTTP {status}", retry_after(response.headers.get("Retry-After"), None)
                )
            if status == 401 and not send_token:
                raise BulkError(
                    f"{download.url}: HTTP 401: the access token is sent only to the server the "
                    "export was started at, and only when the manifest says requiresAccessToken"
                )
            if status in (404, 410):
                raise BulkError(
                    f"{download.url} is gone ({_answer(response)}): the export expired; run it again in a new folder"
                )
            if status not in (200, 206):
                raise BulkError(f"{download.url}: {_answer(response)}")
            encoding = response.headers.get("Content-Encoding", "identity").lower()
            resumed = (
                status == 206
                and _range_start(response) == have
                and meta.get("encoding") == encoding
            )
            if not resumed:
                have = 0
                meta = {"encoding": encoding, "validator": _validator(response)}
                _write_json(_meta(part), meta)
            expected = _expected_length(response, have)
            with part.open("ab" if resumed else "wb") as sink:
                try:
                    for block in response.raw.stream(CHUNK, decode_content=False):
                        sink.write(block)
                except (urllib3.exceptions.HTTPError, requests.RequestException, OSError) as error:
                    raise _Transient(
                        f"the connection broke ({type(error).__name__})", None
                    ) from None
        size = part.stat().st_size
        if expected is not None and size < expected:
            raise _Transient(f"the connection broke at byte {size} of {expected}", None)
        suffix = ".ndjson.gz" if encoding == "gzip" else ".ndjson"
        _check_whole(part, encoding, download)
        return suffix

    # -- one request, authorised ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        what: str,
        token: bool | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """One request, with the token when it goes to the export's server (`token`: as the
        caller decides for a file); a 401 renews the token once. Connection errors are
        retried here for kick-off and status, raised as _Transient for files."""
        send = self.auth is not None and (
            token if token is not None else _origin(url) == self._origin
        )
        bearer = self._token() if send else None
        for attempt in range(self.retry.attempts + 1):
            sent = {**headers, **({"Authorization": f"Bearer {bearer}"} if bearer else {})}
            try:
                # requests drops the Authorization header when a redirect leaves the host
                response = self._session().request(
                    method, url, headers=sent, timeout=TIMEOUT, stream=stream
                )
            except requests.RequestException as error:
                if stream:
                    raise _Transient(f"cannot connect ({type(error).__name__})", None) from None
                if attempt == self.retry.attempts:
                    raise BulkError(
                        f"{what}: cannot reach {_origin(url)} ({type(error).__name__})"
                    ) from None
                self.sleep(self.retry.backoff(attempt))
                continue
            if response.status_code == 401 and bearer and self.auth is not None:
                response.close()
                bearer = self._renew(bearer)
                sent = {**headers, "Authorization": f"Bearer {bearer}"}
                response = self._session().request(
                    method, url, headers=sent, timeout=TIMEOUT, stream=stream
                )
            if response.status_code == 401:
                raise BulkError(
                    f"{what}: the server refused the request (HTTP 401)"
                    + (
                        ""
                        if self.auth
                        else ": it needs authorisation, give --client-id and --key-file"
                    )
                )
            if response.status_code == 403:
                raise BulkError(
                    f"{what}: forbidden (HTTP 403): the client's scopes do not allow it"
                )
            return response
        raise AssertionError("unreachable")

    def _token(self) -> str:
        assert self.auth is not None
        try:
            return self.auth.token()
        except AuthError as error:
            raise BulkError(str(error)) from None

    def _renew(self, rejected: str) -> str:
        assert self.auth is not None
        self.progress("the access token was refused (expired?): renewing it")
        try:
            return self.auth.renew(rejected)
        except AuthError as error:
            raise BulkError(str(error)) from None

    def _session(self) -> requests.Session:
        """One session per thread (requests' sessions are not made to be shared)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = new_session(self.base_url)
        return session


class _Transient(Exception):
    """What may pass on a retry; `wait`: the server's Retry-After, when it said one."""

    def __init__(self, reason: str, wait: float | None) -> None:
        super().__init__(reason)
        self.wait = wait


def new_session(base_url: str) -> requests.Session:
    """A session that reads the proxy and CA bundle from the environment once, and never
    ~/.netrc (the only credential it sends is the token)."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = get_environ_proxies(base_url)
    session.verify = (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    )
    return session


def retry_after(value: str | None, default: float | None) -> float:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP-date (RFC 9110
    10.2.3), at most MAX_WAIT; `default` (else 1 s) when absent or unreadable."""
    fallback = 1.0 if default is None else default
    if not value:
        return fallback
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_WAIT)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return fallback
    return min(max(0.0, moment.timestamp() - time.time()), MAX_WAIT)


def _transient(response: requests.Response) -> bool:
    if response.status_code in RETRYABLE:
        return True
    if response.status_code != 500:
        return False
    body = _body(response)
    issues = body.get("issue") if isinstance(body, dict) else None
    return isinstance(issues, list) and any(
        isinstance(i, dict) and i.get("code") == "transient" for i in issues
    )


def _body(response: requests.Response) -> Any:
    try:
        return orjson.loads(response.content[:65536])
    except (orjson.JSONDecodeError, requests.RequestException):
        return None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def _downloads(manifest: dict[str, Any]) -> Iterator[Download]:
    """The files of a manifest, each with a local name: TYPE.NNN per type, in order."""
    numbers: dict[tuple[str, str], int] = {}
    for kind, folder in (("output", ""), ("error", ERROR_FOLDER)):
        for index, entry in enumerate(manifest.get(kind) or []):
            resource_type = entry.get("type") if isinstance(entry.get("type"), str) else "Resource"
            safe = "".join(c for c in resource_type if c.isalnum()) or "Resource"
            number = numbers.get((kind, safe), 0)
            numbers[(kind, safe)] = number + 1
            count = entry.get("count")
            yield Download(
                entry["url"],
                f"{safe}.{number:03d}",
                kind,
                index,
                count if isinstance(count, int) and not isinstance(count, bool) else None,
                folder,
            )


def _manifest(response: requests.Response) -> dict[str, Any]:
    """The completed export's manifest, checked for what the downloads need."""
    try:
        manifest = response.json()
    except ValueError:
        raise BulkError("the export finished with a manifest that is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
        raise BulkError("the export finished with a manifest without an output list")
    for kind in ("output", "error"):
        entries = manifest.get(kind) or []
        if not isinstance(entries, list) or not all(
            isinstance(e, dict)
            and isinstance(e.get("url"), str)
            and e["url"].startswith(("https://", "http://"))
            for e in entries
        ):
            raise BulkError(f"the manifest's {kind} list has an entry without an http(s) url")
    return manifest


def _answer(response: requests.Response) -> str:
    """HTTP status and the first diagnostics of an OperationOutcome body, in one line."""
    said = f"HTTP {response.status_code}"
    body = _body(response)
    issues = body.get("issue") if isinstance(body, dict) else None
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        details = issue.get("details")
        text = issue.get("diagnostics") or (
            details.get("text") if isinstance(details, dict) else None
        )
        if isinstance(text, str) and text:
            return f"{said}: {' '.join(text.split())[:300]}"
    return said


def _range_start(response: requests.Response) -> int | None:
    """The first byte of a 206's Content-Range ("bytes 100-199/200")."""
    value = response.headers.get("Content-Range", "")
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return None


def _expected_length(response: requests.Response, have: int) -> int | None:
    """The size the part must reach: what it has plus the body's Content-Length."""
    length = response.headers.get("Content-Length")
    return have + int(length) if length and length.isdigit() else None


def _validator(response: requests.Response) -> str | None:
    """A strong ETag or Last-Modified, for If-Range when resuming (RFC 9110 13.1.5)."""
    etag = response.headers.get("ETag")
    if etag and not etag.startswith("W/"):
        return etag
    return response.headers.get("Last-Modified")


def _check_whole(part: Path, encoding: str, download: Download) -> None:
    """A gzip stream must end properly, and the lines match the manifest's count."""
    try:
        lines = 0
        with gzip.open(part, "rb") if encoding == "gzip" else part.open("rb") as stream:
            for line in stream:
                lines += bool(line.strip())
    except (OSError, EOFError, zlib.error) as error:
        part.unlink()
        raise _Transient(f"the file arrived damaged ({type(error).__name__})", None) from None
    if download.count is not None and lines != download.count:
        part.unlink()
        raise _Transient(f"{lines} resources arrived, the manifest says {download.count}", None)


def _check_empty(folder: Path) -> None:
    """A new export goes to a folder without export files: one left there would be taken as
    complete, another export's data as this one's."""
    left = [
        p.name for p in folder.rglob("*") if p.name.endswith((".ndjson", ".ndjson.gz", ".part"))
    ]
    if left:
        raise BulkError(
            f"{folder} already holds export files ({', '.join(sorted(left)[:3])}...): choose an "
            "empty --out folder"
        )


def _meta(part: Path) -> Path:
    return part.with_name(part.name + ".json")


def _read_meta(part: Path) -> dict[str, Any]:
    try:
        meta = orjson.loads(_meta(part).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _write_json(path: Path, value: Any) -> None:
    """Write whole or not at all: a temporary file, then a rename."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(orjson.dumps(value, option=orjson.OPT_INDENT_2))
    temporary.replace(path)
