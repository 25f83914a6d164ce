"""Findings as plain JSON (for the CLI and the adapters' logs and tests)."""

from __future__ import annotations

from typing import Any

from clinical.finding import Finding


def finding_to_json(finding: Finding) -> dict[str, Any]:
    return {
        "rule_id": finding.rule_id,
        "severity": finding.severity.value,
        "summary": finding.summary,
        "detail": finding.detail,
        "source": finding.source,
        "intent": finding.intent.value if finding.intent else None,
        "evidence": list(finding.evidence),
        "suggested_orders": [
            {
                "label": order.label,
                "category": order.category,
                "codings": [
                    {"system": c.system, "code": c.code, "display": c.display}
                    for c in order.codings
                ],
            }
            for order in finding.suggested_orders
        ],
        "data_gaps": list(finding.data_gaps),
    }
