"""The cards each hook shows with the default `[cards]` table, restated from docs/cds-hooks.md
("Alert burden") as a test oracle, independently of cds_hooks/policy.py: for the findings a
chart raises (rule id -> severity), the cards shown (topic -> indicator)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clinical import evaluate
from clinical.finding import Intent

RANK = {"info": 0, "warning": 1, "critical": 2}
MONITORING = {
    "estradiol-monitoring-due",
    "liver-panel-due",
    "lipid-panel-due",
    "glycemic-monitoring-due",
    "dexa-due",
}


def cards_by_default(
    hook: str, findings: Mapping[str, str], *, intent_unclear: bool
) -> dict[str, str]:
    """patient-view: every severity, the intent card only when it is unclear, two or more
    monitoring reminders (info) as one `monitoring-due` card; order hooks: warnings and
    criticals, and the intent card when it is unclear."""
    floor = 0 if hook == "patient-view" else 1
    shown = {
        rule: severity
        for rule, severity in findings.items()
        if (intent_unclear if rule == "anastrozole-intent" else RANK[severity] >= floor)
    }
    due = [rule for rule, severity in shown.items() if rule in MONITORING and severity == "info"]
    if hook == "patient-view" and len(due) >= 2:
        for rule in due:
            del shown[rule]
        shown["monitoring-due"] = "info"
    return shown


def intent_is_unclear(resources: Any, now: Any) -> bool:
    """Whether the chart's anastrozole intent is unclear, as the clinical core reads it."""
    return any(
        f.rule_id == "anastrozole-intent" and f.intent is Intent.UNCLEAR
        for f in evaluate(resources, now=now)
    )
