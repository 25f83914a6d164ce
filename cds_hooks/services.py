"""The three CDS services, their prefetch templates, and the discovery document.

Each prefetch template asks for one narrow slice of the chart: by patient, by the codes the
rules read (from clinical/data/valuesets.json), newest first, with a bounded count and, for
results, a look-back. The same templates are what the service runs itself against
`fhirServer` when the client did not prefetch a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from typing import Any
from urllib.parse import quote

from cds_hooks.policy import describe, policy_extension
from clinical.rules import CORE_INPUTS, Input
from clinical.valuesets import CPT, LOINC, SNOMED
from clinical.valuesets import load as load_valuesets
from ehr.client import resource_type_of
from ehr.urls import encode_search
from runtime.card_settings import CardSettings

PATIENT_TOKEN = "{{context.patientId}}"


@dataclass(frozen=True, slots=True)
class PrefetchTemplate:
    """One prefetch key: the FHIR query, how far back, and which slices of the chart it holds
    (the rules that read them are withheld when it cannot be had)."""

    key: str
    label: str  # what the clinician reads when it is missing: "liver tests"
    query: str  # relative FHIR URL with {{context.patientId}}
    lookback_days: int | None = None  # adds `date=ge{{today() - N days}}`
    date_parameter: str = "date"
    required: bool = True  # missing, and no FHIR access: 412; failed: its readers are withheld
    # An optional key's absence, said on the cards of the rules that read its slice (they are
    # judged, not withheld: many EHRs never offer it)
    said_when_missing: str | None = None
    provides: frozenset[Input] = frozenset()

    @property
    def is_core(self) -> bool:
        """Whether it holds data every rule reads: without it nothing can be judged."""
        return bool(self.provides & CORE_INPUTS)

    @property
    def resource_type(self) -> str:
        """What the query asks for: `Patient` for `Patient/{{...}}`, `Observation` for a search."""
        return resource_type_of(self.query)

    @property
    def is_search(self) -> bool:
        """A search (answered by a searchset Bundle), not a read of one resource."""
        return "?" in self.query

    def template(self, *, relative_dates: bool) -> str:
        """The prefetch template as discovery publishes it: search values percent-encoded
        (`code=http%3A%2F%2Floinc.org%7C2243-4`), tokens as they are (docs/cds-hooks.md,
        "Prefetch")."""
        query = encode_search(self.query)
        if self.lookback_days is None or not relative_dates:
            return query
        return f"{query}&{self.date_parameter}=ge{{{{today() - {self.lookback_days} days}}}}"

    def resolve(self, patient_id: str, today: date) -> str:
        """The concrete query the service runs itself (tokens replaced), encoded as sent."""
        query = encode_search(self.query).replace(PATIENT_TOKEN, quote(patient_id, safe=""))
        if self.lookback_days is not None:
            since = today - timedelta(days=self.lookback_days)
            query = f"{query}&{self.date_parameter}=ge{since.isoformat()}"
        return query


@dataclass(frozen=True, slots=True)
class CdsService:
    id: str
    hook: str
    title: str
    description: str


SERVICES: dict[str, CdsService] = {
    service.id: service
    for service in (
        CdsService(
            "anastrozole-monitor-patient-view",
            "patient-view",
            "Anastrozole monitoring",
            "When a chart is opened: what is wrong or missing in the monitoring of anastrozole "
            "(or another aromatase inhibitor) for what it is used for: oncology, TRT modulation "
            "or male infertility. Estradiol, DXA, liver, lipid and glycemic checks; dose, sex and "
            "interaction problems.",
        ),
        CdsService(
            "anastrozole-monitor-order-select",
            "order-select",
            "Anastrozole order check (select)",
            "When anastrozole (or a drug that interacts with it) is selected for ordering: what "
            "the order brings (dose and sex fit for the intent, interactions, and what else is "
            "wrong in the monitoring). Orders unrelated to aromatase inhibitors get no cards.",
        ),
        CdsService(
            "anastrozole-monitor-order-sign",
            "order-sign",
            "Anastrozole order check (sign)",
            "Before anastrozole orders are signed: the same checks as at selection, on every "
            "draft order together with the chart.",
        ),
    )
}

USAGE_REQUIREMENTS = (
    "Each call carries a JWT signed by a registered issuer (ES384 or RS384). Give the prefetch, "
    "or fhirServer with fhirAuthorization (patient/*.read for the resources in the prefetch) "
    "on a FHIR server registered for that issuer."
)

_PROCEDURE_SYSTEMS = frozenset({SNOMED, CPT, LOINC})  # not ICD-10-CM: those are conditions


def _codes(*valueset_names: str, systems: frozenset[str] | None = None) -> str:
    """`system|code,...` for the value sets (only `systems`, when given), each code once."""
    valuesets = load_valuesets()
    seen: dict[str, None] = {}
    for name in valueset_names:
        for coding in valuesets.codes(name):
            if systems is None or coding.system in systems:
                seen.setdefault(f"{coding.system}|{coding.code}", None)
    return ",".join(seen)


@cache
def prefetch_templates() -> tuple[PrefetchTemplate, ...]:
    """Every prefetch key, in the order they are published."""
    patient = PATIENT_TOKEN
    observation = f"Observation?patient={patient}"
    return (
        PrefetchTemplate(
            "patient",
            "the patient's sex and age",
            f"Patient/{patient}",
            provides=frozenset({Input.PATIENT}),
        ),
        PrefetchTemplate(
            "medicationRequests",
            "medication orders",
            # _include: an order that names its drug by reference comes with its Medication
            f"MedicationRequest?patient={patient}&_include=MedicationRequest:medication"
            "&_sort=-authoredon&_count=100",
            provides=frozenset({Input.MEDICATIONS}),
        ),
        PrefetchTemplate(
            "medicationStatements",
            "medications taken",
            f"MedicationStatement?patient={patient}&_include=MedicationStatement:medication"
            "&_count=100",
            required=False,  # many EHRs do not offer MedicationStatement
            provides=frozenset({Input.MEDICATIONS}),
        ),
        PrefetchTemplate(
            "conditions",
            "the problem list",
            f"Condition?patient={patient}&_count=200",
            provides=frozenset({Input.CONDITIONS}),
        ),
        PrefetchTemplate(
            "estradiol",
            "estradiol and testosterone results",  # testosterone: the T/E2 ratio beside a low E2
            f"{observation}&code={_codes('estradiol-serum', 'testosterone-total')}"
            "&_sort=-date&_count=40",
            lookback_days=730,
            provides=frozenset({Input.ESTRADIOL}),
        ),
        PrefetchTemplate(
            "liverTests",
            "liver tests",
            f"{observation}&code={_codes('hepatic-function-panel')}&_sort=-date&_count=50",
            lookback_days=730,
            provides=frozenset({Input.LIVER_TESTS}),
        ),
        PrefetchTemplate(
            "lipidTests",
            "lipid tests",
            f"{observation}&code={_codes('lipid-panel-evidence')}&_sort=-date&_count=20",
            lookback_days=730,
            provides=frozenset({Input.LIPID_TESTS}),
        ),
        PrefetchTemplate(
            "glycemicTests",
            "HbA1c and glucose results",
            f"{observation}&code={_codes('hba1c', 'glucose-fasting')}&_sort=-date&_count=20",
            lookback_days=730,
            provides=frozenset({Input.GLYCEMIC_TESTS}),
        ),
        PrefetchTemplate(
            "boneDensity",
            "bone density results",
            f"{observation}&code={_codes('dxa-bmd-observations')}&_sort=-date&_count=50",
            lookback_days=1825,
            provides=frozenset({Input.BONE_DENSITY}),
        ),
        PrefetchTemplate(
            "procedures",
            "DXA scans and oophorectomies",
            f"Procedure?patient={patient}&code={_codes('dxa-procedure', 'postmenopausal', systems=_PROCEDURE_SYSTEMS)}"
            "&_sort=-date&_count=50",
            provides=frozenset({Input.DXA, Input.SURGICAL_MENOPAUSE}),
        ),
        PrefetchTemplate(
            "diagnosticReports",
            "lab and DXA reports",
            f"DiagnosticReport?patient={patient}&code="
            + _codes(
                "estradiol-serum",
                "hepatic-function-panel",
                "lipid-panel-evidence",
                "hba1c",
                "glucose-fasting",
                "dxa-procedure",
                "dxa-bmd-observations",
            )
            + "&_sort=-date&_count=50",
            lookback_days=1825,
            provides=frozenset(
                {
                    Input.ESTRADIOL,
                    Input.LIVER_TESTS,
                    Input.LIPID_TESTS,
                    Input.GLYCEMIC_TESTS,
                    Input.BONE_DENSITY,
                    Input.DXA,
                }
            ),
        ),
        PrefetchTemplate(
            "medicationAdministrations",
            "medications given in clinic",
            f"MedicationAdministration?patient={patient}&_count=100",
            required=False,  # many EHRs offer no MedicationAdministration search
            provides=frozenset({Input.CLINIC_GIVEN}),
            said_when_missing="doses given in clinic (MedicationAdministration) could not be "
            "read: a GnRH agonist depot, denosumab or zoledronic acid given there would not be seen",
        ),
        PrefetchTemplate(
            "medicationLists",
            "medication lists",
            f"List?patient={patient}&_count=50",
            required=False,  # a later list that stops an old order
            provides=frozenset({Input.MEDICATIONS}),
        ),
        PrefetchTemplate(
            "menopauseTests",
            "FSH and last menstrual period",
            f"{observation}&code={_codes('fsh', 'last-menstrual-period')}&_sort=-date&_count=20",
            lookback_days=1825,
            provides=frozenset({Input.MENOPAUSE_TESTS}),
        ),
        PrefetchTemplate(
            "receptorStatus",
            "estrogen and progesterone receptor results",
            f"{observation}&code={_codes('estrogen-receptor-test', 'progesterone-receptor-test')}"
            "&_count=20",
            required=False,
            provides=frozenset({Input.CONDITIONS}),
        ),
        PrefetchTemplate(
            "oophorectomies",
            "bilateral oophorectomies",
            f"Procedure?patient={patient}&code={_codes('bilateral-oophorectomy')}&_count=20",
            required=False,  # ICD-10-PCS and SNOMED CT besides the CPT of `procedures`
            provides=frozenset({Input.SURGICAL_MENOPAUSE}),
        ),
        PrefetchTemplate(
            "imagingReports",
            "imaging reports (a DXA named only in words)",
            f"DiagnosticReport?patient={patient}&category=http://loinc.org|LP29684-5,"
            "http://terminology.hl7.org/CodeSystem/v2-0074|RAD&_sort=-date&_count=20",
            # no date filter: `date` searches effective[x], and a report sent with `issued`
            # only would never match it
            required=False,  # Epic codes a DXA report locally: its words say what it is
            provides=frozenset({Input.DXA}),
        ),
        PrefetchTemplate(
            "dxaDocuments",
            "DXA reports filed as documents",
            f"DocumentReference?patient={patient}&type={_codes('dxa-report')}&_count=20",
            required=False,
            provides=frozenset({Input.DXA}),
        ),
        PrefetchTemplate(
            "dxaOrders",
            "open DXA orders",
            f"ServiceRequest?patient={patient}&code={_codes('dxa-procedure')}&status=active,draft&_count=20",
            provides=frozenset({Input.DXA}),
        ),
        PrefetchTemplate(
            "boneDensityImaging",
            "bone density imaging studies",
            f"ImagingStudy?patient={patient}&modality=http://dicom.nema.org/resources/ontology/DCM|BMD"
            "&_count=20",
            required=False,  # many EHRs do not offer ImagingStudy
            provides=frozenset({Input.DXA}),
        ),
    )


def discovery_document(
    *, relative_dates: bool, cards: CardSettings | None = None
) -> dict[str, Any]:
    """The body of GET /cds-services. Each service says which cards it shows (the `[cards]`
    policy) in its description, and for machines in its `extension` (CDS Hooks 2.0 allows
    one on every service of the discovery response)."""
    cards = cards or CardSettings()
    prefetch = {t.key: t.template(relative_dates=relative_dates) for t in prefetch_templates()}
    return {
        "services": [
            {
                "hook": service.hook,
                "title": service.title,
                "description": f"{service.description} {describe(cards.for_hook(service.hook), cards)}",
                "id": service.id,
                "prefetch": prefetch,
                "usageRequirements": USAGE_REQUIREMENTS,
                "extension": policy_extension(cards.for_hook(service.hook), cards),
            }
            for service in SERVICES.values()
        ]
    }
