"""liver-panel-due: no recent hepatic function panel while on anastrozole."""

from __future__ import annotations

from datetime import datetime
from functools import cache

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import LabResult, PatientRecord
from clinical.rules.common import detail, drug_label, fit, monitoring_gap, months
from clinical.rules.rule import MONITORING_DUE_REASONS, Input, Rule
from clinical.settings import Settings
from clinical.valuesets import load

RULE_ID = "liver-panel-due"
SOURCE = (
    "LiverTox, Anastrozole (2017): rare hepatocellular injury; Lee 2020 Oncologist "
    "(AI-associated NAFLD): periodic liver panel on long-term use; site policy, not a label requirement"
)
# A hepatic function panel, or a comprehensive metabolic panel, which holds ALT and AST too
_PANELS = ("24325-3", "24323-8")
# The value sets that tell the two transaminases apart, and what a card calls each.
TRANSAMINASES = {"alt": "ALT", "ast": "AST"}


@cache
def _transaminase_of_code() -> dict[str, str]:
    valuesets = load()
    return {
        coding.code: short
        for name, short in TRANSAMINASES.items()
        for coding in valuesets.codes(name)
    }


def transaminase(result: LabResult) -> str | None:
    """ "ALT" or "AST" for a liver-transaminases result, whichever LOINC method coded it."""
    return _transaminase_of_code().get(result.code.rpartition(" ")[2])


def newest_transaminases(
    record: PatientRecord, *, with_value: bool = False
) -> dict[str, LabResult]:
    """The newest ALT and the newest AST ("ALT" -> result), those with a value if asked."""
    newest: dict[str, LabResult] = {}
    for result in record.results("liver-transaminases"):  # newest first
        short = transaminase(result)
        if short is not None and (result.value is not None or not with_value):
            newest.setdefault(short, result)
    return {short: newest[short] for short in TRANSAMINASES.values() if short in newest}


def last_liver_panel(record: PatientRecord) -> LabResult | None:
    """The newest hepatic function panel, or the older of the newest ALT and AST."""
    panel = next(
        (r for r in record.results("hepatic-function-panel") if r.code.endswith(_PANELS)), None
    )
    newest = newest_transaminases(record)
    pair = (
        min(newest.values(), key=lambda result: result.date)
        if len(newest) == len(TRANSAMINASES)
        else None
    )
    done = [result for result in (panel, pair) if result is not None]
    return max(done, key=lambda result: result.date) if done else None


def liver_panel_due(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now, "aromatase-inhibitors")
    since = now - settings.liver_panel_interval
    if assessment is None or record.open_orders("hepatic-function-panel", since):
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
    drug = drug_label(course)
    summary = fit(f"Liver panel due on {drug}: {reason}", f"Liver panel due on {drug}")
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


RULE = Rule(
    id=RULE_ID,
    title="Liver panel due",
    meaning="No recent hepatic function panel while on an aromatase inhibitor (anastrozole, letrozole, exemestane).",
    source=SOURCE,
    reads=frozenset({Input.LIVER_TESTS}),
    override_reasons=(MONITORING_DUE_REASONS),
    check=liver_panel_due,
)
