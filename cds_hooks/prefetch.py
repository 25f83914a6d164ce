"""The chart a hook is judged on: the client's prefetch, else the service's own FHIR queries.

Data crosses the boundary complete, or the clinician is told it did not. For each prefetch key:

- a value that answers its template is used as given; a searchset with a `next` link is only
  its first page: the rest is read from `fhirServer` (only below its registered base), or,
  when the service may not, the key is *incomplete*;
- a key that is missing or null, or whose value does not answer its template (an
  OperationOutcome, a searchset that reports an error, a resource of another type), is
  fetched from `fhirServer` when the caller may send its token there and its scope covers the
  query; all in parallel within one deadline;
- what still cannot be had is a *gap* (`DataGap`): the answer is given without the rules that
  read that slice of the chart, and the data-incomplete card says so. A missing key is such a
  gap: CDS Hooks 2.0 tells clients to leave out keys they could not fill.

A medication order that names its drug by reference is read with its Medication: from the
prefetch (`_include`), contained, from the Bundle, or read from `fhirServer`; a drug that
cannot be had and has no name is a gap on the medications. When the data every rule reads
(the patient, medications, conditions) is a gap, nothing can be judged: 412 (CDS Hooks 2.0,
"HTTP Status Codes").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import quote

from cds_hooks.auth import Caller
from cds_hooks.models import HookRequest, RequestProblem
from cds_hooks.services import PrefetchTemplate
from clinical.reader import local_reference, with_entry_id
from clinical.rules import CATALOGUE, CORE_INPUTS, Input, rules_reading
from ehr.client import Deadline, FhirClient, NextPage, QueryResult, next_link, reports_an_error
from ehr.scopes import Grant
from ehr.urls import is_under_base

log = logging.getLogger(__name__)

# Gap reasons besides ehr.client's Fault classes (a fixed set: /metrics labels them).
NOT_SENT = "not_sent"  # the client left the key out, and the service may not query the EHR
MORE_PAGES = "more_pages"  # a paged searchset, and the service may not read the rest
NOT_GRANTED = "not_granted"  # the token's scope does not cover the query
UNRESOLVED = "unresolved_reference"  # an order's Medication could not be had
NO_DATA = "no_data"
MEDICATION_REFERENCES = "medicationReferences"  # the gap key of orders' unresolved drugs


class PreconditionFailed(Exception):
    """The data every rule needs cannot be had: 412. `gaps`: what is missing, and why."""

    def __init__(self, message: str, missing: Sequence[str], gaps: Sequence[DataGap] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.missing = list(missing)
        self.gaps = tuple(gaps)


@dataclass(frozen=True, slots=True)
class DataGap:
    """A slice of the chart that could not be had (or only in part), and what it would have
    held."""

    key: str
    label: str
    reason: str
    provides: frozenset[Input]
    fault: str  # the failed query's Fault class (ehr/client.py), or one of the reasons above

    @property
    def is_core(self) -> bool:
        return bool(self.provides & CORE_INPUTS)


@dataclass(frozen=True, slots=True)
class DataNote:
    """An optional slice that could not be had: its rules are judged, and say it."""

    provides: frozenset[Input]
    text: str


@dataclass(frozen=True, slots=True)
class Chart:
    resources: tuple[dict[str, Any], ...]
    gaps: tuple[DataGap, ...] = ()
    notes: tuple[DataNote, ...] = ()
    # key -> prefetch|null|fetched|failed|absent|incomplete|not_granted|not_sent
    sources: dict[str, str] = field(default_factory=dict)

    def withheld(self, rule_id: str) -> bool:
        """True when a rule's data is incomplete, so its finding cannot be trusted."""
        return any(rule_id in rules_reading(gap.provides) for gap in self.gaps)

    def notes_for(self, rule_id: str) -> tuple[str, ...]:
        """What the rule's finding must say was not available (optional slices it reads)."""
        return tuple(n.text for n in self.notes if rule_id in rules_reading(n.provides))

    def skipped_rules(self) -> list[str]:
        """The rules whose data is incomplete, in catalogue order."""
        if not self.gaps:
            return []
        reading = rules_reading(frozenset().union(*(gap.provides for gap in self.gaps)))
        return [rule.id for rule in CATALOGUE if rule.id in reading]


@dataclass(frozen=True, slots=True)
class FhirAccess:
    """Where and how the service may query the EHR itself."""

    server: str  # the registered base URL the request named, never the request's own text
    token: str | None
    grant: Grant | None = None  # what the token's scope allows; None: no scope was given

    def may_send(self, resource_type: str, *, search: bool) -> bool:
        """Whether the token's scope covers this query (CDS Hooks 2.0: fhirAuthorization.scope;
        a token without a scope is tried, and the server's answer decides)."""
        return self.grant is None or self.grant.allows(resource_type, search=search)

    def may_follow(self, link: str) -> bool:
        """Whether a `next` link may be followed with the token: below the registered base."""
        return is_under_base(link, self.server)


def fhir_access(request: HookRequest, caller: Caller) -> tuple[FhirAccess | None, str]:
    """The FHIR access this request gives, or None and why not."""
    if request.fhirServer is None:
        return None, "the request has no fhirServer"
    server = caller.registered_fhir_server(request.fhirServer)
    if server is None:
        log.warning("fhirServer not registered for the calling issuer: not used")
        return None, "fhirServer is not registered for this issuer"
    authorization = request.fhirAuthorization
    token = authorization.access_token.get_secret_value() if authorization else None
    scope = authorization.scope if authorization else None
    grant = Grant.parse(scope) if scope and scope.strip() else None
    return FhirAccess(server, token, grant), ""


ClientFactory = Callable[[FhirAccess], FhirClient]


@dataclass
class _Gathering:
    """The chart as it is put together: resources, where each key's data came from, gaps."""

    patient_id: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    gaps: list[DataGap] = field(default_factory=list)
    notes: list[DataNote] = field(default_factory=list)

    def gap(self, template: PrefetchTemplate, reason: str, fault: str) -> None:
        self.gaps.append(DataGap(template.key, template.label, reason, template.provides, fault))

    def note(self, template: PrefetchTemplate) -> None:
        """An optional key that could not be had: said, when its template says what it holds."""
        if template.said_when_missing:
            self.notes.append(DataNote(template.provides, template.said_when_missing))


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
    drafts: Sequence[dict[str, Any]] = (),
) -> Chart:
    """Resources from the prefetch and from the FHIR server; gaps where neither gave them
    whole. `drafts`: the hook's draft orders, whose drugs are resolved as the chart's are."""
    deadline = Deadline.after(deadline_seconds)
    prefetch = request.prefetch or {}
    chart = _Gathering(patient_id)
    queries: dict[str, str | NextPage] = {}
    asked: dict[str, PrefetchTemplate] = {}  # what was queried, and why it was
    for template in templates:
        query = _take(template, prefetch, chart, access, no_access_reason, today)
        if query is not None:
            queries[template.key] = query
            asked[template.key] = template

    if queries and access is not None:
        with client_factory(access) as client:
            results = client.fetch_all(queries, deadline_seconds=max(0.0, deadline.remaining()))
        for key, template in asked.items():
            _took(template, queries[key], results[key], prefetch, chart)

    _resolve_medications(chart, drafts, access, client_factory, deadline, no_access_reason)
    core = [gap for gap in chart.gaps if gap.is_core]
    if core:  # no rule can be trusted without the patient, medications and conditions
        raise PreconditionFailed(
            "could not read the data every check needs: "
            + "; ".join(f"{gap.label} ({gap.reason})" for gap in core),
            [gap.key for gap in core],
            core,
        )
    return Chart(tuple(chart.resources), tuple(chart.gaps), tuple(chart.notes), chart.sources)


def _take(
    template: PrefetchTemplate,
    prefetch: Mapping[str, Any],
    chart: _Gathering,
    access: FhirAccess | None,
    no_access_reason: str,
    today: date,
) -> str | NextPage | None:
    """Use what the client sent for one key; the query to run when more is needed."""
    key = template.key
    value = prefetch.get(key)
    problem = None if value is None else unsatisfied_by(template, value)
    if value is not None and problem is None:
        given = resources_of(value)
        _check_same_patient(key, given, chart.patient_id)
        chart.resources.extend(given)
        chart.sources[key] = "prefetch"
        more = next_link(value) if template.is_search else None
        return None if more is None else _rest_of(template, more, chart, access, no_access_reason)
    if problem is not None:
        log.info("prefetch %s not used: %s", key, problem)
    if access is None:
        _without_access(template, key in prefetch, problem, chart, no_access_reason)
        return None
    if not access.may_send(template.resource_type, search=template.is_search):
        chart.sources[key] = "not_granted"
        # null: the client had no data; an optional key: as one the EHR does not offer
        if template.required and (key not in prefetch or problem is not None):
            chart.gap(template, _not_granted(template), NOT_GRANTED)
        elif key not in prefetch or problem is not None:
            chart.note(template)
        return None
    return template.resolve(chart.patient_id, today)


def _rest_of(
    template: PrefetchTemplate,
    link: str,
    chart: _Gathering,
    access: FhirAccess | None,
    no_access_reason: str,
) -> NextPage | None:
    """The rest of a paged prefetch searchset: read from its `next` link, or a gap."""
    if access is None:
        why = no_access_reason
    elif not access.may_send(template.resource_type, search=True):
        why = _not_granted(template)
    elif not access.may_follow(link):
        why = "its next link is not on the registered FHIR server"
    else:
        return NextPage(link)
    chart.sources[template.key] = "incomplete"
    chart.gap(
        template, f"only the first page was sent, and the rest cannot be read: {why}", MORE_PAGES
    )
    return None


def _without_access(
    template: PrefetchTemplate,
    present: bool,
    problem: str | None,
    chart: _Gathering,
    no_access_reason: str,
) -> None:
    """A key the service needs but may not fetch: `null` is no data, anything else a gap."""
    key = template.key
    if problem is not None:  # as a failed fetch: the rules that read it are withheld
        chart.sources[key] = "failed"
        if template.required:
            chart.gap(template, problem, "bad_response")
        else:
            chart.note(template)
    elif present:
        chart.sources[key] = "null"  # the client had no data for it
    elif template.required:
        chart.sources[key] = "not_sent"
        chart.gap(template, f"not sent in the prefetch, and {no_access_reason}", NOT_SENT)
    else:
        chart.sources[key] = "absent"
        chart.note(template)


def _took(
    template: PrefetchTemplate,
    query: str | NextPage,
    result: QueryResult,
    prefetch: Mapping[str, Any],
    chart: _Gathering,
) -> None:
    """What one query of the service's own gave the chart."""
    key = template.key
    if isinstance(query, NextPage):  # the rest of a paged prefetch
        _check_same_patient(key, list(result.resources), chart.patient_id)
        chart.resources.extend(result.resources)
        if not result.usable:
            chart.sources[key] = "incomplete"
            reason = (
                f"only the first page was sent, and the rest could not be read: {_reason(result)}"
            )
            chart.gap(template, reason, result.fault or NO_DATA)
        return
    chart.resources.extend(result.resources)
    chart.sources[key] = "fetched" if result.usable else "failed"
    # a null key (the client had no data) that fails stays "no data"
    unsatisfied = prefetch.get(key) is not None
    asked_for = key not in prefetch or unsatisfied
    if not result.usable and asked_for:
        if template.required:
            chart.gap(template, _reason(result), result.fault or NO_DATA)
        else:
            chart.note(template)


# -- orders that name their drug by reference ------------------------------------------------

# Orders the clinical reader passes over (clinical/reader.py): their drug does not matter.
_NOT_READ_STATUS = frozenset({"entered-in-error", "cancelled", "not-taken"})
_ORDER_TYPES = frozenset({"MedicationRequest", "MedicationStatement"})
MAX_MEDICATION_READS = 20  # when the token may read but not search Medication
_IDS_PER_SEARCH = 50


@dataclass(frozen=True, slots=True)
class DrugReference:
    """A `medicationReference` the data does not hold."""

    reference: str  # as written
    local: str  # "Medication/m1"
    named: bool  # it has a display: the reader reads the drug by that name, as a text order


def unresolved_drugs(resources: Iterable[dict[str, Any]]) -> list[DrugReference]:
    """The Medications that orders name by reference and the data does not hold: not
    contained in the order, not among the resources (by id, or by a `urn:uuid` fullUrl)."""
    resources = list(resources)
    held = {
        f"Medication/{r['id']}"
        for r in resources
        if r.get("resourceType") == "Medication" and isinstance(r.get("id"), str)
    }
    found: dict[str, DrugReference] = {}
    for order in resources:
        if order.get("resourceType") not in _ORDER_TYPES or "medicationCodeableConcept" in order:
            continue
        status = order.get("status")
        if (isinstance(status, str) and status in _NOT_READ_STATUS) or order.get(
            "doNotPerform"
        ) is True:
            continue
        reference = order.get("medicationReference")
        target = reference.get("reference") if isinstance(reference, dict) else None
        if not isinstance(target, str) or not target.strip():
            continue  # no drug at all (a draft before one is picked), or a name only
        named = isinstance(reference, dict) and bool(str(reference.get("display") or "").strip())
        if target.startswith("#"):
            if not any(
                isinstance(c, dict) and f"#{c.get('id')}" == target
                for c in order.get("contained") or ()
            ):
                found.setdefault(target, DrugReference(target, "", named))
            continue
        local = local_reference(target, "Medication")
        if local not in held:
            previous = found.get(local)
            found[local] = DrugReference(target, local, named or bool(previous and previous.named))
    return list(found.values())


def _resolve_medications(
    chart: _Gathering,
    drafts: Sequence[dict[str, Any]],
    access: FhirAccess | None,
    client_factory: ClientFactory,
    deadline: Deadline,
    no_access_reason: str,
) -> None:
    """Read the Medications orders name but the data does not hold; a gap for those that
    cannot be had and have no name (the order would otherwise be passed over unseen)."""
    missing = unresolved_drugs([*drafts, *chart.resources])
    if not missing:
        return
    readable = [d for d in missing if d.local and (access is not None and _on_server(d, access))]
    why = no_access_reason if access is None else ""
    if readable and access is not None:
        got, why = _read_medications(readable, access, client_factory, deadline)
        chart.resources.extend(got)
        held = {f"Medication/{m.get('id')}" for m in got}
        missing = [d for d in missing if d.local not in held]
    unnamed = [d for d in missing if not d.named]
    if not unnamed:
        return
    why = why or "they are contained nowhere and not on the registered FHIR server"
    orders = (
        "1 order names its drug" if len(unnamed) == 1 else f"{len(unnamed)} orders name their drug"
    )
    chart.sources[MEDICATION_REFERENCES] = "failed"
    chart.gaps.append(
        DataGap(
            MEDICATION_REFERENCES,
            "the drug of medication orders",
            f"{orders} only by a reference the data does not hold, and {why}",
            frozenset({Input.MEDICATIONS}),
            UNRESOLVED,
        )
    )


def _on_server(drug: DrugReference, access: FhirAccess) -> bool:
    """A relative reference is on the FHIR server; an absolute one only below its base."""
    if "://" not in drug.reference:
        return not drug.reference.startswith("urn:")
    return access.may_follow(drug.reference)


def _read_medications(
    drugs: Sequence[DrugReference],
    access: FhirAccess,
    client_factory: ClientFactory,
    deadline: Deadline,
) -> tuple[list[dict[str, Any]], str]:
    """The Medications from the FHIR server, searched by `_id` (reads when the token may only
    read), and why some could not be had."""
    ids = sorted({d.local.split("/", 1)[1] for d in drugs})
    if access.may_send("Medication", search=True):
        queries: dict[str, str] = {
            f"medications-{n}": "Medication?_id="
            + ",".join(quote(i, safe="") for i in chunk)
            + f"&_count={len(chunk)}"
            for n, chunk in enumerate(_chunks(ids, _IDS_PER_SEARCH))
        }
    elif access.may_send("Medication", search=False):
        queries = {f"medication-{n}": f"Medication/{quote(i, safe='')}" for n, i in enumerate(ids)}
        queries = dict(list(queries.items())[:MAX_MEDICATION_READS])
    else:
        return [], "the EHR's token may not read Medication (fhirAuthorization.scope)"
    with client_factory(access) as client:
        results = client.fetch_all(queries, deadline_seconds=max(0.0, deadline.remaining()))
    got = [
        r
        for result in results.values()
        for r in result.resources
        if r.get("resourceType") == "Medication"
    ]
    failed = [result for result in results.values() if not result.usable]
    why = f"reading them failed: {_reason(failed[0])}" if failed else "the EHR does not have them"
    return got, why


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _not_granted(template: PrefetchTemplate) -> str:
    how = "search" if template.is_search else "read"
    return f"the EHR's token may not {how} {template.resource_type} (fhirAuthorization.scope)"


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
