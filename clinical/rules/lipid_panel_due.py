"""lipid-panel-due: no recent lipid panel while on anastrozole."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import detail, drug_label, fit, monitoring_gap, months
from clinical.rules.rule import MONITORING_DUE_REASONS, Input, Rule
from clinical.settings import Settings

RULE_ID = "lipid-panel-due"
SOURCE = "Arimidex PI 5.3: total cholesterol increases, consider cholesterol monitoring"


def lipid_panel_due(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now, "aromatase-inhibitors")
    if assessment is None or record.open_orders(
        "lipid-panel", since=now - settings.lipid_panel_interval
    ):
        return []
    course = assessment.course
    last = record.latest_done("lipid-panel-evidence")
    reason = monitoring_gap(
        last.date if last else None,
        now=now,
        interval=settings.lipid_panel_interval,
        start=assessment.therapy_start,
        baseline_window=settings.lipid_baseline_window,
    )
    if reason is None:
        return []
    drug = drug_label(course)
    summary = fit(f"Lipid panel due on {drug}: {reason}", f"Lipid panel due on {drug}")
    lines = [
        f"Lipid panel (total cholesterol or LDL): {reason}; due every "
        f"{months(settings.lipid_panel_interval)} months and at the start of therapy.",
    ]
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=(course.ref, *((last.ref,) if last else ())),
            suggested_orders=(orders.LIPID_PANEL,),
            intent=assessment.intent,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Lipid panel due",
    meaning="No recent lipid panel while on an aromatase inhibitor (anastrozole, letrozole, exemestane).",
    source=SOURCE,
    reads=frozenset({Input.LIPID_TESTS}),
    override_reasons=(MONITORING_DUE_REASONS),
    check=lipid_panel_due,
)
