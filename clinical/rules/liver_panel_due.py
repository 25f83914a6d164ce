"""liver-panel-due: no recent hepatic function panel while on anastrozole."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import LabResult, PatientRecord
from clinical.rules.common import detail, monitoring_gap, months, newest_pair
from clinical.settings import Settings

RULE_ID = "liver-panel-due"
SOURCE = (
    "LiverTox, Anastrozole (2017): rare hepatocellular injury; Lee 2020 Oncologist "
    "(AI-associated NAFLD): periodic liver panel on long-term use; site policy, not a label requirement"
)
_PANEL = "24325-3"
_ALT_AST = ("1742-6", "1920-8")


def last_liver_panel(record: PatientRecord) -> LabResult | None:
    """The newest hepatic function panel, or the older of the newest ALT and AST."""
    panel = next(
        (r for r in record.results("hepatic-function-panel") if r.code.endswith(_PANEL)), None
    )
    pair = newest_pair(record, "liver-transaminases", _ALT_AST)
    done = [result for result in (panel, pair) if result is not None]
    return max(done, key=lambda result: result.date) if done else None


def liver_panel_due(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None or record.open_orders("hepatic-function-panel"):
        return []
    course = assessment.course
    last = last_liver_panel(record)
    reason = monitoring_gap(
        last.date if last else None,
        now=now,
        interval=settings.liver_panel_interval,
        start=assessment.therapy_start,
        baseline_window=settings.liver_baseline_window,
    )
    if reason is None:
        return []
    summary = f"Liver panel due on anastrozole: {reason}"
    if len(summary) > 140:
        summary = "Liver panel due on anastrozole"
    lines = [
        f"Hepatic function panel (or ALT and AST): {reason}; due every "
        f"{months(settings.liver_panel_interval)} months and at the start of therapy.",
    ]
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.INFO,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=(course.ref, *((last.ref,) if last else ())),
            suggested_orders=(orders.HEPATIC_PANEL,),
            intent=assessment.intent,
        )
    ]
