"""The shipped synthetic patients: well formed, saying what they show, movable in time."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from clinical import evaluate
from sandbox.patients import (
    EXPECTED_CARD_SYSTEM,
    REFERENCE_NOW,
    SyntheticPatient,
    all_patients,
    bundle_resources,
    days_to_shift,
    expected_cards,
    patient,
    shift_date_text,
    shift_dates,
)

PATIENTS = all_patients()


@pytest.mark.parametrize(
    ("written", "days", "moved"),
    [
        ("2026-11-01", 22, "2026-11-23"),
        ("2026-10-19T08:41:00-04:00", 22, "2026-11-10T08:41:00-04:00"),
        ("2026-10-19T08:41:00.123Z", -19, "2026-09-30T08:41:00.123Z"),
        ("2026-10-19T08:41", 1, "2026-10-20T08:41"),
        ("2026-10", 22, "2026-10"),  # month precision: its first day moves within the month
        ("2026-10", 40, "2026-11"),
        ("2023", 22, "2023"),
        ("2023", 400, "2024"),
        ("2024-02-29", 365, "2025-02-28"),
        ("not a date", 5, "not a date"),
    ],
)
def test_a_date_moves_at_its_own_precision_and_zone(written: str, days: int, moved: str) -> None:
    assert shift_date_text(written, days) == moved


def test_only_date_fields_move_and_the_original_is_untouched() -> None:
    resource = {
        "resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2024"}]},
        "effectiveDateTime": "2026-10-19",
        "effectivePeriod": {"start": "2026-10-01", "end": "2026-10-02"},
        "valueString": "2026-10-19",
        "dosageInstruction": [{"timing": {"event": ["2026-10-01"]}}],
    }
    moved = shift_dates(resource, 10)
    assert moved["effectiveDateTime"] == "2026-10-29"
    assert moved["effectivePeriod"] == {"start": "2026-10-11", "end": "2026-10-12"}
    assert moved["dosageInstruction"][0]["timing"]["event"] == ["2026-10-11"]
    assert moved["code"]["coding"][0]["code"] == "2024"
    assert moved["valueString"] == "2026-10-19"
    assert resource["effectiveDateTime"] == "2026-10-19"


def test_days_to_shift_counts_from_the_reference_date() -> None:
    assert days_to_shift(date(2026, 11, 23)) == 22
    assert days_to_shift(date(2026, 11, 1)) == 0


def test_the_expected_cards_are_read_back_from_the_tags() -> None:
    bundle = {"meta": {"tag": [
        {"system": EXPECTED_CARD_SYSTEM, "code": "estradiol-low", "display": "warning"},
        {"system": "https://other.example", "code": "x"},
    ]}}  # fmt: skip
    assert expected_cards(bundle) == {"estradiol-low": "warning"}


def test_the_library_holds_the_scenarios_the_integrators_need() -> None:
    keys = {p.key for p in PATIENTS}
    assert {"trt-low-e2", "trt-no-ai-high-e2", "onc-no-dexa", "onc-up-to-date", "premenopausal",
            "infertility", "ai-tamoxifen", "sex-unknown", "trt-1mg-daily", "trt-e2-pmol",
            "trt-text-only", "trt-e2-lt5-reports"} <= keys  # fmt: skip
    assert patient("onc-up-to-date").expected_cards == {"anastrozole-intent": "info"}
    assert patient(patient("infertility").patient_id).key == "infertility"
    with pytest.raises(KeyError):
        patient("nobody")


@pytest.mark.parametrize("item", PATIENTS, ids=[p.key for p in PATIENTS])
def test_each_bundle_is_a_self_contained_transaction_of_puts(item: SyntheticPatient) -> None:
    bundle = item.bundle
    assert bundle["type"] == "transaction"
    assert item.expected_cards and item.description.startswith("Synthetic patient")
    ids = set()
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert resource["id"].startswith(f"{item.key}-")
        assert entry["request"] == {
            "method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"
        }  # fmt: skip
        ids.add(f"{resource['resourceType']}/{resource['id']}")
    references: list[str] = []

    def collect(node: object) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                if name == "reference" and isinstance(value, str):
                    references.append(value)
                else:
                    collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(bundle["entry"])
    assert all(ref.startswith("#") or ref in ids for ref in references)


@pytest.mark.parametrize("days", [0, 22, 400])
@pytest.mark.parametrize("item", PATIENTS, ids=[p.key for p in PATIENTS])
def test_each_patient_raises_what_it_states_whenever_it_is_loaded(
    item: SyntheticPatient, days: int
) -> None:
    resources = bundle_resources(shift_dates(item.bundle, days))
    findings = evaluate(resources, now=REFERENCE_NOW + timedelta(days=days))
    assert {f.rule_id: f.severity.value for f in findings} == item.expected_cards


def test_the_bundles_are_valid_fhir() -> None:
    from fhir.resources.R4B.bundle import Bundle

    for item in PATIENTS:
        Bundle.model_validate(item.bundle)
