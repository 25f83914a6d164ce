"""`anastrozole-cds load`: post synthetic patients to a FHIR server, one transaction each.

Every entry is a PUT with a stable id, so loading twice leaves one copy of each patient.
Errors are values (`Loaded.error`), worded for the integrator, and never show the token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests

from sandbox.patients import SyntheticPatient, sandbox_practitioner, shift_dates

FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True, slots=True)
class Loaded:
    """What loading one patient did."""

    key: str
    patient_id: str
    resources: int
    error: str | None = None
    server_unusable: bool = False  # the other patients would fail the same way: stop

    @property
    def ok(self) -> bool:
        return self.error is None


def transaction_for(patient: SyntheticPatient, base_url: str, *, days: int) -> dict[str, Any]:
    """The patient's transaction Bundle, moved by `days`, with fullUrls on this server, and
    the sandbox's clinician (PUT: one copy however often it is loaded)."""
    bundle: dict[str, Any] = shift_dates(patient.bundle, days)
    practitioner = sandbox_practitioner()
    bundle.setdefault("entry", []).append(
        {
            "resource": practitioner,
            "request": {"method": "PUT", "url": f"Practitioner/{practitioner['id']}"},
        }
    )
    base = base_url.rstrip("/")
    for entry in bundle.get("entry", []):
        entry["fullUrl"] = f"{base}/{entry['request']['url']}"
    return bundle


def load_patient(
    session: requests.Session,
    base_url: str,
    patient: SyntheticPatient,
    *,
    days: int,
    token: str | None = None,
    timeout: float = 30.0,
) -> Loaded:
    """POST one patient's transaction to the server base."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problem = f"the FHIR server URL must start with http:// or https:// (got {base_url!r})"
        return Loaded(patient.key, patient.patient_id, 0, problem, server_unusable=True)
    bundle = transaction_for(patient, base_url, days=days)
    count = len(patient.bundle.get("entry", []))  # the patient's own, not the clinician
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        response = session.post(base_url.rstrip("/"), json=bundle, headers=headers, timeout=timeout)
    except requests.Timeout:
        return Loaded(
            patient.key, patient.patient_id, 0, f"no answer from {base_url} in {timeout:g} s"
        )
    except requests.ConnectionError:
        return Loaded(
            patient.key,
            patient.patient_id,
            0,
            f"cannot connect to {base_url}: is the FHIR server running?",
            server_unusable=True,
        )
    except requests.RequestException as error:
        return Loaded(
            patient.key, patient.patient_id, 0, f"request failed ({type(error).__name__})"
        )
    if response.status_code not in (200, 201):
        return Loaded(patient.key, patient.patient_id, 0, _http_problem(response))
    return Loaded(patient.key, patient.patient_id, count)


def load_patients(
    base_url: str,
    patients: Iterable[SyntheticPatient],
    *,
    days: int,
    token: str | None = None,
    on_done: Callable[[Loaded], None] | None = None,
    session: requests.Session | None = None,
) -> list[Loaded]:
    """Load each patient in turn; `on_done` hears of each (progress). Stops at a dead server."""
    results: list[Loaded] = []
    with session or requests.Session() as http:
        for patient in patients:
            loaded = load_patient(http, base_url, patient, days=days, token=token)
            results.append(loaded)
            if on_done:
                on_done(loaded)
            if loaded.server_unusable:
                break  # the others would fail the same way
    return results


def _http_problem(response: requests.Response) -> str:
    """`HTTP 400: <what the OperationOutcome says>` (or the status alone)."""
    words = f"HTTP {response.status_code}"
    if response.status_code == 401:
        words += " (unauthorized: check --token)"
    elif response.status_code == 403:
        words += " (forbidden: the token may lack write scopes)"
    try:
        body = response.json()
    except ValueError:
        return words
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        texts = []
        for issue in body.get("issue") or []:
            text = issue.get("diagnostics") or (issue.get("details") or {}).get("text")
            if text:
                texts.append(str(text))
        if texts:
            return f"{words}: {'; '.join(texts)[:500]}"
    return words
