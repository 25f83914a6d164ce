"""The patient's chart from the EHR's FHIR server, through `ehr.FhirClient`: every query in
parallel, paged, within one deadline.

The queries are written plainly here (`code=http://loinc.org|2243-4`); `ehr.FhirClient`
percent-encodes their values as they are sent, so that a proxy that collapses `//` (the SMART
launcher's) does not empty them, and sends the token only below the FHIR base.

The granted scope decides what is asked (`ehr.scopes`, the parser the CDS Hooks service uses
for fhirAuthorization.scope): a query it does not cover is not sent. Without data
every rule reads (the patient, labs, medications, conditions) there is no page to show; the
others (procedures, reports, the extra resources) leave a gap the page names, whether the EHR
did not grant them, refused them (403) or failed. A 401 means the token itself was refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

from clinical.reader import WHOLE_OBSERVATION_VALUESETS
from clinical.record import LAB_VALUESETS
from clinical.valuesets import load as load_valuesets
from ehr.client import FhirClient, Outcome
from ehr.scopes import scope_covers


@dataclass(frozen=True)
class ChartQuery:
    key: str
    label: str  # what the clinician reads when it is missing
    path: str
    essential: bool  # without it nothing on the page can be trusted
    resource: str  # the resource type the granted scope must cover
    search: bool = True  # a search (scope `.rs`), else a read (`.r`)


@cache
def _lab_codes() -> str:
    """`system|code,...` for every lab the rules read, each once, in a stable order."""
    valuesets = load_valuesets()
    codes = {
        f"{coding.system}|{coding.code}"
        for name in LAB_VALUESETS
        for coding in valuesets.codes(name)
    }
    return ",".join(sorted(codes))


@cache
def _status_codes() -> str:
    """`system|code,...` of the Observations read as a status, not a lab value: the last
    menstrual period and estrogen and progesterone receptor results."""
    valuesets = load_valuesets()
    codes = {
        f"{coding.system}|{coding.code}"
        for name in sorted(WHOLE_OBSERVATION_VALUESETS)
        for coding in valuesets.codes(name)
    }
    return ",".join(sorted(codes))


# Read only when configured (SmartSettings.extra_resources).
OPTIONAL_QUERIES = {
    "MedicationStatement": ("medications taken", "MedicationStatement?patient={}&_count=100"),
    "ServiceRequest": (
        "open DXA and lab orders",
        "ServiceRequest?patient={}&status=active,draft,on-hold&_count=100",
    ),
    "ImagingStudy": ("DXA imaging studies", "ImagingStudy?patient={}&_count=50"),
    "MedicationAdministration": (
        "medications given in clinic",
        "MedicationAdministration?patient={}&_count=100",
    ),
    "List": ("medication lists", "List?patient={}&_count=50"),
    "DocumentReference": (
        "DXA reports filed as documents",
        "DocumentReference?patient={}&type=http://loinc.org|38269-7,http://loinc.org|38268-9"
        "&_count=20",
    ),
}


def chart_queries(patient_id: str, extra_resources: tuple[str, ...] = ()) -> tuple[ChartQuery, ...]:
    """The queries for one patient: the standard ones, and those for the extra resources."""
    patient = quote(patient_id, safe="")
    standard = (
        ChartQuery(
            "patient",
            "the patient's demographics",
            f"Patient/{patient}",
            True,
            "Patient",
            search=False,
        ),
        ChartQuery(
            "labs",
            "lab results",
            f"Observation?patient={patient}&code={_lab_codes()}&_sort=-date&_count=200",
            True,
            "Observation",
        ),
        ChartQuery(
            "medications",
            "medication orders",
            f"MedicationRequest?patient={patient}&_include=MedicationRequest:medication&_count=100",
            True,
            "MedicationRequest",
        ),
        ChartQuery(
            "conditions",
            "the problem list",
            f"Condition?patient={patient}&_count=100",
            True,
            "Condition",
        ),
        ChartQuery(
            "procedures",
            "procedures (DXA scans)",
            f"Procedure?patient={patient}&_count=100",
            False,
            "Procedure",
        ),
        ChartQuery(
            "reports",
            "lab and DXA reports",
            f"DiagnosticReport?patient={patient}&_sort=-date&_count=100",
            False,
            "DiagnosticReport",
        ),
        ChartQuery(
            "menopause-and-receptors",
            "last menstrual period and receptor results",
            f"Observation?patient={patient}&code={_status_codes()}&_count=50",
            False,
            "Observation",
        ),
    )
    optional = tuple(
        ChartQuery(resource.lower(), label, path.format(patient), False, resource)
        for resource, (label, path) in OPTIONAL_QUERIES.items()
        if resource in extra_resources
    )
    return (*standard, *optional)


def granted(scope: str, query: ChartQuery) -> bool:
    """Whether the scope the EHR granted covers a query. A token response without a scope
    (SMART requires one) says nothing: every query is tried, and its answer decides."""
    return not scope or scope_covers(scope, query.resource, search=query.search)


@dataclass(frozen=True)
class FetchedChart:
    resources: tuple[dict[str, Any], ...]
    gaps: tuple[str, ...] = ()  # said on the page: "procedures (DXA scans): HTTP 500"
    token_refused: str | None = None  # the server refused the token (401): refresh once
    denied: str | None = None  # essential data the EHR did not grant, or refused (403)
    unavailable: str | None = None  # essential data could not be read


def fetch_chart(
    client: FhirClient,
    patient_id: str,
    *,
    deadline_seconds: float,
    granted_scope: str = "",
    extra_resources: tuple[str, ...] = (),
) -> FetchedChart:
    queries = chart_queries(patient_id, extra_resources)
    not_granted = [query for query in queries if not granted(granted_scope, query)]
    essential = [f"{query.label} ({query.resource})" for query in not_granted if query.essential]
    if essential:
        return FetchedChart((), denied="the EHR did not grant access to " + ", ".join(essential))
    gaps = [f"{query.label}: not granted by the EHR" for query in not_granted]
    asked = [query for query in queries if query not in not_granted]
    results = client.fetch_all({q.key: q.path for q in asked}, deadline_seconds=deadline_seconds)
    resources: list[dict[str, Any]] = []
    for query in asked:
        result = results[query.key]
        if result.status == 401:
            return FetchedChart((), token_refused=f"{query.label}: {result.reason}")
        if query.essential and result.status == 403:
            return FetchedChart((), denied=f"{query.label}: {result.reason}")
        if query.essential and not result.usable:
            return FetchedChart((), unavailable=f"{query.label}: {result.reason or 'no answer'}")
        resources.extend(result.resources)
        if result.outcome is Outcome.TRUNCATED:
            gaps.append(f"{query.label}: only the newest {result.pages} pages were read")
        elif not result.usable:
            gaps.append(f"{query.label} could not be read ({result.reason or 'no answer'})")
    return FetchedChart(tuple(resources), tuple(gaps))
