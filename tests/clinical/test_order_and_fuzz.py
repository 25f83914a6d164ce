"""Findings never depend on the order of the resources, and the core never raises on damaged
real resources (hypothesis): every fixture, shuffled, and generated charts; real resources
mutated in their values, types, sizes and dates."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clinical import Finding, MixedPatientsError, build_record, evaluate, evaluate_json
from clinical.export import finding_to_json
from sandbox.synthetic import bundle_bytes
from tests.clinical.test_evaluate_properties import assert_names_two_patients
from tests.conftest import expected_scenarios, fixture_names, read_fixture, resources_of

FIXTURES = fixture_names()
NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
SYNTHETIC = [resources_of(orjson.loads(bundle_bytes(60, seed, NOW))) for seed in range(3)]


def _now(name: str) -> datetime:
    return datetime.fromisoformat(expected_scenarios()[name]["now"])


def _as_json(findings: list[Finding]) -> list[dict[str, Any]]:
    return [{**finding_to_json(f), "actions": repr(f.order_actions)} for f in findings]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIXTURES), st.randoms(use_true_random=False))
def test_the_findings_of_every_fixture_do_not_depend_on_the_order_of_its_resources(
    name: str, random: Any
) -> None:
    resources = resources_of(read_fixture(name))
    shuffled = list(resources)
    random.shuffle(shuffled)
    now = _now(name)
    assert _as_json(evaluate(shuffled, now=now)) == _as_json(evaluate(resources, now=now))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(SYNTHETIC))), st.randoms(use_true_random=False))
def test_the_findings_of_generated_charts_do_not_depend_on_the_order_of_their_resources(
    index: int, random: Any
) -> None:
    resources = SYNTHETIC[index]
    shuffled = list(resources)
    random.shuffle(shuffled)
    assert _as_json(evaluate(shuffled, now=NOW)) == _as_json(evaluate(resources, now=NOW))


# -- fuzzing real resources ---------------------------------------------------------------------

ODD_VALUES = st.one_of(
    st.sampled_from(
        [
            10**400,
            -(10**30),
            1e308,
            -1.0,
            0,
            "NaN",
            "Infinity",
            "-5",
            "1e999",
            "",
            " ",
            "9999-12-31T23:59:59Z",
            "0001-01-01",
            "2026-02-30",
            "2026-11-01T25:61:00+14:00",
            "<5",
            ">1000000 pg/mL",
            "\u03bcmol/L",
            "{pill}",
            None,
            True,
            [],
            {},
            [None],
            {"value": "x"},
            {"reference": "Patient/pt"},
        ]
    ),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.recursive(
        st.one_of(st.none(), st.integers(), st.text(max_size=5)),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(max_size=6), children, max_size=3),
        ),
        max_leaves=6,
    ),
)


def _leaf_paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [path] if path else []
    if isinstance(node, dict):
        for key, child in node.items():
            paths += _leaf_paths(child, (*path, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            paths += _leaf_paths(child, (*path, index))
    return paths


DOCUMENTS = {name: read_fixture(name) for name in FIXTURES}
PATHS = {name: _leaf_paths(document) for name, document in DOCUMENTS.items()}


def _mutate(document: Any, paths: list[tuple[Any, ...]], values: list[Any]) -> Any:
    damaged = copy.deepcopy(document)
    for path, value in zip(paths, values, strict=False):
        parent = damaged
        try:
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = copy.deepcopy(value)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    return damaged


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_the_core_never_raises_on_damaged_real_resources(data: Any) -> None:
    """Values, types, sizes and dates of real charts replaced by absurd ones (huge numbers,
    negative, NaN-like strings, impossible dates, nested wrong types): no exception from
    build_record, evaluate or evaluate_json, but the one refusal of two patients."""
    name = data.draw(st.sampled_from(FIXTURES))
    paths = data.draw(st.lists(st.sampled_from(PATHS[name]), min_size=1, max_size=5))
    values = data.draw(st.lists(ODD_VALUES, min_size=len(paths), max_size=len(paths)))
    damaged = _mutate(DOCUMENTS[name], paths, values)
    now = _now(name)
    try:
        build_record(damaged, now)
        findings = evaluate(damaged, now=now)
    except MixedPatientsError as error:
        assert_names_two_patients(damaged, error)
        return
    assert all(len(f.summary) <= 140 for f in findings)
    try:
        text = json.dumps(damaged).encode()
    except ValueError:  # 10**400 cannot be a JSON number for every parser: skip the text form
        return
    try:
        evaluate_json(text, now=now)
    except MixedPatientsError as error:
        assert_names_two_patients(damaged, error)
    except ValueError as error:
        assert str(error).startswith("not JSON")  # 1e999 and the like: refused as text


def test_an_absurd_dosing_period_does_not_overflow() -> None:
    """A depot completed with timing "every 10^300 years" once raised OverflowError (a 500
    and every card lost over HTTP)."""
    name = "goserelin_given_in_clinic_as_administration_only.json"
    resources = resources_of(copy.deepcopy(DOCUMENTS[name]))
    resources.append(
        {
            "resourceType": "MedicationRequest",
            "id": "absurd",
            "status": "completed",
            "intent": "order",
            "subject": {"reference": "Patient/" + resources[0]["id"]},
            "medicationCodeableConcept": {"text": "goserelin 3.6 mg implant"},
            "authoredOn": "2026-10-01",
            "dosageInstruction": [
                {"timing": {"repeat": {"frequency": 1, "period": 1e300, "periodUnit": "a"}}}
            ],
        }
    )
    assert evaluate(resources, now=_now(name)) is not None
    resources[-1]["dosageInstruction"][0]["timing"]["repeat"]["period"] = 10**400
    assert evaluate(resources, now=_now(name)) is not None
