"""What goes on the wire: search values percent-encoded, the token only below the FHIR base
(over real HTTP on 127.0.0.1), base URLs compared as RFC 3986 says; SMART scopes read."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import pytest

from ehr.client import FhirClient, NextPage, Outcome
from ehr.scopes import Grant, scope_covers
from ehr.urls import canonical_base_url, encode_search, is_absolute_http_url, is_under_base

TOKEN = "secret-token-3b7c"
Answer = Callable[[str], dict[str, Any]]


class Recorder:
    """A FHIR server on 127.0.0.1 that records each path asked for, and who asked."""

    def __init__(self, answer: Answer) -> None:
        self.seen: list[tuple[str, str | None]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps(answer(self.path)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def make_server() -> Iterator[Callable[[Answer], Recorder]]:
    started: list[Recorder] = []

    def make(answer: Answer) -> Recorder:
        started.append(Recorder(answer))
        return started[-1]

    yield make
    for recorder in started:
        recorder.server.shutdown()
        recorder.server.server_close()


def searchset(*ids: str, next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": {"resourceType": "Observation", "id": i}} for i in ids],
    }
    if next_url:
        body["link"] = [{"relation": "next", "url": next_url}]
    return body


# -- encoding --------------------------------------------------------------------------------------


def test_code_systems_go_out_percent_encoded_as_form_encoding_writes_them(
    make_server: Callable[[Answer], Recorder],
) -> None:
    fhir = make_server(lambda path: searchset("a"))
    with FhirClient(f"{fhir.origin}/fhir") as client:
        client.get(
            "Observation?patient=p1&code=http://loinc.org|2243-4,http://loinc.org|14715-7",
            deadline_seconds=5,
        )
    ((path, _),) = fhir.seen
    assert path == (
        "/fhir/Observation?patient=p1"
        "&code=http%3A%2F%2Floinc.org%7C2243-4,http%3A%2F%2Floinc.org%7C14715-7"
    )
    assert "//" not in path.partition("?")[2]


def test_a_next_link_with_raw_code_systems_is_encoded_too(
    make_server: Callable[[Answer], Recorder],
) -> None:
    def answer(path: str) -> dict[str, Any]:
        if "page=2" in path:
            return searchset("b")
        return searchset("a", next_url="Observation?code=http://loinc.org|2243-4&page=2")

    fhir = make_server(answer)
    with FhirClient(f"{fhir.origin}/fhir") as client:
        result = client.get("Observation?patient=p1", deadline_seconds=5)
    assert [r["id"] for r in result.resources] == ["a", "b"]
    assert fhir.seen[1][0] == "/fhir/Observation?code=http%3A%2F%2Floinc.org%7C2243-4&page=2"


@pytest.mark.parametrize(
    "raw",
    [
        "Observation?patient=p1&code=http://loinc.org|2243-4&_sort=-date&_count=20",
        "MedicationRequest?patient={{context.patientId}}&_include=MedicationRequest:medication",
        "ImagingStudy?modality=http://dicom.nema.org/resources/ontology/DCM|BMD&date=ge2024-01-01",
    ],
)
def test_encoding_is_idempotent_and_decodes_to_what_was_meant(raw: str) -> None:
    encoded = encode_search(raw)
    assert encode_search(encoded) == encoded  # never encoded twice
    query = encoded.partition("?")[2]
    assert not any(character in query for character in ":/|")
    # a client that parses and re-encodes gets the values meant, not %3A
    assert dict(parse_qsl(query)) == dict(parse_qsl(raw.partition("?")[2]))
    assert ("{{context.patientId}}" in encoded) == ("{{" in raw)  # tokens as they are


def test_a_read_and_parameter_names_are_left_as_they_are() -> None:
    assert encode_search("Patient/p1") == "Patient/p1"
    assert encode_search("Observation?code:text=a/b") == "Observation?code:text=a%2Fb"


# -- where the token may go ------------------------------------------------------------------------


def test_a_next_link_to_another_path_on_the_same_host_is_not_sent_the_token(
    make_server: Callable[[Answer], Recorder],
) -> None:
    fhir = make_server(lambda path: searchset("a", next_url=f"{fhir.origin}/admin/Observation"))
    with FhirClient(f"{fhir.origin}/fhir", access_token=TOKEN) as client:
        result = client.get("Observation", deadline_seconds=5)
    assert result.outcome is Outcome.PARTIAL and not result.usable
    assert result.fault == "link_refused"
    assert result.reason == "next link outside the FHIR base path refused"
    assert [path for path, _ in fhir.seen] == ["/fhir/Observation"]


@pytest.mark.parametrize(
    "link",
    ["{o}/fhir-other/Observation", "{o}/fhir/../admin/x", "{o}/fhir/%2e%2e/admin/x", "../admin"],
)
def test_no_next_link_climbs_out_of_the_base_path(
    make_server: Callable[[Answer], Recorder], link: str
) -> None:
    fhir = make_server(lambda path: searchset("a", next_url=link.format(o=fhir.origin)))
    with FhirClient(f"{fhir.origin}/fhir", access_token=TOKEN) as client:
        result = client.get("Observation", deadline_seconds=5)
    assert result.fault == "link_refused"
    assert len(fhir.seen) == 1


def test_a_base_url_with_trailing_space_is_used_without_it(
    make_server: Callable[[Answer], Recorder],
) -> None:
    fhir = make_server(lambda path: {"resourceType": "Patient", "id": "p1"})
    with FhirClient(f"HTTP://127.0.0.1:{fhir.origin.rsplit(':', 1)[1]}/fhir/ ") as client:
        assert client.get("Patient/p1", deadline_seconds=5).usable
    assert fhir.seen[0][0] == "/fhir/Patient/p1"


def test_the_next_page_of_someone_elses_search_is_read_below_the_base_only(
    make_server: Callable[[Answer], Recorder],
) -> None:
    fhir = make_server(lambda path: searchset("b"))
    with FhirClient(f"{fhir.origin}/fhir", access_token=TOKEN) as client:
        results = client.fetch_all(
            {
                "ours": NextPage(f"{fhir.origin}/fhir/Observation?page=2"),
                "theirs": NextPage(f"{fhir.origin}/other/Observation?page=2"),
            },
            deadline_seconds=5,
        )
    assert [r["id"] for r in results["ours"].resources] == ["b"]
    assert results["theirs"].fault == "link_refused"
    assert [path for path, _ in fhir.seen] == ["/fhir/Observation?page=2"]


@pytest.mark.parametrize(
    ("url", "base", "under"),
    [
        ("https://ehr.example/fhir/Observation", "https://ehr.example/fhir", True),
        ("https://EHR.example/fhir/Observation", "HTTPS://ehr.example/fhir/", True),
        ("https://ehr.example/fhir", "https://ehr.example/fhir", True),
        ("https://ehr.example/fhirx/Observation", "https://ehr.example/fhir", False),
        ("https://ehr.example/admin", "https://ehr.example/fhir", False),
        ("https://ehr.example/fhir/./Observation", "https://ehr.example/fhir", False),
        ("https://ehr.example:8443/fhir/x", "https://ehr.example/fhir", False),
        ("http://ehr.example/fhir/x", "https://ehr.example/fhir", False),
    ],
)
def test_what_is_below_a_base(url: str, base: str, under: bool) -> None:
    assert is_under_base(url, base) is under


def test_scheme_and_host_compare_without_case_path_exactly() -> None:
    assert canonical_base_url(" HTTP://EHR.Example:8080/FHIR/ ") == "http://ehr.example:8080/FHIR"
    assert is_absolute_http_url("HTTPS://ehr.example/fhir")
    assert not is_absolute_http_url("ftp://ehr.example/fhir")
    assert not is_absolute_http_url("https:///fhir")


# -- scopes ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "resource", "search", "allowed"),
    [
        ("patient/Observation.read", "Observation", True, True),  # SMART v1
        ("patient/Observation.read", "Observation", False, True),
        ("patient/Observation.rs", "Observation", True, True),  # SMART v2
        ("patient/Observation.r", "Observation", True, False),
        ("patient/Observation.r patient/Observation.s", "Observation", True, True),  # split
        ("patient/Observation.s", "Observation", False, False),
        ("user/*.rs", "Condition", True, True),
        ("patient/*.*", "Medication", False, True),  # the CDS Hooks sandbox's v1 wildcard
        ("system/Observation.cruds", "Observation", True, True),
        ("patient/Observation.write", "Observation", False, False),
        ("patient/Observation.rs?category=laboratory", "Observation", True, True),
        ("patient/Condition.rs", "Observation", True, False),
        ("launch openid fhirUser online_access", "Patient", False, False),
        ("patient/Observation.xyz Observation.rs", "Observation", True, False),
    ],
)
def test_a_grant_allows_what_its_scopes_say(
    scope: str, resource: str, search: bool, allowed: bool
) -> None:
    assert Grant.parse(scope).allows(resource, search=search) is allowed
    assert scope_covers(scope, resource, search=search) is allowed
