"""The card that holds several monitoring reminders (cds_hooks/policy.py decides when)."""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from cds_hooks.cards import CardContext, card_for, short_summary
from cds_hooks.codes import RULES_SYSTEM
from cds_hooks.policy import EXTENSION_RULES, MONITORING_RULES, MONITORING_TOPIC, MonitoringGroup
from clinical.finding import Severity
from clinical.rules import title_of


def monitoring_card(
    group: MonitoringGroup, ctx: CardContext, intent: str | None = None
) -> tuple[dict[str, Any], dict[str, tuple[str, ...]]]:
    """One card for several monitoring reminders, and each rule's suggestion uuids on it.
    Every rule's summary, detail, suggestions and override reasons are on it."""
    cards = [card_for(finding, ctx) for finding in group.findings]
    rules = [finding.rule_id for finding in group.findings]
    names = ", ".join(MONITORING_RULES[rule] for rule in rules)
    parts = [intent] if intent else []
    parts += [
        f"**{title_of(finding.rule_id)}** (`{finding.rule_id}`): {one['summary']}\n\n"
        + _without_intent(one["detail"], intent)
        for finding, one in zip(group.findings, cards, strict=True)
    ]
    reasons: dict[str, dict[str, str]] = {}
    for one in cards:
        for reason in one.get("overrideReasons", ()):
            reasons.setdefault(reason["code"], reason)
    suggestions = [s for one in cards for s in one.get("suggestions", ())]
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": short_summary(f"{len(rules)} monitoring checks due: {names}"),
        "indicator": Severity.INFO.value,
        "detail": "\n\n---\n\n".join(parts),
        "source": {
            "label": ctx.product_label,
            "url": f"{ctx.base_url}/about/rules",
            "topic": {
                "system": RULES_SYSTEM,
                "code": MONITORING_TOPIC,
                "display": "Monitoring due",
            },
        },
    }
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"
    card["overrideReasons"] = list(reasons.values())
    card["links"] = [
        *(link for c in cards for link in c["links"] if link["type"] == "absolute"),
        {
            "label": "Open anastrozole monitoring",
            "url": ctx.launch_url,
            "type": "smart",
            "appContext": orjson.dumps({"rule": rules[0]}).decode(),
        },
    ]
    card["extension"] = {EXTENSION_RULES: rules}
    own = {
        rule: tuple(s["uuid"] for s in c.get("suggestions", ()))
        for rule, c in zip(rules, cards, strict=True)
    }
    return card, own


def _without_intent(detail: str, intent: str | None) -> str:
    return detail.replace(f"{intent}\n\n", "", 1) if intent else detail
