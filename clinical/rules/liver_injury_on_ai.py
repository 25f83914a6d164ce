"""liver-injury-on-ai: transaminases well above normal while on anastrozole."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import LabResult, PatientRecord, format_number
from clinical.rules.common import condition_lines, detail, drug_label, fit, lab_line
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
    "Hy's law: ALT/AST > 3x ULN and bilirubin > 2x ULN without initial cholestasis (ALP < 2x "
    "ULN), R = (ALT/ULN)/(ALP/ULN) (FDA DILI premarketing guidance 2009)"
)
_SAME_DRAW = timedelta(days=7)


def liver_injury_on_ai(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    assessment = infer_intent(record, now, "aromatase-inhibitors")
    if assessment is None:
        return []
    course = assessment.course
    drug = drug_label(course)
    start = assessment.therapy_start
    since = now - settings.liver_panel_interval if assessment.new_start or not start else start
    # (multiple of ULN, result, ULN, "ALT" or "AST")
    worst: tuple[float, LabResult, float, str] | None = None
    newest = newest_transaminases(record, with_value=True)
    for short, result in newest.items():
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
    jaundice = bool(
        bilirubin
        and bilirubin.value is not None
        and bilirubin.value > settings.bilirubin_hy_multiple * bilirubin_uln
    )
    pattern = _pattern(record, settings, newest, result)
    hy = jaundice and not pattern.cholestatic
    lines = [
        lab_line(result) + f" (ULN {format_number(uln)} U/L from "
        f"{'the lab' if result.reference_high else 'the site default'})",
        f"{short} above {format_number(settings.transaminase_injury_multiple)}x the upper limit "
        "of normal.",
    ]
    evidence = [result.ref, course.ref]
    if bilirubin is not None:
        lines.append(lab_line(bilirubin) + (" (above 2x ULN)" if jaundice else ""))
        evidence.append(bilirubin.ref)
    lines += pattern.lines
    evidence += pattern.refs
    if hy and bilirubin is not None:
        uncertain = " (ALP not on record: cholestasis not excluded)" if pattern.alp is None else ""
        summary = fit(
            f"{short} {result.shown()} ({multiple:.1f}x ULN) and bilirubin {bilirubin.shown()} "
            f"on {drug}: Hy's law, possible severe liver injury{uncertain}",
            f"{short} {multiple:.1f}x ULN and bilirubin {bilirubin.shown()} on {drug}: Hy's law",
        )
        lines.append(
            "Hy's law: transaminase > 3x ULN with bilirubin > 2x ULN and no initial cholestasis "
            "(ALP < 2x ULN); stop the drug and evaluate for drug-induced liver injury."
        )
    elif jaundice:
        summary = fit(
            f"{short} {result.shown()} and bilirubin raised on {drug}, cholestatic pattern: "
            "not Hy's law, evaluate the liver",
            f"{short} {multiple:.1f}x ULN with a cholestatic pattern on {drug}",
        )
        lines.append(
            "A cholestatic picture (ALP >= 2x ULN, R <= 2, or liver metastases or biliary "
            "obstruction on record) is not Hy's law; still evaluate the liver and the drug."
        )
    else:
        summary = fit(
            f"{short} {result.shown()} ({multiple:.1f}x ULN {format_number(uln)}) on {drug}: "
            "possible drug-induced liver injury",
            f"{short} {result.shown()} ({multiple:.1f}x ULN) on {drug}",
        )
        lines.append(f"Evaluate for drug-induced liver injury; consider holding {drug}.")
    gaps = record.gaps_for("liver-transaminases", "bilirubin-total", "alkaline-phosphatase")
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


@dataclass(frozen=True, slots=True)
class _Pattern:
    cholestatic: bool
    alp: LabResult | None
    lines: list[str]
    refs: list[str]


def _pattern(
    record: PatientRecord,
    settings: Settings,
    newest: dict[str, LabResult],
    result: LabResult,
) -> _Pattern:
    """Hepatocellular or cholestatic, from the ALP of the same draw and the R ratio
    ((ALT/ULN)/(ALP/ULN), ALT or else AST), and from a cholestatic disease on record (liver
    metastases, biliary obstruction): FDA DILI guidance 2009."""
    lines: list[str] = []
    refs: list[str] = []
    alp = record.latest("alkaline-phosphatase", since=result.date - _SAME_DRAW)
    cholestatic = False
    if alp is not None and alp.value is not None:
        alp_uln = alp.reference_high or settings.alkaline_phosphatase_uln_u_l
        alp_multiple = alp.value / alp_uln
        enzyme = newest.get("ALT") or result
        enzyme_uln = enzyme.reference_high or settings.transaminase_uln_u_l
        ratio = ((enzyme.value or 0.0) / enzyme_uln) / alp_multiple if alp_multiple else 0.0
        cholestatic = (
            alp_multiple >= settings.alp_cholestasis_multiple
            or ratio <= settings.r_ratio_cholestatic
        )
        kind = (
            "cholestatic"
            if ratio <= settings.r_ratio_cholestatic
            else "hepatocellular"
            if ratio >= _HEPATOCELLULAR_R
            else "mixed"
        )
        lines.append(
            f"{lab_line(alp)} ({alp_multiple:.1f}x ULN {format_number(alp_uln)}); "
            f"R = {ratio:.1f} ({kind})"
        )
        refs.append(alp.ref)
    diseases = record.conditions_in("cholestatic-liver-disease", active_only=False)
    for line in condition_lines(diseases):
        lines.append(f"Recorded: {line}: raised ALP and bilirubin are expected (cholestatic).")
    if diseases:
        cholestatic = True
        refs += [c.ref for c in diseases]
    return _Pattern(cholestatic, alp, lines, refs)


# R >= 5: hepatocellular (FDA DILI guidance 2009)
_HEPATOCELLULAR_R = 5.0


RULE = Rule(
    id=RULE_ID,
    title="Transaminases raised on anastrozole",
    meaning="Transaminases well above normal while on an aromatase inhibitor; critical with "
    "Hy's law (bilirubin > 2x ULN without cholestasis).",
    source=SOURCE,
    reads=frozenset({Input.LIVER_TESTS}),
    override_reasons=(MANAGED_BY_SPECIALIST, WILL_REPEAT, BENEFIT_OUTWEIGHS_RISK),
    check=liver_injury_on_ai,
)
