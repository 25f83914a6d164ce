"""A day of traffic through the real server (hook calls with prefetch and with FHIR fetches,
FHIR faults, feedback, refused and malformed calls), then the whole log is searched for every
token and every patient identifier used: none may appear."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from tests.cds_hooks.cds_helpers import (
    ORDER_SIGN,
    PATIENT_VIEW,
    Keys,
    anastrozole,
    bundle,
    empty_prefetch,
    estradiol_result,
    patient,
    trt_order,
)
from tests.faults.fault_fhir_server import Fault, FaultyFhirServer
from tests.security.sec_live_server import LiveService, live_service

pytestmark = pytest.mark.integration

PATIENTS = 60  # each seen with and without prefetch, signed an order, given feedback


def chart(patient_id: str, mrn: str) -> list[dict[str, Any]]:
    person = patient(patient_id)
    person["identifier"] = [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": mrn}]
    person["name"] = [{"family": f"Family{mrn[-4:]}", "given": ["Given"]}]
    return [
        person,
        anastrozole(f"rx-{patient_id}", patient_id=patient_id),
        trt_order(f"rxt-{patient_id}", patient_id=patient_id),
        estradiol_result(f"e2-{patient_id}", 11.0, patient_id=patient_id),
    ]


class Day:
    """The secrets a day of traffic used: every one must stay out of the log."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.patients = [
            (f"day-{secrets.token_hex(5)}", f"MRN{secrets.randbelow(10**9):09d}")
            for _ in range(PATIENTS)
        ]

    def keep(self, *values: str) -> None:
        self.secrets.update(values)


@pytest.fixture(scope="module")
def day(
    tmp_path_factory: pytest.TempPathFactory, keys: Keys
) -> Iterator[tuple[LiveService, Day, str]]:
    plan = Day()
    resources = [r for pid, mrn in plan.patients for r in chart(pid, mrn)]
    fhir = FaultyFhirServer(resources).start()
    # Some FHIR queries fail: their gaps are logged, and must be logged without the patient.
    fhir.fault = lambda path: (
        Fault(status=503, headers={"Retry-After": "60"}) if "24325-3" in path else None
    )
    try:
        with live_service(
            tmp_path_factory.mktemp("day"),
            keys,
            fhir_servers=(fhir.base_url,),
            workers=2,
            log_level="DEBUG",
        ) as service:
            _run_the_day(service, plan, fhir)
            yield service, plan, service.log.read_text(errors="replace")
    finally:
        fhir.stop()


def _signed(service: LiveService, plan: Day, path: str) -> dict[str, str]:
    headers = service.headers(path)
    plan.keep(headers["Authorization"].split()[1])
    return headers


def _one_patient(service: LiveService, plan: Day, fhir: FaultyFhirServer, index: int) -> None:
    patient_id, mrn = plan.patients[index]
    plan.keep(patient_id, mrn)
    view = f"/cds-services/{PATIENT_VIEW}"
    resources = chart(patient_id, mrn)
    prefetch = empty_prefetch()
    prefetch.update(
        patient=resources[0],
        medicationRequests=bundle(resources[1], resources[2]),
        estradiol=bundle(resources[3]),
    )
    http = requests.Session()

    def post(path: str, body: Any, headers: dict[str, str]) -> requests.Response:
        return http.post(f"{service.base}{path}", json=body, headers=headers, timeout=15)

    context = {"userId": "Practitioner/dr-1", "patientId": patient_id}
    with_prefetch = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": prefetch,
    }
    first = _signed(service, plan, view)
    cards = post(view, with_prefetch, first).json()["cards"]

    fhir_token = f"fhir-{secrets.token_urlsafe(24)}"
    plan.keep(fhir_token)
    fetched = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            **context,
            "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": resources[1]}]},
        },
        "fhirServer": fhir.base_url,
        "fhirAuthorization": {
            "access_token": fhir_token,
            "token_type": "Bearer",
            "scope": "patient/*.read",
        },
    }
    sign = f"/cds-services/{ORDER_SIGN}"
    assert post(sign, fetched, _signed(service, plan, sign)).status_code == 200

    feedback_path = f"{view}/feedback"
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "overrideReason": {"userComment": f"patient {patient_id} declined"},
                "outcomeTimestamp": "2026-11-01T12:00:00Z",
            }
            for card in cards
        ]
    }
    assert post(feedback_path, feedback, _signed(service, plan, feedback_path)).status_code == 200

    # the day's mistakes and attacks, one of each kind in turn
    headers = _signed(service, plan, view)
    mistakes: list[tuple[Any, dict[str, str], int]] = [
        ({**with_prefetch, "hookInstance": "not-a-uuid"}, headers, 400),  # malformed
        (with_prefetch, first, 401),  # the first call's JWT again: replay
        ({**with_prefetch, "prefetch": None}, _signed(service, plan, view), 412),  # no data
        (
            {**with_prefetch, "context": {**context, "patientId": f"{patient_id}x"}},
            _signed(service, plan, view),
            400,  # prefetch about another patient
        ),
        (with_prefetch, {"Authorization": f"Bearer {fhir_token}"}, 401),  # not a JWT
    ]
    kind = mistakes[index % len(mistakes)]
    assert post(view, kind[0], kind[1]).status_code == kind[2]
    if index % 7 == 0:
        raw = http.post(
            f"{service.base}{view}",
            data=f'{{"context": {{"patientId": "{patient_id}", "mrn": "{mrn}"'.encode(),
            headers={**_signed(service, plan, view), "Content-Type": "application/json"},
            timeout=15,
        )
        assert raw.status_code == 400


def _run_the_day(service: LiveService, plan: Day, fhir: FaultyFhirServer) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: _one_patient(service, plan, fhir, i), range(PATIENTS)))


def test_the_day_was_logged(day: tuple[LiveService, Day, str]) -> None:
    _, _, log = day
    assert log.count(f"{PATIENT_VIEW}: ") >= PATIENTS  # one line per answered hook call
    assert "liverTests: HTTP 503" in log  # FHIR faults are logged, by key and reason
    assert "replay" in log and "feedback items stored" in log


def test_no_token_or_patient_identifier_appears_in_the_log(
    day: tuple[LiveService, Day, str],
) -> None:
    _, plan, log = day
    assert len(plan.secrets) >= PATIENTS * 6
    leaked = sorted(secret for secret in plan.secrets if secret in log)
    assert leaked == []
    for secret in plan.secrets:  # not even the signature or payload part of a JWT
        for part in secret.split("."):
            if len(part) >= 16:
                assert part not in log
