"""The `[cards]` table: which findings each hook shows, the intent as a line in the cards
shown, several monitoring reminders as one card, what discovery says, and one line naming a
wrong key."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from anastrozole_cds.app import create_app
from anastrozole_cds.cli import main
from cds_hooks.cards import CardContext
from cds_hooks.monitoring_card import monitoring_card
from cds_hooks.policy import (
    EXTENSION_POLICY,
    EXTENSION_RULES,
    MONITORING_TOPIC,
    MonitoringGroup,
    group_monitoring,
    intent_line,
    select,
)
from clinical import evaluate
from clinical.finding import Finding, Intent, Severity
from clinical.rules import RULES
from runtime.card_settings import DEFAULT_HOOKS, read_card_settings
from runtime.settings import ConfigError, ProductSettings, read_settings
from sandbox.patients import REFERENCE_NOW, all_patients, bundle_resources
from tests.cds_hooks.cds_helpers import (
    NOW,
    ORDER_SIGN,
    PATIENT_VIEW,
    Keys,
    call,
    hook_body,
    trt_man_prefetch,
)
from tests.conftest import expected_scenarios, read_fixture, resources_of

CTX = CardContext(base_url="https://cds.example.org", patient_id="p1", now=NOW)


def finding(
    rule: str, severity: Severity, intent: Intent | None = Intent.TRT_MODULATION
) -> Finding:
    return Finding(rule, severity, f"{rule} summary", f"- {rule} detail", "a source", intent=intent)


def topics(cards: list[dict[str, Any]]) -> dict[str, str]:
    return {card["source"]["topic"]["code"]: card["indicator"] for card in cards}


def charts() -> list[tuple[str, list[Finding]]]:
    """The findings of every synthetic patient and every scenario fixture."""
    found = [
        (p.key, evaluate(bundle_resources(p.bundle), now=REFERENCE_NOW)) for p in all_patients()
    ]
    for name, scenario in expected_scenarios().items():
        now = scenario["now"].replace("Z", "+00:00")
        resources = resources_of(read_fixture(name))
        found.append((name, evaluate(resources, now=datetime.fromisoformat(now))))
    return found


# -- which findings each hook shows, by default --------------------------------------------------


def test_patient_view_shows_every_severity_but_a_clear_intent() -> None:
    findings = [
        finding("estradiol-low", Severity.WARNING),
        finding("sex-undetermined", Severity.INFO),
        finding("anastrozole-intent", Severity.INFO),
    ]
    chosen = select(findings, DEFAULT_HOOKS["patient-view"])
    assert [f.rule_id for f in chosen.shown] == ["estradiol-low", "sex-undetermined"]
    assert [f.rule_id for f in chosen.not_shown] == ["anastrozole-intent"]


@pytest.mark.parametrize("hook", ["patient-view", "order-select", "order-sign"])
def test_an_unclear_intent_is_a_card_at_every_hook(hook: str) -> None:
    unclear = finding("anastrozole-intent", Severity.INFO, Intent.UNCLEAR)
    assert select([unclear], DEFAULT_HOOKS[hook]).shown == [unclear]


@pytest.mark.parametrize("hook", ["order-select", "order-sign"])
def test_order_hooks_show_warnings_and_criticals_only(hook: str) -> None:
    findings = [
        finding("ai-interaction", Severity.CRITICAL),
        finding("dose-intent-mismatch", Severity.WARNING),
        finding("dexa-due", Severity.INFO),
        finding("anastrozole-intent", Severity.INFO),
    ]
    shown = select(findings, DEFAULT_HOOKS[hook]).shown
    assert [f.rule_id for f in shown] == ["ai-interaction", "dose-intent-mismatch"]


def test_the_cards_shown_carry_the_intent_line_when_its_card_is_not_shown() -> None:
    patient = next(p for p in all_patients() if p.key == "trt-low-e2")
    findings = evaluate(bundle_resources(patient.bundle), now=REFERENCE_NOW)
    shown = select(findings, DEFAULT_HOOKS["patient-view"]).shown
    assert shown and all(f.detail.startswith("**Intent:** TRT modulation (from ") for f in shown), [
        f.detail[:80] for f in shown
    ]


def test_no_intent_line_when_the_intent_card_is_shown() -> None:
    everything = read_card_settings({"patient-view": {"anastrozole-intent": "info"}})
    patient = next(p for p in all_patients() if p.key == "trt-low-e2")
    findings = evaluate(bundle_resources(patient.bundle), now=REFERENCE_NOW)
    shown = select(findings, everything.for_hook("patient-view")).shown
    assert "anastrozole-intent" in {f.rule_id for f in shown}
    assert not any("**Intent:**" in f.detail for f in shown)


@pytest.mark.parametrize("name,findings", charts(), ids=[name for name, _ in charts()])
def test_the_intent_line_reads_the_intent_rules_own_words(
    name: str, findings: list[Finding]
) -> None:
    """The line is read from anastrozole-intent's detail: a change of its wording fails here."""
    intent = next((f for f in findings if f.rule_id == "anastrozole-intent"), None)
    if intent is None or intent.intent in (None, Intent.UNCLEAR):
        assert intent is None or intent_line(intent) is None
        return
    line = intent_line(intent)
    # the label, a qualifier the intent rule may add ("(risk reduction)"), then its evidence
    assert line is not None and line.startswith(f"**Intent:** {intent.intent.label}")
    assert " (from " in line
    assert line.endswith(")") and "**Intent:** " + intent.intent.label + ")" not in line


# -- the site's own table ------------------------------------------------------------------------


def test_a_site_can_raise_a_hooks_floor_and_switch_one_rule_off() -> None:
    cards = read_card_settings(
        {"patient-view": {"show": "warning", "estradiol-low": "none", "dexa-due": "info"}}
    )
    findings = [
        finding("liver-injury-on-ai", Severity.CRITICAL),
        finding("estradiol-low", Severity.WARNING),
        finding("dexa-due", Severity.INFO),
        finding("lipid-panel-due", Severity.INFO),
    ]
    shown = select(findings, cards.for_hook("patient-view")).shown
    assert [f.rule_id for f in shown] == ["liver-injury-on-ai", "dexa-due"]
    assert cards.for_hook("patient-view").rules["anastrozole-intent"] == "unclear"  # kept


def test_the_table_changes_what_the_service_answers(
    make_settings: Callable[..., ProductSettings], keys: Keys
) -> None:
    quiet = create_app(make_settings(cards={"patient-view": {"show": "warning"}})).test_client()
    response = call(quiet, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    assert topics(response.json["cards"]) == {"estradiol-low": "warning"}
    default = create_app(make_settings(cards={})).test_client()
    response = call(default, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    assert topics(response.json["cards"]) == {"estradiol-low": "warning", MONITORING_TOPIC: "info"}


# -- monitoring reminders together ----------------------------------------------------------------


def test_two_or_more_monitoring_reminders_are_one_card_in_the_place_of_the_first() -> None:
    findings = [
        finding("estradiol-low", Severity.WARNING),
        finding("estradiol-monitoring-due", Severity.INFO),
        finding("sex-undetermined", Severity.INFO),
        finding("lipid-panel-due", Severity.INFO),
    ]
    items = group_monitoring(findings, DEFAULT_HOOKS["patient-view"])
    assert items[0] == findings[0] and items[2] == findings[2]
    assert isinstance(items[1], MonitoringGroup)
    assert [f.rule_id for f in items[1].findings] == ["estradiol-monitoring-due", "lipid-panel-due"]


def test_one_reminder_or_a_warning_stays_a_card_of_its_own() -> None:
    hook = DEFAULT_HOOKS["patient-view"]
    alone = [finding("dexa-due", Severity.WARNING), finding("lipid-panel-due", Severity.INFO)]
    assert group_monitoring(alone, hook) == alone
    off = read_card_settings({"patient-view": {"group_monitoring": False}})
    both = [finding("dexa-due", Severity.INFO), finding("lipid-panel-due", Severity.INFO)]
    assert group_monitoring(both, off.for_hook("patient-view")) == both


def test_the_monitoring_card_keeps_every_rule_its_suggestions_and_override_reasons() -> None:
    patient = next(p for p in all_patients() if p.key == "trt-stale-monitoring")
    findings = evaluate(bundle_resources(patient.bundle), now=REFERENCE_NOW)
    due = tuple(f for f in findings if f.rule_id.endswith("-due"))
    assert len(due) == 4
    card, own = monitoring_card(MonitoringGroup(due), CTX, "**Intent:** TRT modulation")
    rules = [f.rule_id for f in due]
    assert card["source"]["topic"]["code"] == MONITORING_TOPIC
    assert card["extension"][EXTENSION_RULES] == rules
    assert card["indicator"] == "info" and len(card["summary"]) < 140
    for f in due:
        assert f"(`{f.rule_id}`)" in card["detail"] and f.summary in card["detail"]
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == [o.label for f in due for o in f.suggested_orders]
    assert sorted(own) == sorted(rules) and sum(map(len, own.values())) == len(labels)
    codes = {r["code"] for r in card["overrideReasons"]}
    assert codes == {r.code for f in due for r in RULES[f.rule_id].override_reasons}
    assert card["detail"].count("**Intent:**") == 1
    assert card["selectionBehavior"] == "any"


# -- discovery says what each service shows ----------------------------------------------------------


def test_discovery_says_what_each_service_shows(
    make_settings: Callable[..., ProductSettings],
) -> None:
    cards = {"order-sign": {"show": "critical"}, "critical_suppression_seconds": 3600}
    client = create_app(make_settings(cards=cards)).test_client()
    services = {s["id"]: s for s in client.get("/cds-services").json["services"]}
    sign = services[ORDER_SIGN]
    assert "Cards shown here: criticals only" in sign["description"]
    assert "(1 hour for a critical one)" in sign["description"]
    assert sign["extension"][EXTENSION_POLICY]["show"] == "critical"
    view = services[PATIENT_VIEW]
    assert "anastrozole-intent only when the intent is unclear" in view["description"]
    assert view["extension"][EXTENSION_POLICY]["groupMonitoring"] is True


def test_the_discovery_command_prints_the_sites_policy(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text('[cards.patient-view]\nshow = "warning"\n')
    result = CliRunner().invoke(main, ["discovery", "--config", str(config)], env=_clean_env())
    assert result.exit_code == 0, result.output
    view = next(s for s in orjson.loads(result.output)["services"] if s["hook"] == "patient-view")
    assert view["extension"][EXTENSION_POLICY]["show"] == "warning"


# -- a wrong key stops start-up, named -----------------------------------------------------------


def _clean_env() -> dict[str, str | None]:
    return {name: None for name in os.environ if name.upper().startswith("ANASTROZOLE_CDS_")}


@pytest.mark.parametrize(
    "toml,name,problem",
    [
        ('[cards.patient-veiw]\nshow = "info"', "cards.patient-veiw", "did you mean patient-view?"),
        ('[cards.patient-view]\nshow = "high"', "cards.patient-view.show", "one of info, warning"),
        (
            '[cards.order-sign]\ndexa-du = "info"',
            "cards.order-sign.dexa-du",
            "did you mean dexa-due?",
        ),
        (
            '[cards.order-sign]\ndexa-due = "unclear"',
            "cards.order-sign.dexa-due",
            "only for anastrozole-intent",
        ),
        (
            "[cards.patient-view]\ngroup_monitoring = 3",
            "cards.patient-view.group_monitoring",
            "true or false",
        ),
        ("[cards]\nsuppression_days = 400", "cards.suppression_days", "from 0 to 365"),
        (
            "[cards]\ncritical_suppression_seconds = 90000",
            "cards.critical_suppression_seconds",
            "from 0 to 86400",
        ),
        ('[cards]\npatient_key = "short-secret"', "cards.patient_key", "at least 32 characters"),
        ("[cards]\nsupression_days = 3", "cards.supression_days", "did you mean suppression_days?"),
    ],
)
def test_a_wrong_cards_key_stops_start_up_with_one_line_naming_it(
    tmp_path: Path, toml: str, name: str, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in _clean_env():
        monkeypatch.delenv(variable)
    config = tmp_path / "cds.toml"
    config.write_text(toml + "\n")
    with pytest.raises(ConfigError) as raised:
        read_settings(config)
    message = str(raised.value)
    assert f"{name} (in {config}): " in message and problem in message, message
    assert "\n" not in message
    assert "short-secret" not in message  # a secret is never echoed


def test_the_cards_table_can_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in _clean_env():
        monkeypatch.delenv(name)
    monkeypatch.setenv("ANASTROZOLE_CDS_CARDS", '{"order-select": {"show": "critical"}}')
    monkeypatch.setenv("ANASTROZOLE_CDS_CARDS__SUPPRESSION_DAYS", "14")
    cards = read_card_settings(read_settings().cards)
    assert cards.for_hook("order-select").show == "critical"
    assert cards.suppression_days == 14
