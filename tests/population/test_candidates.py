"""The prefilter: only patients on an aromatase inhibitor or testosterone are read whole and
judged. It must never leave out a patient the core would give a row: held here against
every scenario fixture and synthetic patient, and the claim it rests on (no such course, no
finding) checked against the core on the same charts."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from anastrozole_cds.population import read_folder
from anastrozole_cds.population.candidates import Classifier, judge_orders, read_order
from anastrozole_cds.population.lines import MEDICATION_ORDERS
from clinical import evaluate
from clinical.fhirdates import parse_fhir_datetime
from clinical.valuesets import load
from sandbox.patients import REFERENCE_NOW, all_patients, bundle_resources
from tests.conftest import expected_scenarios, read_fixture, resources_of

Resource = dict[str, Any]
FIELDS = ("resourceType", "id", "medicationCodeableConcept", "medicationReference", "contained")


def charts() -> list[tuple[str, list[Resource], datetime]]:
    """Every scenario fixture (as of its `now`) and every synthetic patient."""
    found = []
    for name, scenario in sorted(expected_scenarios().items()):
        now = parse_fhir_datetime(scenario["now"])
        assert now is not None
        found.append((name, resources_of(read_fixture(name)), now))
    found += [(p.key, bundle_resources(p.bundle), REFERENCE_NOW) for p in all_patients()]
    return found


CHARTS = charts()


def is_candidate(resources: list[Resource], now: datetime) -> bool:
    """The prefilter's verdict on one chart's orders, with its Medications by id."""
    medications = {r["id"]: orjson.dumps(r) for r in resources if r["resourceType"] == "Medication"}
    orders = [
        ("p", {name: r.get(name) for name in FIELDS})
        for r in resources
        if r["resourceType"] in MEDICATION_ORDERS
    ]
    return "p" in judge_orders(orders, medications, Classifier(load(), now)).all()


@pytest.mark.parametrize(("name", "resources", "now"), CHARTS, ids=[c[0] for c in CHARTS])
def test_a_chart_the_core_gives_a_finding_is_never_left_out(
    name: str, resources: list[Resource], now: datetime
) -> None:
    if evaluate(resources, now=now):
        assert is_candidate(resources, now), name


@pytest.mark.parametrize(("name", "resources", "now"), CHARTS, ids=[c[0] for c in CHARTS])
def test_without_an_aromatase_inhibitor_or_testosterone_the_core_finds_nothing(
    name: str, resources: list[Resource], now: datetime
) -> None:
    """The claim the prefilter rests on, asked of the core: take away every order the
    prefilter keeps a patient for (a drug of RULE_DRUGS or one the core cannot read, whatever
    its status or intent), and no rule fires."""
    classifier = Classifier(load(), now)
    medications = {r["id"]: orjson.dumps(r) for r in resources if r["resourceType"] == "Medication"}
    needed = {
        f"{r['resourceType']}/{r.get('id', '')}"
        for r in resources
        if r["resourceType"] in MEDICATION_ORDERS
        and classifier.needs({name: r.get(name) for name in FIELDS}, _medication_of(r, medications))
    }
    rest = [r for r in resources if f"{r['resourceType']}/{r.get('id', '')}" not in needed]
    assert evaluate(rest, now=now) == []
    assert not is_candidate(rest, now)


def _medication_of(order: Resource, medications: dict[str, bytes]) -> bytes | None:
    reference = (order.get("medicationReference") or {}).get("reference") or ""
    return medications.get(reference.rpartition("/")[2]) if reference else None


def order(status: str, concept: Resource | None = None, **extra: Any) -> Resource:
    return {
        "resourceType": "MedicationRequest",
        "id": "o1",
        "status": status,
        "subject": {"reference": "Patient/p1"},
        **({"medicationCodeableConcept": concept} if concept else {}),
        **extra,
    }


ANASTROZOLE_CODE = {
    "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "199224"}]
}


@pytest.mark.parametrize(
    ("resources", "judged"),
    [
        ([order("active", ANASTROZOLE_CODE)], True),
        ([order("stopped", ANASTROZOLE_CODE)], True),  # never narrower than the rules
        ([order("entered-in-error", {"text": "Arimidex 1 mg tablet"})], True),
        ([order("active", {"text": "testosterone cypionate 200 mg/mL"})], True),
        ([order("active", {"text": "letrozole 2.5 mg"})], True),
        ([order("active", {"text": "atorvastatin 20 mg"})], False),
        ([order("active", {"text": "tamoxifen 20 mg"})], False),
        (
            [
                order("active", medicationReference={"reference": "Medication/m1"}),
                {"resourceType": "Medication", "id": "m1", "code": ANASTROZOLE_CODE},
            ],
            True,
        ),
        (
            [
                order(
                    "active",
                    medicationReference={"reference": "#c"},
                    contained=[{"resourceType": "Medication", "id": "c", "code": ANASTROZOLE_CODE}],
                )
            ],
            True,
        ),
    ],
    ids=[
        "anastrozole",
        "stopped",
        "brand-by-text",
        "testosterone",
        "letrozole",
        "statin",
        "tamoxifen-alone",
        "by-reference",
        "contained",
    ],
)
def test_orders_are_classified_by_the_core(resources: list[Resource], judged: bool) -> None:
    assert is_candidate(resources, REFERENCE_NOW) is judged


def test_an_order_line_gives_its_patient_and_drug_fields_only() -> None:
    line = orjson.dumps({**order("active", ANASTROZOLE_CODE), "dosageInstruction": [{"text": "x"}]})
    patient_id, fields = read_order(line)  # type: ignore[misc]
    assert patient_id == "p1"
    assert fields["medicationCodeableConcept"] == ANASTROZOLE_CODE
    assert "dosageInstruction" not in fields
    assert read_order(b'{"resourceType": "Observation"}') is None


def test_the_lines_of_patients_no_rule_applies_to_are_counted_not_held(tmp_path: Path) -> None:
    on_ai = next(p for p in all_patients() if p.key == "trt-low-e2")
    others = copy.deepcopy(bundle_resources(on_ai.bundle))
    for resource in others:  # the same chart for "other", without the anastrozole order
        if resource["resourceType"] == "Patient":
            resource["id"] = "other"
        elif "subject" in resource:
            resource["subject"] = {"reference": "Patient/other"}
    others = [
        r
        for r in others
        if not (r["resourceType"] == "MedicationRequest" and is_candidate([r], REFERENCE_NOW))
    ]
    lines = [orjson.dumps(r) for r in [*bundle_resources(on_ai.bundle), *others]]
    (tmp_path / "export.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    population, report = read_folder(tmp_path, now=REFERENCE_NOW)
    assert set(population.held) == {on_ai.patient_id}
    assert report.outcomes["not-judged"] == len(others)
    assert report.patients_in_export == 2
