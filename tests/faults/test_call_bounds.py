"""What one call may cost (issue 18, finding 7): its CPU grows with its orders, not with their
square, and what it reads from a FHIR server is capped per call; past the cap the data is
marked incomplete on the cards, and the worker's memory stays bounded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests

from clinical import evaluate
from clinical.record import MedicationCourse
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, Keys, anastrozole, hook_body, patient
from tests.faults.fault_fhir_server import Fault, FaultyFhirServer, json_body
from tests.security.sec_live_server import live_service

PATIENT_ID = "pat-bounds"
TOKEN = "bounds-suite-fhir-token-5e1c"


def many_orders(count: int) -> list[dict[str, Any]]:
    """A patient with `count` anastrozole orders, one a day, half of them still active."""
    start = datetime(2014, 1, 1)
    return [
        patient(PATIENT_ID),
        *(
            anastrozole(
                f"rx-{n}",
                patient_id=PATIENT_ID,
                authored=(start + timedelta(days=n)).date().isoformat(),
                status="active" if n % 2 else "completed",
            )
            for n in range(count)
        ),
    ]


def test_a_charts_orders_are_never_compared_pairwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """4,000 orders took 22 s: each course was looked up in a list by dataclass equality."""
    compared = 0
    equal = MedicationCourse.__eq__

    def counting(self: MedicationCourse, other: object) -> bool:
        nonlocal compared
        compared += 1
        return equal(self, other)

    monkeypatch.setattr(MedicationCourse, "__eq__", counting)
    evaluate(many_orders(2000), now=datetime(2026, 11, 1, tzinfo=UTC))
    assert compared < 2000  # linear at worst; a pairwise lookup makes about a million


# -- bytes from the FHIR server --------------------------------------------------------------------

PAGE_BYTES = 15 * 1024 * 1024  # what the attack's server sent


def huge_page(path: str) -> Fault | None:
    """Every search answers a 15 MB searchset (a valid one: padding in a resource's text)."""
    if not path.startswith("/fhir/Observation"):
        return None
    filler = {"resourceType": "Observation", "id": "o1", "status": "final", "note": [{"text": ""}]}
    filler["note"][0]["text"] = "x" * PAGE_BYTES
    return Fault(body=json_body({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"resource": filler, "search": {"mode": "match"}}
    ]}))  # fmt: skip


@pytest.fixture(scope="module")
def fhir() -> Iterator[FaultyFhirServer]:
    server = FaultyFhirServer(many_orders(3)).start()
    server.fault = huge_page
    yield server
    server.stop()


def _peak_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.integration
def test_a_fhir_server_sending_huge_pages_is_read_up_to_the_cap_and_the_cards_say_so(
    tmp_path: Path, keys: Keys, fhir: FaultyFhirServer
) -> None:
    with live_service(tmp_path, keys, workers=1, fhir_servers=(fhir.base_url,)) as service:
        (worker,) = service.worker_pids()
        before = _peak_memory_kib(worker)
        path = f"/cds-services/{PATIENT_VIEW}"
        body = hook_body(patient_id=PATIENT_ID)
        body["fhirServer"] = fhir.base_url
        body["fhirAuthorization"] = {
            "access_token": TOKEN,
            "token_type": "Bearer",
            "scope": "patient/*.read",
        }
        answer = requests.post(
            f"{service.base}{path}", json=body, headers=service.headers(path), timeout=30
        )
        assert answer.status_code == 200
        cards = {card["source"]["topic"]["code"]: card for card in answer.json()["cards"]}
        detail = cards["data-incomplete"]["detail"]
        assert "too much data" in detail or "bytes for one call" in detail, detail
        grown_mib = (_peak_memory_kib(worker) - before) / 1024
        # 8 MiB read at most (fhir_max_bytes_per_call), parsed: well under the 660 MB
        # growth one call caused with no cap
        assert grown_mib < 200, grown_mib
        time.sleep(0.2)
        assert TOKEN not in service.log.read_text()


def test_the_byte_cap_is_one_calls_not_each_querys(tmp_path: Path) -> None:
    """Thirteen queries of 1 MB each stay under a 16 MB per-response limit, but not under an
    8 MB cap for the call: the client stops them all."""
    from ehr.client import ClientLimits, FhirClient

    entries = [
        {
            "resource": {
                "resourceType": "Observation",
                "id": "o",
                "note": [{"text": "x" * (1024 * 1024)}],
            }
        }
    ]
    page = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries})
    server = FaultyFhirServer([]).start()
    server.fault = lambda path: Fault(body=page)
    try:
        client = FhirClient(server.base_url, limits=ClientLimits(max_call_bytes=8 * 1024 * 1024))
        queries = {f"q{n}": f"Observation?code={n}" for n in range(13)}
        results = client.fetch_all(queries, deadline_seconds=20)
        stopped = [r for r in results.values() if not r.usable]
        assert stopped and all("bytes for one call" in (r.reason or "") for r in stopped)
        assert sum(len(r.resources) for r in results.values()) <= 8
    finally:
        server.stop()
