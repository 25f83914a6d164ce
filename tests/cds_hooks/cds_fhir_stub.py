"""A tiny FHIR search over fixture resources, and an HTTP stub FHIR server built on it.

Only what the service's prefetch templates use: read by id; `patient`, token `code`/`status`/
`modality` (comma = OR, `system|code` or bare code), `date=ge...`, `_sort=-date`, `_count`,
with `next` paging. Searches follow FHIR semantics closely enough to show when a template is
too narrow for the rules (a resource without the searched date does not match).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

Resource = dict[str, Any]

_DATE_PATHS = {
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "ImagingStudy": ("started",),
}
_SORT_PATHS = {
    **_DATE_PATHS,
    "MedicationRequest": ("authoredOn",),
}


def _get(resource: Resource, path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _first_date(resource: Resource, paths: Iterable[str]) -> str | None:
    for path in paths:
        value = _get(resource, path)
        if isinstance(value, str):
            return value
    return None


def _subject_is(resource: Resource, patient_id: str) -> bool:
    if resource.get("resourceType") == "Patient":
        return resource.get("id") == patient_id
    subject = resource.get("subject") or resource.get("patient")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    return isinstance(reference, str) and reference.split("/")[-1] == patient_id


def _codings(resource: Resource, parameter: str) -> list[tuple[str | None, str | None]]:
    if parameter == "category":
        return [
            (coding.get("system"), coding.get("code"))
            for concept in resource.get("category") or ()
            for coding in concept.get("coding") or ()
        ]
    if parameter == "modality":
        return [
            (series.get("modality", {}).get("system"), series.get("modality", {}).get("code"))
            for series in resource.get("series") or ()
        ]
    concept = resource.get("type") if parameter == "type" else resource.get("code")
    if resource.get("resourceType") == "MedicationRequest":
        concept = resource.get("medicationCodeableConcept")
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return [(c.get("system"), c.get("code")) for c in codings if isinstance(c, dict)]


def _token_matches(resource: Resource, parameter: str, value: str) -> bool:
    wanted = value.split(",")
    if parameter == "status":
        return resource.get("status") in wanted
    have = _codings(resource, parameter)
    for token in wanted:
        system, _, code = token.rpartition("|")
        for have_system, have_code in have:
            if have_code == code and (not system or have_system == system):
                return True
    return False


def search(resources: Iterable[Resource], query: str) -> list[Resource]:
    """Every resource a FHIR server would match for a relative read or search URL, sorted
    as asked; `_count` is the page size, applied by the caller."""
    path, _, query_string = query.partition("?")
    resources = list(resources)
    if "/" in path:
        resource_type, resource_id = path.split("/", 1)
        return [
            r
            for r in resources
            if r.get("resourceType") == resource_type and r.get("id") == resource_id
        ]
    resource_type = path
    params = parse_qsl(query_string, keep_blank_values=True)
    found = [r for r in resources if r.get("resourceType") == resource_type]
    sort: str | None = None
    for name, value in params:
        if name == "patient":
            found = [r for r in found if _subject_is(r, value)]
        elif name in ("code", "status", "modality", "type", "category"):
            found = [r for r in found if _token_matches(r, name, value)]
        elif name in ("date", "authored"):
            since = value[2:] if value.startswith("ge") else value
            dated = [(r, _first_date(r, _DATE_PATHS.get(resource_type, ()))) for r in found]
            found = [r for r, when in dated if when is not None and when[:10] >= since[:10]]
        elif name == "_sort":
            sort = value
        elif name.startswith("_"):
            continue
        else:
            raise ValueError(f"stub FHIR search does not know {name!r}")
    if sort and sort.startswith("-"):
        paths = _SORT_PATHS.get(resource_type, ())
        found.sort(key=lambda r: _first_date(r, paths) or "", reverse=True)
    return found


def page_size(query: str, default: int) -> int:
    for name, value in parse_qsl(query.partition("?")[2]):
        if name == "_count":
            return int(value)
    return default


def searchset(resources: list[Resource], next_url: str | None = None) -> Resource:
    bundle: Resource = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(resources),
        "entry": [{"resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if next_url:
        bundle["link"] = [{"relation": "next", "url": next_url}]
    return bundle


def prefetch_for(
    resources: list[Resource], templates: Iterable[Any], patient_id: str, today: Any
) -> dict[str, Any]:
    """What a CDS client would prefetch: each template run once, one page, null when empty."""
    prefetch: dict[str, Any] = {}
    for template in templates:
        query = template.resolve(patient_id, today)
        found = search(resources, query)[: page_size(query, 100)]
        if query.startswith("Patient/"):
            prefetch[template.key] = found[0] if found else None
        else:
            prefetch[template.key] = searchset(found) if found else None
    return prefetch


class StubFhirServer:
    """A FHIR server on 127.0.0.1 answering reads and searches from resources in memory.

    Pages of `page_size` with `next` links; records the Authorization header of each call.
    `fault` (a callable of the path) may return (status, body) to answer instead.
    """

    def __init__(self, resources: list[Resource] | None = None, page_size: int = 10) -> None:
        self.resources: list[Resource] = list(resources or [])
        self.page_size = page_size
        self.requests: list[tuple[str, str | None]] = []
        self.fault: Callable[[str], tuple[int, bytes] | None] | None = None
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                stub.requests.append((self.path, self.headers.get("Authorization")))
                status, body = stub.answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the service opens a dozen connections at once

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/fhir"

    def start(self) -> StubFhirServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, raw_path: str) -> tuple[int, bytes]:
        if self.fault is not None:
            faulted = self.fault(raw_path)
            if faulted is not None:
                return faulted
        parts = urlsplit(raw_path)
        path = parts.path.removeprefix("/fhir/")
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        offset = int(params.pop("_offset", "0"))
        query = path + ("?" + urlencode(params, safe="|,:/") if params else "")
        found = search(self.resources, query)
        if "?" not in query and "/" in path:
            if not found:
                return 404, json.dumps({"resourceType": "OperationOutcome", "issue": []}).encode()
            return 200, json.dumps(found[0]).encode()
        size = min(self.page_size, page_size(query, self.page_size))
        page = found[offset : offset + size]
        next_url = None
        if offset + size < len(found):
            following = urlencode({**params, "_offset": offset + size}, safe="|,:/")
            next_url = f"{self.base_url}/{path}?{following}"
        return 200, json.dumps(searchset(page, next_url)).encode()
