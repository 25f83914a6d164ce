"""The rule catalogue: every rule, in the order cards are listed at equal severity.

Each rule module holds one rule: its check and its `RULE` (id, title, meaning, source, the
data it reads, the reasons a clinician may give for not following it). This catalogue is the
one list of them; docs/rules.md describes each, and docs/architecture.md says how to add one.
"""

from __future__ import annotations

from clinical.rules import (
    ai_interaction,
    anastrozole_intent,
    bone_loss_on_ai,
    dexa_due,
    dose_intent_mismatch,
    estradiol_high,
    estradiol_low,
    estradiol_monitoring_due,
    glycemic_monitoring_due,
    lipid_panel_due,
    liver_injury_on_ai,
    liver_panel_due,
    premenopausal_on_ai,
    sex_undetermined,
)
from clinical.rules.rule import CORE_INPUTS, Check, Input, OverrideReason, Rule

CATALOGUE: tuple[Rule, ...] = (
    ai_interaction.RULE,
    premenopausal_on_ai.RULE,
    liver_injury_on_ai.RULE,
    estradiol_low.RULE,
    dose_intent_mismatch.RULE,
    bone_loss_on_ai.RULE,
    estradiol_high.RULE,
    dexa_due.RULE,
    estradiol_monitoring_due.RULE,
    liver_panel_due.RULE,
    lipid_panel_due.RULE,
    glycemic_monitoring_due.RULE,
    sex_undetermined.RULE,
    anastrozole_intent.RULE,
)
RULES: dict[str, Rule] = {rule.id: rule for rule in CATALOGUE}
RULE_IDS: tuple[str, ...] = tuple(RULES)


def rules_reading(inputs: frozenset[Input]) -> frozenset[str]:
    """The ids of the rules that read any of these slices of the chart."""
    return frozenset(rule.id for rule in CATALOGUE if rule.inputs & inputs)


def title_of(rule_id: str) -> str:
    """A rule's title; an id the catalogue does not know (a link from an older card) in words."""
    rule = RULES.get(rule_id)
    return rule.title if rule else rule_id.replace("-", " ").capitalize()


__all__ = [
    "CATALOGUE",
    "CORE_INPUTS",
    "RULES",
    "RULE_IDS",
    "Check",
    "Input",
    "OverrideReason",
    "Rule",
    "rules_reading",
    "title_of",
]
