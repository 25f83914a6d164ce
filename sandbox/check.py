"""`anastrozole-cds check`: one CDS Hooks call made as an EHR makes it, and its answer.

The prefetch is filled from the FHIR server with the service's own templates (or left out with
`prefetch=False`, so that the service queries the server itself); the request is signed with
the integrator's key, and sent to a running service or to one made in process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import requests
from flask import Flask
from joserfc.jwk import ECKey, KeySet, RSAKey

from ehr.client import ClientLimits, FhirClient
from runtime.settings import ConfigError, ProductSettings, read_settings
from sandbox.ehr_client import (
    DEFAULT_USER,
    SandboxError,
    discovery_prefetch,
    fetch_prefetch,
    hook_context,
    hook_request,
    renewal_draft,
    require_http_url,
    resolve_prefetch,
    resolve_template,
    service_url,
    sign_jwt,
)
from sandbox.patients import all_patients

IN_PROCESS_BASE = "http://anastrozole-cds.in-process"
SANDBOX_ISSUER = "https://sandbox.anastrozole-cds.example"
FETCH_LIMITS = ClientLimits(connect_timeout=5.0, read_timeout=20.0, max_pages=20)


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """What the integrator asked for."""

    fhir_server: str
    patient_id: str
    hook: str = "patient-view"
    service: str | None = None  # base URL of a running service; None: in process
    token: str | None = None  # bearer token for the FHIR server (and fhirAuthorization)
    key: ECKey | RSAKey | None = None
    issuer: str = SANDBOX_ISSUER
    user_id: str = DEFAULT_USER
    draft_orders: list[dict[str, Any]] | None = None
    selections: list[str] | None = None
    prefetch: bool = True
    today: date = field(default_factory=date.today)
    evaluation_time: datetime | None = None  # in process only: judge as of this moment
    config: Path | None = None  # in process only: the service's settings file


@dataclass(frozen=True, slots=True)
class CheckResult:
    status: int
    response: Any  # the service's JSON answer (or its error body)
    request: dict[str, Any]
    prefetch_problems: dict[str, str]


Progress = Callable[[str], None]
# The product's app factory, for a call in process: given by the command line, which composes
# the product (this package sits below it and does not import it).
AppFactory = Callable[[ProductSettings], Flask]


def run_check(
    ask: CheckRequest, progress: Progress | None = None, *, app_factory: AppFactory | None = None
) -> CheckResult:
    """Build the request (prefetch, context, JWT), call the service, return its answer."""
    say = progress or (lambda _message: None)
    require_http_url(ask.fhir_server, what="the FHIR server URL (--fhir-server)")
    if ask.service:
        require_http_url(ask.service, what="the service URL (--service)")
    templates = discovery_prefetch(ask.hook)
    base_context = {"patientId": ask.patient_id, "userId": ask.user_id}
    prefetch: dict[str, Any] | None = None
    problems: dict[str, str] = {}
    with FhirClient(ask.fhir_server, access_token=ask.token, limits=FETCH_LIMITS) as client:
        say("reading the patient")
        _require_patient(client, ask.fhir_server, ask.patient_id)
        drafts = ask.draft_orders
        if ask.hook != "patient-view" and not drafts:
            say("reading the patient's medication orders for a renewal draft")
            orders = client.get(
                resolve_template(templates["medicationRequests"], base_context, ask.today),
                deadline_seconds=30,
            )
            if not orders.usable:
                raise SandboxError(f"cannot read the medication orders: {orders.reason}")
            drafts = [renewal_draft(list(orders.resources), ask.today)]
        context = hook_context(
            ask.hook, ask.patient_id, user_id=ask.user_id, draft_orders=drafts,
            selections=ask.selections,
        )  # fmt: skip
        if ask.prefetch:
            say(f"prefetching {len(templates)} queries from the FHIR server")
            queries = resolve_prefetch(templates, context, ask.today)
            prefetch, problems = fetch_prefetch(client, queries)
    body = hook_request(
        ask.hook, ask.fhir_server, context, prefetch=prefetch, access_token=ask.token
    )
    say("calling the service")
    if ask.service:
        status, answer = _call_over_http(ask, body)
    elif app_factory is not None:
        status, answer = _call_in_process(ask, body, app_factory)
    else:
        raise SandboxError("no service to call: give its URL (--service)")
    return CheckResult(status, answer, body, problems)


def _require_patient(client: FhirClient, fhir_server: str, patient_id: str) -> None:
    """Stop unless the Patient can be read: an EHR calls hooks only for a patient it has."""
    read = client.get(f"Patient/{quote(patient_id, safe='')}", deadline_seconds=30)
    if read.usable and read.resources:
        return
    if read.fault == "connection_failed":
        raise SandboxError(f"cannot connect to {fhir_server}: is the FHIR server running?")
    if read.reason and read.reason.startswith("HTTP 404"):
        by_key = {synthetic.key: synthetic.patient_id for synthetic in all_patients()}
        hint = (
            f"{patient_id!r} is a synthetic patient's key; its Patient id is {by_key[patient_id]}"
            if patient_id in by_key
            else "give a Patient id on that server"
        )
        raise SandboxError(
            f"Patient/{patient_id} not found on {fhir_server}: {hint} "
            f"(`.venv/bin/anastrozole-cds load --fhir-server {fhir_server} --list` lists the "
            "synthetic patients' ids)"
        )
    if read.fault == "unauthorized":
        raise SandboxError(
            f"cannot read Patient/{patient_id} from {fhir_server}: {read.reason}: "
            "give a token that may read it with --token"
        )
    raise SandboxError(f"cannot read Patient/{patient_id} from {fhir_server}: {read.reason}")


def _call_over_http(ask: CheckRequest, body: dict[str, Any]) -> tuple[int, Any]:
    assert ask.service is not None
    url = service_url(ask.service, ask.hook)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if ask.key is not None:
        headers["Authorization"] = f"Bearer {sign_jwt(ask.key, issuer=ask.issuer, audience=url)}"
    try:
        response = requests.post(url, data=orjson.dumps(body), headers=headers, timeout=30)
    except requests.Timeout:
        raise SandboxError(f"no answer from the service at {url} in 30 s") from None
    except requests.ConnectionError:
        raise SandboxError(f"cannot connect to the service at {url}: is it running?") from None
    except requests.RequestException as error:
        raise SandboxError(f"cannot reach the service at {url} ({type(error).__name__})") from None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, {"error": "not JSON", "message": response.text[:300]}


def _call_in_process(
    ask: CheckRequest, body: dict[str, Any], app_factory: AppFactory
) -> tuple[int, Any]:
    """The service made here, trusting only this call's key (an ephemeral one by default)."""
    key = ask.key or ECKey.generate_key("P-384", parameters={"kid": "sandbox-check"}, private=True)
    with tempfile.TemporaryDirectory(prefix="anastrozole-cds-check-") as folder:
        jwks_file = Path(folder) / "jwks.json"
        jwks_file.write_bytes(orjson.dumps(KeySet([key]).as_dict(private=False)))
        overrides: dict[str, Any] = {
            "public_base_url": IN_PROCESS_BASE,
            "store_url": "sqlite://",
            "instance_path": Path(folder),
            "issuers": [
                {"iss": ask.issuer, "jwks_file": str(jwks_file), "fhir_servers": [ask.fhir_server]}
            ],
            "fhir_deadline_seconds": 10.0,
            "log_level": "ERROR",
        }
        if ask.evaluation_time is not None:
            overrides["evaluation_time"] = ask.evaluation_time
        try:
            app = app_factory(read_settings(ask.config, **overrides))
        except ConfigError as error:
            raise SandboxError(str(error)) from None
        url = service_url(IN_PROCESS_BASE, ask.hook)
        token = sign_jwt(key, issuer=ask.issuer, audience=url)
        with app.test_client() as client:
            response = client.post(
                url.removeprefix(IN_PROCESS_BASE),
                data=orjson.dumps(body),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            return response.status_code, response.get_json(silent=True)
