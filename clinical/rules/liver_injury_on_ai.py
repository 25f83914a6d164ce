"""liver-injury-on-ai: transaminases well above normal while on anastrozole."""

from __future__ import annotations

from datetime import datetime, timedelta

from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import LabResult, PatientRecord, format_number
from clinical.rules.common import detail, fit, lab_line
from clinical.rules.liver_panel_due import newest_transaminases
from clinical.rules.rule import (
    BENEFIT_OUTWEIGHS_RISK,
    MANAGED_BY_SPECIALIST,
    WILL_REPEAT,
    Input,
    Rule,
)
from clinical.settings import Settings

RULE_ID = "liver-injury-on-ai"
SOURCE = (
    "LiverTox, Anastrozole (2017): rare hepatocellular injury; DILI threshold ALT/AST > 3x ULN; "
    "Hy's law with bilirubin > 2x ULN (FDA DILI guidance 2009)"
)
_SAME_DRAW = timedelta(days=7)


def liver_injury_on_ai(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now)
    if assessment is None:
        return []
    course = assessment.course
    start = assessment.therapy_start
    since = now - settings.liver_panel_interval if assessment.new_start or not start else start
    # (multiple of ULN, result, ULN, "ALT" or "AST")
    worst: tuple[float, LabResult, float, str] | None = None
    for short, result in newest_transaminases(record, with_value=True).items():
        if result.date < since or result.value is None:
            continue
        uln = result.reference_high or settings.transaminase_uln_u_l
        multiple = result.value / uln
        if multiple > settings.transaminase_injury_multiple and (
            worst is None or multiple > worst[0]
        ):
            worst = (multiple, result, uln, short)
    if worst is None:
        return []
    multiple, result, uln, short = worst
    bilirubin = record.latest("bilirubin-total", since=result.date - _SAME_DRAW)
    bilirubin_uln = (
        bilirubin.reference_high or settings.bilirubin_uln_mg_dl
        if bilirubin
        else settings.bilirubin_uln_mg_dl
    )
    hy = bool(
        bilirubin
        and bilirubin.value is not None
        and bilirubin.value > settings.bilirubin_hy_multiple * bilirubin_uln
    )
    analyte = result.name.split()[0] if result.name else "Transaminase"
    if hy and bilirubin is not None:
        summary = fit(
            f"{short} {result.shown()} ({multiple:.1f}x ULN) and bilirubin {bilirubin.shown()} "
            "on anastrozole: Hy's law, possible severe liver injury",
            f"{short} {multiple:.1f}x ULN and bilirubin {bilirubin.shown()} on anastrozole: Hy's law",
        )
    else:
        summary = fit(
            f"{short} {result.shown()} ({multiple:.1f}x ULN {format_number(uln)}) on anastrozole: "
            "possible drug-induced liver injury",
            f"{short} {result.shown()} ({multiple:.1f}x ULN) on anastrozole",
        )
    uln_source = "the lab's reference range" if result.reference_high else "the site default"
    lines = [
        lab_line(result) + f" (ULN {format_number(uln)} U/L from {uln_source})",
        f"{analyte} above {format_number(settings.transaminase_injury_multiple)}x the upper limit of normal.",
    ]
    gaps = record.gaps_for("liver-transaminases", "bilirubin-total")
    evidence = [result.ref, course.ref]
    if bilirubin is not None:
        lines.append(lab_line(bilirubin) + (" (above 2x ULN: Hy's law)" if hy else ""))
        evidence.append(bilirubin.ref)
    lines.append("Evaluate for drug-induced liver injury; consider holding anastrozole.")
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.CRITICAL if hy else Severity.WARNING,
            summary=summary,
            detail=detail(lines, SOURCE, gaps),
            data_gaps=tuple(gaps),
            source=SOURCE,
            evidence=tuple(dict.fromkeys(evidence)),
            intent=assessment.intent,
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Transaminases raised on anastrozole",
    meaning="Transaminases well above normal while on anastrozole.",
    source=SOURCE,
    reads=frozenset({Input.LIVER_TESTS}),
    override_reasons=(MANAGED_BY_SPECIALIST, WILL_REPEAT, BENEFIT_OUTWEIGHS_RISK),
    check=liver_injury_on_ai,
)
