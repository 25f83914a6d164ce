"""The patient's chart from the EHR's FHIR server, through `ehr.FhirClient`: every query in
parallel, paged, within one deadline.

A query the server refuses (401/403) means the app's access is gone; a query for data every
rule reads (the patient, labs, medications, conditions) that fails means there is no page to
show; the others (procedures, reports) leave a gap the page names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

from clinical.record import LAB_VALUESETS
from clinical.valuesets import load as load_valuesets
from ehr.client import FhirClient, Outcome
from smartapp.oauth import scope_covers


@dataclass(frozen=True)
class ChartQuery:
    key: str
    label: str  # what the clinician reads when it is missing
    path: str
    essential: bool  # without it nothing on the page can be trusted


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


# Read only when configured (SmartSettings.extra_resources) and granted by the EHR.
OPTIONAL_QUERIES = {
    "MedicationStatement": ("medications taken", "MedicationStatement?patient={}&_count=100"),
    "ServiceRequest": (
        "open DXA and lab orders",
        "ServiceRequest?patient={}&status=active,draft,on-hold&_count=100",
    ),
    "ImagingStudy": ("DXA imaging studies", "ImagingStudy?patient={}&_count=50"),
}


def chart_queries(patient_id: str, granted_scope: str = "") -> tuple[ChartQuery, ...]:
    """The queries for one patient; optional ones only for resources the scope covers."""
    patient = quote(patient_id, safe="")
    optional = tuple(
        ChartQuery(resource.lower(), label, path.format(patient), False)
        for resource, (label, path) in OPTIONAL_QUERIES.items()
        if scope_covers(granted_scope, resource)
    )
    standard = (
        ChartQuery("patient", "the patient's demographics", f"Patient/{patient}", True),
        ChartQuery(
            "labs",
            "lab results",
            f"Observation?patient={patient}&code={_lab_codes()}&_sort=-date&_count=200",
            True,
        ),
        ChartQuery(
            "medications",
            "medication orders",
            f"MedicationRequest?patient={patient}&_include=MedicationRequest:medication&_count=100",
            True,
        ),
        ChartQuery(
            "conditions", "the problem list", f"Condition?patient={patient}&_count=100", True
        ),
        ChartQuery(
            "procedures", "procedures (DXA scans)", f"Procedure?patient={patient}&_count=100", False
        ),
        ChartQuery(
            "reports",
            "lab and DXA reports",
            f"DiagnosticReport?patient={patient}&_sort=-date&_count=100",
            False,
        ),
    )
    return (*standard, *optional)


@dataclass(frozen=True)
class FetchedChart:
    resources: tuple[dict[str, Any], ...]
    gaps: tuple[str, ...] = ()  # said on the page: "procedures (DXA scans): HTTP 500"
    denied: str | None = None  # the server refused the token (401/403)
    unavailable: str | None = None  # essential data could not be read


def fetch_chart(
    client: FhirClient, patient_id: str, *, deadline_seconds: float, granted_scope: str = ""
) -> FetchedChart:
    queries = chart_queries(patient_id, granted_scope)
    results = client.fetch_all({q.key: q.path for q in queries}, deadline_seconds=deadline_seconds)
    resources: list[dict[str, Any]] = []
    gaps: list[str] = []
    for query in queries:
        result = results[query.key]
        if result.fault == "unauthorized":  # HTTP 401 or 403
            return FetchedChart((), denied=f"{query.label}: {result.reason}")
        if query.essential and not result.usable:
            return FetchedChart((), unavailable=f"{query.label}: {result.reason or 'no answer'}")
        resources.extend(result.resources)
        if result.outcome is Outcome.TRUNCATED:
            gaps.append(f"{query.label}: only the newest {result.pages} pages were read")
        elif not result.usable:
            gaps.append(f"{query.label} could not be read ({result.reason or 'no answer'})")
    return FetchedChart(tuple(resources), tuple(gaps))
