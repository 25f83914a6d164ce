"""Which findings a hook shows as cards: the `[cards]` policy, the intent as a line in the
cards shown, and several monitoring reminders as one card.

Nothing here decides what is clinically true (`clinical.evaluate` does); it decides what is
worth interrupting a clinician with at this moment. The SMART app lists every finding.
docs/cds-hooks.md, "Alert burden", gives the reasons for the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from clinical.finding import Finding, Intent, Severity
from runtime.card_settings import INTENT_RULE, NONE, UNCLEAR, CardSettings, HookCards

# Not a rule: the topic of the card that holds several monitoring reminders. Its rules are in
# the card's `extension` (EXTENSION_RULES) and detail; feedback on it counts for each of them.
MONITORING_TOPIC = "monitoring-due"
EXTENSION_RULES = "example.anastrozole-cds.rules"
EXTENSION_POLICY = "example.anastrozole-cds.card-policy"

# The periodic checks that only ask for a test to be ordered: one task on the chart ("order
# the monitoring"), so shown together when several are due at once. Warnings stay on their own.
MONITORING_RULES: dict[str, str] = {
    "estradiol-monitoring-due": "estradiol",
    "liver-panel-due": "liver panel",
    "lipid-panel-due": "lipid panel",
    "glycemic-monitoring-due": "HbA1c or glucose",
    "dexa-due": "DXA",
}


@dataclass(frozen=True, slots=True)
class MonitoringGroup:
    """Several monitoring reminders shown as one card."""

    findings: tuple[Finding, ...]


CardItem = Finding | MonitoringGroup


@dataclass(frozen=True, slots=True)
class Selection:
    shown: list[Finding]  # in the clinical core's order, with the intent line where it belongs
    not_shown: list[Finding]  # left out by this hook's policy (the SMART app lists them)
    line: str | None = None  # the intent line the cards shown carry


def select(findings: Sequence[Finding], hook: HookCards) -> Selection:
    """The findings this hook shows. When the intent card is not among them, the cards that
    are carry its line ("Intent: oncology suppression (from ...)")."""
    shown = [f for f in findings if shows(hook, f)]
    not_shown = [f for f in findings if not shows(hook, f)]
    intent = next((f for f in not_shown if f.rule_id == INTENT_RULE), None)
    line = intent_line(intent) if intent is not None else None
    if line:
        shown = [with_intent_line(f, line) for f in shown]
    return Selection(shown, not_shown, line)


def shows(hook: HookCards, finding: Finding) -> bool:
    floor = hook.floor_for(finding.rule_id)
    if floor == NONE:
        return False
    if floor == UNCLEAR:
        return finding.intent is Intent.UNCLEAR
    return finding.severity.rank >= Severity(floor).rank


# anastrozole-intent writes "Intent **TRT modulation** from: <evidence>." (clinical/rules/
# anastrozole_intent.py); tests/cds_hooks/test_card_policy.py holds the two together.
_INTENT_FROM = re.compile(r"^- Intent \*\*(?P<label>[^*]+)\*\* from: (?P<why>.+?)\.?$", re.M)


def intent_line(intent: Finding) -> str | None:
    """ "**Intent:** TRT modulation (from testosterone therapy ...)", from the intent finding."""
    if intent.intent is None or intent.intent is Intent.UNCLEAR:
        return None
    found = _INTENT_FROM.search(intent.detail)
    if found is None:
        return f"**Intent:** {intent.intent.label}"
    return f"**Intent:** {found['label']} (from {found['why']})"


def with_intent_line(finding: Finding, line: str) -> Finding:
    if finding.intent is None or finding.rule_id == INTENT_RULE or line in finding.detail:
        return finding
    return replace(finding, detail=f"{line}\n\n{finding.detail}")


def group_monitoring(findings: Sequence[Finding], hook: HookCards) -> list[CardItem]:
    """The cards in order: monitoring reminders at info severity as one card when there are
    two or more (in the place of the first), every other finding on its own."""
    due = [f for f in findings if f.rule_id in MONITORING_RULES and f.severity is Severity.INFO]
    if not hook.group_monitoring or len(due) < 2:
        return list(findings)
    items: list[CardItem] = []
    for finding in findings:
        if finding is due[0]:
            items.append(MonitoringGroup(tuple(due)))
        elif finding not in due:
            items.append(finding)
    return items


# -- what discovery and the docs say ------------------------------------------------------------

_FLOOR_WORDS = {
    "info": "all severities",
    "warning": "warnings and criticals",
    "critical": "criticals only",
    NONE: "none",
}


def describe(hook: HookCards, cards: CardSettings) -> str:
    """Sentences for a service's description: what this hook shows, and for how long an
    answered card stays away."""
    words = [_FLOOR_WORDS[hook.show]]
    for rule, floor in sorted(hook.rules.items()):
        if floor == UNCLEAR:
            words.append(
                f"{rule} only when the intent is unclear (otherwise an Intent line in each card)"
            )
        elif floor != hook.show:
            words.append(f"{rule}: {_FLOOR_WORDS[floor]}")
    if hook.group_monitoring:
        words.append(f"several monitoring reminders due at once as one card ({MONITORING_TOPIC})")
    critical = _duration(min(cards.critical_suppression_seconds, cards.suppression_days * 86_400))
    return (
        f"Cards shown here: {'; '.join(words)}. A card answered with a reason is not shown again "
        f"for {cards.suppression_days} days unless its evidence changes ({critical} for a "
        "critical one)."
    )


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"{hours} hour" + ("s" if hours != 1 else "")
    return f"{seconds} seconds"


def policy_extension(hook: HookCards, cards: CardSettings) -> dict[str, Any]:
    """The same, for machines: the discovery document's `extension` of each service."""
    return {
        EXTENSION_POLICY: {
            "show": hook.show,
            "rules": dict(sorted(hook.rules.items())),
            "groupMonitoring": hook.group_monitoring,
            "monitoringTopic": MONITORING_TOPIC,
            "suppressionDays": cards.suppression_days,
            "criticalSuppressionSeconds": min(
                cards.critical_suppression_seconds, cards.suppression_days * 86_400
            ),
        }
    }
