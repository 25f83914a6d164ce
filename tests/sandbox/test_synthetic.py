"""The synthetic patient bundles the benchmarks run on."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from sandbox.synthetic import FIXED_RESOURCES, bundle_bytes, make_patient_bundle

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _resources(bundle: dict, resource_type: str) -> list[dict]:
    return [
        entry["resource"]
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == resource_type
    ]


@pytest.mark.parametrize("n", [FIXED_RESOURCES + 1, 10, 30, 100, 1_000])
def test_bundle_has_exactly_n_entries_with_the_patient_first(n):
    bundle = make_patient_bundle(n, now=NOW)
    assert len(bundle["entry"]) == n == bundle["total"]
    assert bundle["entry"][0]["resource"]["resourceType"] == "Patient"
    assert len(_resources(bundle, "Patient")) == 1


def test_too_small_a_bundle_is_refused():
    with pytest.raises(ValueError):
        make_patient_bundle(FIXED_RESOURCES, now=NOW)


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not():
    assert bundle_bytes(200, 7, NOW) == bundle_bytes(200, 7, NOW)
    assert bundle_bytes(200, 7, NOW) != bundle_bytes(200, 8, NOW)


def test_small_bundle_is_valid_fhir_r4b():
    bundle = make_patient_bundle(30, now=NOW)
    Bundle.model_validate(bundle)


def test_bundle_with_reports_is_valid_fhir_r4b():
    bundle = make_patient_bundle(120, seed=3, now=NOW)
    assert _resources(bundle, "DiagnosticReport")
    Bundle.model_validate(bundle)


def test_every_observation_has_subject_code_and_date_in_the_past():
    bundle = make_patient_bundle(1_000, now=NOW)
    for observation in _resources(bundle, "Observation"):
        assert observation["subject"]["reference"].startswith("Patient/")
        assert observation["code"]["coding"][0]["system"] == "http://loinc.org"
        assert datetime.fromisoformat(observation["effectiveDateTime"]) <= NOW


def test_history_spans_about_ten_years():
    bundle = make_patient_bundle(10_000, now=NOW)
    dates = [
        datetime.fromisoformat(o["effectiveDateTime"]) for o in _resources(bundle, "Observation")
    ]
    assert 9.5 <= (max(dates) - min(dates)).days / 365.25 <= 10.5


def test_reports_reference_observations_in_the_bundle():
    bundle = make_patient_bundle(1_000, now=NOW)
    observation_ids = {o["id"] for o in _resources(bundle, "Observation")}
    for report in _resources(bundle, "DiagnosticReport"):
        for result in report["result"]:
            kind, _, identifier = result["reference"].partition("/")
            assert kind == "Observation" and identifier in observation_ids


def test_patient_is_a_man_on_testosterone_and_anastrozole_twice_weekly():
    bundle = make_patient_bundle(10, now=NOW)
    assert _resources(bundle, "Patient")[0]["gender"] == "male"
    orders = {
        order["medicationCodeableConcept"]["coding"][0]["code"]: order
        for order in _resources(bundle, "MedicationRequest")
    }
    assert {"835840", "199224", "314076", "617310"} <= orders.keys()
    dosage = orders["199224"]["dosageInstruction"][0]
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 0.5
    assert dosage["timing"]["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "wk"}
    estradiol = [
        o for o in _resources(bundle, "Observation") if o["code"]["coding"][0]["code"] == "2243-4"
    ]
    assert estradiol and estradiol[0]["valueQuantity"]["code"] == "pg/mL"


def test_resources_are_the_size_of_real_ehr_data():
    data = bundle_bytes(1_000, 0, NOW)
    per_resource = len(data) / 1_000
    assert 800 <= per_resource <= 1_600
    assert orjson.loads(data)["type"] == "searchset"


def test_prefetch_for_puts_each_resource_under_its_discovery_key() -> None:
    from cds_hooks.services import prefetch_templates
    from sandbox.synthetic import prefetch_for

    bundle = make_patient_bundle(60, seed=0, now=NOW)
    resources = [entry["resource"] for entry in bundle["entry"]]
    keys = [template.key for template in prefetch_templates()]
    prefetch = prefetch_for(resources, keys)
    assert set(prefetch) == set(keys)
    assert prefetch["patient"]["resourceType"] == "Patient"
    carried = [e["resource"] for v in prefetch.values() if v and "entry" in v for e in v["entry"]]
    assert len(carried) + 1 == len(resources)  # every resource once, the Patient as itself
    assert all(
        r["resourceType"] == "Observation"
        for r in (e["resource"] for e in prefetch["estradiol"]["entry"])
    )
