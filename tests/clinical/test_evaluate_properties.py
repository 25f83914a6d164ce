"""`evaluate` never raises on arbitrary, malformed or partial resources (hypothesis)."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from clinical import Finding, MixedPatientsError, evaluate, evaluate_json

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
FIXTURES = Path(__file__).parents[1] / "fixtures"
RESOURCE_TYPES = [
    "Patient",
    "Observation",
    "MedicationRequest",
    "MedicationStatement",
    "Condition",
    "Procedure",
    "DiagnosticReport",
    "ImagingStudy",
    "ServiceRequest",
    "Medication",
    "Bundle",
]
FIELDS = [
    "id",
    "status",
    "code",
    "coding",
    "system",
    "value",
    "unit",
    "comparator",
    "valueQuantity",
    "valueString",
    "effectiveDateTime",
    "effectivePeriod",
    "issued",
    "medicationCodeableConcept",
    "medicationReference",
    "dosageInstruction",
    "authoredOn",
    "reasonCode",
    "reasonReference",
    "clinicalStatus",
    "verificationStatus",
    "gender",
    "birthDate",
    "extension",
    "url",
    "entry",
    "resource",
    "result",
    "contained",
    "reference",
    "referenceRange",
    "high",
    "performedDateTime",
    "timing",
    "repeat",
]
CODES = ["2243-4", "199224", "C50.911", "E29.1", "77080", "1742-6", "84857", "10324", "38267-1"]
SYSTEMS = [
    "http://loinc.org",
    "http://www.nlm.nih.gov/research/umls/rxnorm",
    "http://hl7.org/fhir/sid/icd-10-cm",
    "http://www.ama-assn.org/go/cpt",
]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**6), max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        CODES + SYSTEMS + RESOURCE_TYPES + ["active", "final", "draft", "<5 pg/mL", "2024-02-30"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(FIELDS), children, max_size=5),
    ),
    max_leaves=25,
)
resources = st.builds(
    lambda resource_type, body: {**body, "resourceType": resource_type},
    st.sampled_from(RESOURCE_TYPES),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=8),
)


def _check(findings: list[Finding]) -> None:
    assert isinstance(findings, list)
    assert len({f.rule_id for f in findings}) == len(findings)
    assert all(len(f.summary) <= 140 for f in findings)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(resources, max_size=8))
def test_evaluate_never_raises_on_arbitrary_resources(batch: list[dict[str, Any]]) -> None:
    try:
        findings = evaluate(batch, now=NOW)
    except MixedPatientsError as error:  # the one refusal: resources about two patients
        assert_names_two_patients(batch, error)
        return
    _check(findings)


def assert_names_two_patients(data: Any, error: MixedPatientsError) -> None:
    """A refusal only where the data does name two patients (two Patient resources, or a
    subject naming one other than the Patient's id), each of them found in the data."""
    strings = list(_strings(data))  # not JSON text: it escapes an id of control characters
    assert len(error.patients) >= 2
    for patient in error.patients:
        patient_id = patient.removeprefix("Patient/")
        assert any(patient_id in string for string in strings), patient


def _strings(data: Any) -> Iterator[str]:
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for value in data.values():
            yield from _strings(value)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_evaluate_never_raises_on_arbitrary_json(value: Any) -> None:
    _check(evaluate(value, now=NOW))


def _all_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            paths += _all_paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            paths += _all_paths(child, (*path, index))
    return paths


FIXTURE = json.loads((FIXTURES / "man_trt_anastrozole_low_e2.json").read_text())
PATHS = _all_paths(FIXTURE)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(PATHS), min_size=1, max_size=4), json_values)
def test_evaluate_never_raises_when_a_real_patient_is_damaged(
    paths: list[tuple[Any, ...]], replacement: Any
) -> None:
    """Take a realistic patient, replace or delete parts of it, and evaluate what is left."""
    damaged = copy.deepcopy(FIXTURE)
    for path in paths:
        parent = damaged
        try:
            for key in path[:-1]:
                parent = parent[key]
            if replacement is None and isinstance(parent, dict):
                parent.pop(path[-1], None)
            else:
                parent[path[-1]] = copy.deepcopy(replacement)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    _check(evaluate(damaged, now=NOW))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_evaluate_json_refuses_non_json_with_a_value_error(data: bytes) -> None:
    try:
        findings = evaluate_json(data, now=NOW)
    except ValueError:
        return
    _check(findings)


def test_evaluate_json_gives_the_same_findings_as_evaluate() -> None:
    raw = (FIXTURES / "man_trt_anastrozole_low_e2.json").read_bytes()
    assert evaluate_json(raw, now=NOW) == evaluate(json.loads(raw), now=NOW)


def test_a_naive_now_is_read_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    assert evaluate(FIXTURE, now=naive) == evaluate(FIXTURE, now=NOW)


def _numbers(node: Any) -> list[tuple[Any, ...]]:
    """The paths of the fixture's numbers (result values, doses, reference ranges...)."""
    found = []
    for path in PATHS:
        leaf = node
        for key in path:
            leaf = leaf[key]
        if isinstance(leaf, int | float) and not isinstance(leaf, bool):
            found.append(path)
    return found


NUMBER_PATHS = _numbers(FIXTURE)
any_number = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**30), 10**30)


@settings(max_examples=200, deadline=None)
@example(changes=[(path, 1e90) for path in NUMBER_PATHS])
@example(changes=[(path, -1e300) for path in NUMBER_PATHS])
@given(st.lists(st.tuples(st.sampled_from(NUMBER_PATHS), any_number), min_size=1, max_size=4))
def test_evaluate_never_raises_on_numbers_of_any_size(
    changes: list[tuple[tuple[Any, ...], float]],
) -> None:
    """An estradiol of 1e90 sent by mistake made a summary of over 140 characters, and the
    whole call failed: one absurd number must not lose the patient's other findings."""
    damaged = copy.deepcopy(FIXTURE)
    for path, number in changes:
        parent = damaged
        for key in path[:-1]:
            parent = parent[key]
        parent[path[-1]] = number
    _check(evaluate(damaged, now=NOW))
