"""glycemic-monitoring-due: no recent HbA1c or glucose on anastrozole for modulation."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import detail, fit, monitoring_gap, months
from clinical.rules.estradiol_low import MODULATION
from clinical.rules.rule import MONITORING_DUE_REASONS, Input, Rule
from clinical.settings import Settings

RULE_ID = "glycemic-monitoring-due"
SOURCE = "Gibb 2016 JCEM: aromatase inhibition reduced insulin sensitivity in healthy men"


def glycemic_monitoring_due(
    record: PatientRecord, settings: Settings, now: datetime
) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None or assessment.intent not in MODULATION:
        return []
    since = now - settings.glycemic_interval
    if record.open_orders("hba1c", since) or record.open_orders("glucose-fasting", since):
        return []
    last = record.latest_done("hba1c", "glucose-fasting")
    reason = monitoring_gap(
        last.date if last else None, now=now, interval=settings.glycemic_interval
    )
    if reason is None:
        return []
    lines = [
        f"HbA1c or fasting glucose: {reason}; due every {months(settings.glycemic_interval)} "
        f"months on anastrozole for {assessment.intent.label}.",
    ]
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=fit(
                f"HbA1c or glucose due on anastrozole ({assessment.intent.label}): {reason}",
                "HbA1c or glucose due on anastrozole",
            ),
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=(assessment.course.ref, *((last.ref,) if last else ())),
            suggested_orders=(orders.HBA1C,),
            intent=assessment.intent,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="HbA1c or glucose due",
    meaning="No recent HbA1c or fasting glucose while on anastrozole for modulation.",
    source=SOURCE,
    reads=frozenset({Input.GLYCEMIC_TESTS}),
    override_reasons=(MONITORING_DUE_REASONS),
    check=glycemic_monitoring_due,
)
