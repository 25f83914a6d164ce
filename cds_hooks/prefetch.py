"""The chart a hook is judged on: the client's prefetch, else the service's own FHIR queries.

For each prefetch key: a value that answers its template is used as given; a key that is
missing or null, or whose value does not answer its template (an OperationOutcome, a searchset
that reports an error, a resource of another type), is fetched from `fhirServer` (when the
caller may send its token there), all in parallel within one deadline. A required key that is
missing and cannot be fetched is a 412 (CDS Hooks 2.0, "Prefetch Template"), and so is a failed
or late fetch, or an unusable prefetch, of the data every rule needs (the patient, medications,
conditions). Any other failed or late fetch, or unusable prefetch, is a *gap*: the answer is
given without the rules that read that data, and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from cds_hooks.auth import Caller
from cds_hooks.models import HookRequest, RequestProblem
from cds_hooks.services import PrefetchTemplate
from clinical.reader import local_reference, with_entry_id
from clinical.rules import CORE_INPUTS, Input, rules_reading
from ehr.client import FhirClient, QueryResult, reports_an_error

log = logging.getLogger(__name__)


class PreconditionFailed(Exception):
    """Required data is neither prefetched nor fetchable: 412. `gaps`: the fetches that
    failed, when that is why (for /metrics)."""

    def __init__(self, message: str, missing: Sequence[str], gaps: Sequence[DataGap] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.missing = list(missing)
        self.gaps = tuple(gaps)


@dataclass(frozen=True, slots=True)
class DataGap:
    """A slice of the chart that could not be had, and what it would have held."""

    key: str
    label: str
    reason: str
    provides: frozenset[Input]
    fault: str  # the failed query's Fault class (ehr/client.py), or "no_data"

    @property
    def is_core(self) -> bool:
        return bool(self.provides & CORE_INPUTS)


@dataclass(frozen=True, slots=True)
class Chart:
    resources: tuple[dict[str, Any], ...]
    gaps: tuple[DataGap, ...] = ()
    sources: dict[str, str] = field(
        default_factory=dict
    )  # key -> prefetch|null|fetched|failed|absent

    def withheld(self, rule_id: str) -> bool:
        """True when a rule's data is incomplete, so its finding cannot be trusted."""
        return any(rule_id in rules_reading(gap.provides) for gap in self.gaps)


@dataclass(frozen=True, slots=True)
class FhirAccess:
    """Where and how the service may query the EHR itself."""

    server: str
    token: str | None


def fhir_access(request: HookRequest, caller: Caller) -> tuple[FhirAccess | None, str]:
    """The FHIR access this request gives, or None and why not."""
    if request.fhirServer is None:
        return None, "the request has no fhirServer"
    if not caller.may_use_fhir_server(request.fhirServer):
        log.warning("fhirServer not registered for the calling issuer: not used")
        return None, "fhirServer is not registered for this issuer"
    token = (
        request.fhirAuthorization.access_token.get_secret_value()
        if request.fhirAuthorization
        else None
    )
    return FhirAccess(request.fhirServer, token), ""


ClientFactory = Callable[[FhirAccess], FhirClient]


def gather_chart(
    request: HookRequest,
    patient_id: str,
    templates: Iterable[PrefetchTemplate],
    *,
    access: FhirAccess | None,
    no_access_reason: str,
    client_factory: ClientFactory,
    deadline_seconds: float,
    today: date,
) -> Chart:
    """Resources from the prefetch and from the FHIR server; gaps where neither gave them."""
    prefetch = request.prefetch or {}
    resources: list[dict[str, Any]] = []
    sources: dict[str, str] = {}
    to_fetch: dict[str, PrefetchTemplate] = {}
    missing: list[PrefetchTemplate] = []
    gaps: list[DataGap] = []
    unsatisfied: set[str] = set()  # keys whose prefetch value does not answer their template
    for template in templates:
        value = prefetch.get(template.key)
        problem = None if value is None else unsatisfied_by(template, value)
        if problem is not None:
            unsatisfied.add(template.key)
            log.info("prefetch %s not used: %s", template.key, problem)
        if value is not None and problem is None:
            given = resources_of(value)
            _check_same_patient(template.key, given, patient_id)
            resources.extend(given)
            sources[template.key] = "prefetch"
        elif access is not None:
            to_fetch[template.key] = template
        elif problem is not None:  # as a failed fetch: the rules that read it are withheld
            sources[template.key] = "failed"
            if template.required:
                gaps.append(
                    DataGap(
                        template.key, template.label, problem, template.provides, "bad_response"
                    )
                )
        elif template.key in prefetch:
            sources[template.key] = "null"  # the client had no data for it
        elif template.required:
            missing.append(template)
        else:
            sources[template.key] = "absent"
    if missing:
        keys = [t.key for t in missing]
        raise PreconditionFailed(
            f"prefetch is missing {', '.join(keys)} and the service cannot fetch it: {no_access_reason}",
            keys,
        )

    if to_fetch and access is not None:
        queries = {key: t.resolve(patient_id, today) for key, t in to_fetch.items()}
        with client_factory(access) as client:
            results = client.fetch_all(queries, deadline_seconds=deadline_seconds)
        for key, template in to_fetch.items():
            result = results[key]
            resources.extend(result.resources)
            sources[key] = "fetched" if result.usable else "failed"
            # a null key (the client had no data) that fails stays "no data"
            asked_for = key not in prefetch or key in unsatisfied
            if not result.usable and template.required and asked_for:
                gaps.append(
                    DataGap(
                        key,
                        template.label,
                        _reason(result),
                        template.provides,
                        result.fault or "no_data",
                    )
                )
    core = [gap for gap in gaps if gap.is_core]
    if core:  # no rule can be trusted without the patient, medications and conditions
        raise PreconditionFailed(
            "could not read the data every check needs: "
            + "; ".join(f"{gap.label} ({gap.reason})" for gap in core),
            [gap.key for gap in core],
            core,
        )
    return Chart(tuple(resources), tuple(gaps), sources)


def _check_same_patient(key: str, resources: list[dict[str, Any]], patient_id: str) -> None:
    """Prefetched data about another patient is refused, never judged. A subject is read as
    the core reads references: relative, absolute or version-specific ("Patient/p1/_history/2"
    is about p1); one that names no Patient (a urn:uuid) cannot be told and is let through."""
    own = f"Patient/{patient_id}"
    for resource in resources:
        if resource.get("resourceType") == "Patient":
            other = resource.get("id") not in (None, patient_id)
        else:
            subject = resource.get("subject") or resource.get("patient")
            reference = subject.get("reference") if isinstance(subject, dict) else None
            other = (
                isinstance(reference, str)
                and "Patient/" in reference
                and local_reference(reference) != own
            )
        if other:
            raise RequestProblem(
                "the prefetch holds data about another patient than context.patientId",
                [{"field": f"prefetch.{key}", "problem": "not about context.patientId"}],
            )


def _reason(result: QueryResult) -> str:
    reason = result.reason or "no data"
    return f"{reason} (after {result.pages} pages)" if result.pages else reason


def unsatisfied_by(template: PrefetchTemplate, value: Any) -> str | None:
    """Why a prefetch value does not answer its template, or None when it does (CDS Hooks 2.0:
    "It is the CDS Service's responsibility to check prefetched data against its template").
    An error the client got instead of the data is not "none on record"; the reason names
    resource types only, never a value."""
    kind = value.get("resourceType") if isinstance(value, dict) else None
    if kind == "OperationOutcome":
        return "the EHR sent an error (OperationOutcome) instead of the data"
    if template.is_search:
        if kind != "Bundle":  # its resourceType is the client's text: not echoed
            return "the EHR sent a single resource instead of search results"
        if any(_error_outcome(entry) for entry in value.get("entry") or ()):
            return "the EHR's search reported an error"
        return None
    if not any(r.get("resourceType") == template.resource_type for r in resources_of(value)):
        return f"the EHR sent no {template.resource_type}"
    return None


def _error_outcome(entry: Any) -> bool:
    """A searchset entry (search.mode "outcome") whose OperationOutcome says the search failed,
    as the service's own queries read one (`ehr.client.reports_an_error`)."""
    if not isinstance(entry, dict):
        return False
    search = entry.get("search")
    if not isinstance(search, dict) or search.get("mode") != "outcome":
        return False
    return reports_an_error(entry.get("resource"))


def resources_of(value: Any) -> list[dict[str, Any]]:
    """A prefetch value as resources: a Bundle's entries, or the resource itself."""
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") != "Bundle":
        return [value]
    found = []
    for entry in value.get("entry") or ():
        if not isinstance(entry, dict):
            continue
        search = entry.get("search")
        if isinstance(search, dict) and search.get("mode") == "outcome":
            continue
        resource = entry.get("resource")
        if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
            found.append(with_entry_id(resource, entry.get("fullUrl")))
    return found


def merge(first: Iterable[dict[str, Any]], then: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Resources from both, each (type, id) once; `first` wins (draft orders over the chart)."""
    seen: set[tuple[str, str]] = set()
    merged = []
    for resource in (*first, *then):
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id:
            identity = (str(resource.get("resourceType")), resource_id)
            if identity in seen:
                continue
            seen.add(identity)
        merged.append(resource)
    return merged
