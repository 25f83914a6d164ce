"""Each synthetic patient in tests/fixtures/ raises exactly the findings expected.json pins."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from clinical import evaluate
from clinical.finding import Finding
from clinical.rules import RULE_IDS

SEVERITIES = {"info", "warning", "critical"}
INTENTS = {"oncology-suppression", "trt-modulation", "fertility", "unclear", None}
UNKNOWN_UNIT_SCENARIO = "man_trt_anastrozole_e2_unknown_unit.json"

Scenarios = dict[str, dict[str, Any]]
Findings = Callable[[str], tuple[Finding, ...]]


@pytest.fixture(scope="module")
def findings_for(
    expected: Scenarios, fixture_resources: Callable[[str], list[dict[str, Any]]]
) -> Findings:
    """findings_for(name): clinical.evaluate on the fixture at the scenario's `now`, once."""
    computed: dict[str, tuple[Finding, ...]] = {}

    def run(name: str) -> tuple[Finding, ...]:
        if name not in computed:
            now = datetime.fromisoformat(expected[name]["now"])
            computed[name] = tuple(evaluate(fixture_resources(name), now=now))
        return computed[name]

    return run


def severities(findings: tuple[Finding, ...]) -> dict[str, str]:
    return {f.rule_id: f.severity.value for f in findings}


def test_expectation_names_only_known_rules_severities_and_intents(
    scenario_name: str, expected: Scenarios
) -> None:
    spec = expected[scenario_name]
    assert set(spec["fires"]) <= set(RULE_IDS)
    assert set(spec["fires"].values()) <= SEVERITIES
    assert set(spec["does_not_fire"]) <= set(RULE_IDS)
    assert not set(spec["fires"]) & set(spec["does_not_fire"])
    assert spec["intent"] in INTENTS
    assert ("anastrozole-intent" in spec["fires"]) == (spec["intent"] is not None)
    assert spec["note"]
    datetime.fromisoformat(spec["now"])


def test_fires_exactly_the_expected_rules_at_the_expected_severity(
    scenario_name: str, expected: Scenarios, findings_for: Findings
) -> None:
    assert severities(findings_for(scenario_name)) == expected[scenario_name]["fires"]


def test_rules_the_scenario_proves_silent_stay_silent(
    scenario_name: str, expected: Scenarios, findings_for: Findings
) -> None:
    silent = set(expected[scenario_name]["does_not_fire"])
    assert set(severities(findings_for(scenario_name))) & silent == set()


def test_one_finding_per_rule(scenario_name: str, findings_for: Findings) -> None:
    rule_ids = [f.rule_id for f in findings_for(scenario_name)]
    assert len(rule_ids) == len(set(rule_ids))


def test_intent_finding_names_the_expected_intent(
    scenario_name: str, expected: Scenarios, findings_for: Findings
) -> None:
    expected_intent = expected[scenario_name]["intent"]
    intents = [
        f.intent.value if f.intent is not None else None
        for f in findings_for(scenario_name)
        if f.rule_id == "anastrozole-intent"
    ]
    assert intents == ([] if expected_intent is None else [expected_intent])


def test_summaries_are_short_and_estradiol_cards_give_the_number(
    scenario_name: str, findings_for: Findings
) -> None:
    for finding in findings_for(scenario_name):
        assert len(finding.summary) <= 140, finding.summary
        if finding.rule_id in {"estradiol-low", "estradiol-high"}:
            assert re.search(r"\d", finding.summary), finding.summary


def test_evidence_points_to_resources_in_the_fixture(
    scenario_name: str,
    findings_for: Findings,
    fixture_resources: Callable[[str], list[dict[str, Any]]],
) -> None:
    present = {f"{r['resourceType']}/{r['id']}" for r in fixture_resources(scenario_name)}
    for finding in findings_for(scenario_name):
        assert set(finding.evidence) <= present, (finding.rule_id, finding.evidence)


def test_estradiol_in_an_unknown_unit_is_named_as_left_out(findings_for: Findings) -> None:
    """rules.md: a unit that is not known is never compared, and the finding says so."""
    monitoring = [
        f for f in findings_for(UNKNOWN_UNIT_SCENARIO) if f.rule_id == "estradiol-monitoring-due"
    ]
    assert len(monitoring) == 1
    said = " ".join([monitoring[0].detail, *monitoring[0].data_gaps])
    assert "13.7" in said or "mIU/mL" in said, said
