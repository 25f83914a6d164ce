"""A tiny read-only FHIR R4 server over the fixtures in tests/fixtures/, for the SMART tests.

Reads (`Patient/{id}`) and searches by patient (`Observation?patient=...&code=...`), paged
with `_count` (never more than `page_size` a page, so paging is exercised) and `next`
links; every request must carry a bearer token the sandbox EHR issued for that patient
with a scope that covers the resource type. `fail_with` makes it answer an error instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, jsonify, request

from sandbox.ehr_auth import SandboxEhr
from tests.conftest import read_fixture, resources_of


@dataclass
class FhirStub:
    ehr: SandboxEhr
    page_size: int = 4
    patients: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_with: int | None = None  # answer this HTTP status to every FHIR request
    requests: list[str] = field(default_factory=list)  # paths asked for, for assertions

    def load_fixture(self, name: str) -> str:
        """Serve a fixture; its Patient id."""
        resources = resources_of(read_fixture(name))
        patient = next(r for r in resources if r["resourceType"] == "Patient")
        self.patients[patient["id"]] = resources
        return str(patient["id"])

    def blueprint(self) -> Blueprint:
        bp = Blueprint("fhir_stub", __name__)
        path = self.ehr.fhir_path

        @bp.get(f"{path}/<resource_type>/<resource_id>")
        def read(resource_type: str, resource_id: str) -> Response:
            return self._read(resource_type, resource_id)

        @bp.get(f"{path}/<resource_type>")
        def search(resource_type: str) -> Response:
            return self._search(resource_type)

        return bp

    def _failure(self) -> Response | None:
        self.requests.append(request.full_path)
        if self.fail_with is None:
            return None
        response = jsonify(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "exception"}],
            }
        )
        response.status_code = self.fail_with
        if self.fail_with == 401:
            response.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response

    def _read(self, resource_type: str, resource_id: str) -> Response:
        failure = self._failure()
        if failure is not None:
            return failure
        patient = resource_id if resource_type == "Patient" else None
        access = self.ehr.check_access(request, resource_type, patient, search=False)
        if isinstance(access, Response):
            return access
        for resource in self.patients.get(access.context.patient, ()):
            if resource["resourceType"] == resource_type and resource.get("id") == resource_id:
                return _fhir(resource)
        response = jsonify(
            {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": "not-found"}],
            }
        )
        response.status_code = 404
        return response

    def _search(self, resource_type: str) -> Response:
        failure = self._failure()
        if failure is not None:
            return failure
        patient = (request.args.get("patient") or request.args.get("subject") or "").removeprefix(
            "Patient/"
        )
        access = self.ehr.check_access(request, resource_type, patient or None, search=True)
        if isinstance(access, Response):
            return access
        wanted = {token for token in request.args.get("code", "").split(",") if token}
        matches = [
            resource
            for resource in self.patients.get(access.context.patient, ())
            if resource["resourceType"] == resource_type
            and _subject(resource) == f"Patient/{access.context.patient}"
            and (not wanted or _codes(resource) & wanted)
        ]
        count = min(int(request.args.get("_count", self.page_size)), self.page_size)
        offset = int(request.args.get("_offset", 0))
        page = matches[offset : offset + count]
        bundle: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": request.url}],
            "entry": [
                {
                    "fullUrl": f"{self.ehr.fhir_base}/{r['resourceType']}/{r.get('id')}",
                    "resource": r,
                    "search": {"mode": "match"},
                }
                for r in page
            ],
        }
        if offset + count < len(matches):
            query = {key: value for key, value in request.args.items() if key != "_offset"}
            query["_offset"] = str(offset + count)
            bundle["link"].append(
                {"relation": "next", "url": f"{request.base_url}?{urlencode(query)}"}
            )
        return _fhir(bundle)


def _fhir(body: dict[str, Any]) -> Response:
    response = jsonify(body)
    response.mimetype = "application/fhir+json"
    return response


def _subject(resource: dict[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        reference = resource.get(key)
        if isinstance(reference, dict):
            return reference.get("reference")
    return None


def _codes(resource: dict[str, Any]) -> set[str]:
    concept = resource.get("code")
    codings = concept.get("coding", []) if isinstance(concept, dict) else []
    return {f"{c.get('system')}|{c.get('code')}" for c in codings if isinstance(c, dict)}
