"""What the page shows, from the patient's resources: a view model, no HTML and no HTTP.

The findings are the clinical core's, in its order (most severe first) and in the words of
the cards: the same summary, the same markdown detail, the same rule titles. The monitoring
timeline, the intent and the chart read the same `PatientRecord`, so the page never says
something the rules did not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import orjson
from markdown_it import MarkdownIt
from markupsafe import Markup

from clinical import build_record
from clinical.evaluate import evaluate_record
from clinical.finding import Finding, Intent, Severity
from clinical.intent import infer_intent
from clinical.reader import iter_resources
from clinical.record import LabResult, PatientRecord, format_number
from clinical.rules import RULES, title_of
from clinical.rules.dexa_due import lowest_recent_t_score
from clinical.rules.liver_panel_due import TRANSAMINASES, last_liver_panel, transaminase
from clinical.settings import Settings
from runtime.acknowledgements import (
    ACCEPTED,
    Acknowledgement,
    evidence_fingerprint,
    lockout,
    resources_by_reference,
)
from runtime.card_settings import CardSettings
from smartapp.trend import TrendChart, trend_chart

SEVERITY_LABEL = {
    Severity.CRITICAL: "Critical",
    Severity.WARNING: "Warning",
    Severity.INFO: "Info",
}
_MARKDOWN = MarkdownIt("commonmark", {"html": False})  # no raw HTML from any source
_RULE_ID = re.compile(r"^[a-z][a-z0-9-]{1,63}$")
_MR = "MR"


def render_markdown(text: str) -> Markup:
    return Markup(_MARKDOWN.render(text))  # html is off: markdown-it escapes any


@dataclass(frozen=True)
class Banner:
    name: str
    sex: str
    birth_date: str
    age: int | None
    mrn: str | None
    patient_id: str


@dataclass(frozen=True)
class Answers:
    """The answers to this patient's cards in the EHR, as of `clock` (the wall clock)."""

    acknowledgements: tuple[Acknowledgement, ...]
    clock: datetime
    cards: CardSettings


@dataclass(frozen=True)
class AcknowledgedView:
    """A finding the EHR keeps away as a card, because a clinician answered it."""

    reason: str  # "Will repeat the test", "Suggested order accepted"
    on: str  # the day it was answered
    until: str  # the last day it stays away, unless its evidence changes


@dataclass(frozen=True)
class FindingView:
    rule_id: str
    title: str
    severity: str
    severity_label: str
    summary: str
    detail: Markup
    evidence: tuple[str, ...]
    suggested_orders: tuple[str, ...]
    highlighted: bool
    acknowledged: AcknowledgedView | None = None


@dataclass(frozen=True)
class MonitoringItem:
    key: str
    label: str
    rule_id: str
    last_date: str | None
    last_text: str  # "Lumbar spine −2.8 · Hip −2.6", "ALT 24 U/L · AST 21 U/L"
    status: str  # due | ok | not-required | off
    status_text: str
    repeat_by: str | None
    severity: str | None  # of the finding that says it is due


@dataclass(frozen=True)
class IntentView:
    intent: str
    label: str
    explanation: str
    clues: tuple[tuple[str, str], ...]  # (what, reference)
    course: str
    dose: str
    started: str | None


@dataclass(frozen=True)
class Dashboard:
    as_of: str
    banner: Banner | None
    findings: tuple[FindingView, ...]
    counts: dict[str, int]
    chart: TrendChart
    monitoring: tuple[MonitoringItem, ...]
    intent: IntentView | None
    notes: tuple[str, ...]  # data the page could not read or use, said plainly
    highlighted_rule: str | None
    highlighted_title: str | None
    highlight_missing: bool  # the card the clinician came from no longer fires


def highlighted_rule(app_context: str | None) -> str | None:
    """The rule of the card the app was opened from: CDS Hooks `appContext` {"rule": ...}."""
    if not app_context:
        return None
    try:
        context = orjson.loads(app_context)
    except orjson.JSONDecodeError:
        return None
    rule = context.get("rule") if isinstance(context, dict) else None
    return rule if isinstance(rule, str) and _RULE_ID.match(rule) else None


def build_dashboard(
    resources: Any,
    *,
    now: datetime,
    settings: Settings,
    app_context: str | None = None,
    fetch_gaps: tuple[str, ...] = (),
    answers: Answers | None = None,
) -> Dashboard:
    record = build_record(resources, now)
    findings = evaluate_record(record, now=now, settings=settings)
    assessment = infer_intent(record, now)
    intent = assessment.intent if assessment else None
    highlight = highlighted_rule(app_context)
    by_rule = {finding.rule_id: finding for finding in findings}
    counts = {severity.value: 0 for severity in Severity}
    for finding in findings:
        counts[finding.severity.value] += 1
    chart = trend_chart(record, intent, settings, now)
    return Dashboard(
        as_of=now.date().isoformat(),
        banner=_banner(record, resources),
        findings=tuple(
            _finding_view(f, f.rule_id == highlight, _acknowledged(f, resources, answers))
            for f in findings
        ),
        counts=counts,
        chart=chart,
        monitoring=_monitoring(record, by_rule, settings, now),
        intent=_intent_view(assessment) if assessment else None,
        notes=(*fetch_gaps, *record.data_gaps, *chart.left_out),
        highlighted_rule=highlight,
        highlighted_title=title_of(highlight) if highlight else None,
        highlight_missing=bool(highlight) and highlight not in by_rule,
    )


# -- pieces ---------------------------------------------------------------------------------------


def _acknowledged(
    finding: Finding, resources: Any, answers: Answers | None
) -> AcknowledgedView | None:
    """How the EHR's cards treat this finding now: kept away by an answer, or not. The same
    test as the hooks' (runtime/acknowledgements.py): rule, evidence, severity and time."""
    if answers is None or not answers.acknowledgements:
        return None
    by_reference = resources_by_reference(resources, finding.evidence)
    evidence = evidence_fingerprint(finding.evidence, by_reference)
    for answer in sorted(answers.acknowledgements, key=lambda a: a.at, reverse=True):
        if answer.keeps_away(
            finding.rule_id, finding.severity, evidence, answers.clock, answers.cards
        ):
            until = answer.at + lockout(finding.severity, answers.cards)
            return AcknowledgedView(
                _reason_text(answer), answer.at.date().isoformat(), until.date().isoformat()
            )
    return None


def _reason_text(answer: Acknowledgement) -> str:
    if answer.outcome == ACCEPTED:
        return "Suggested order accepted"
    for rule in (RULES.get(answer.rule_id), *RULES.values()):
        for reason in rule.override_reasons if rule else ():
            if reason.code == answer.reason_code:
                return reason.display
    return f"Reason {answer.reason_code}"  # a code of the EHR's own


def _finding_view(
    finding: Finding, highlighted: bool, acknowledged: AcknowledgedView | None = None
) -> FindingView:
    detail = finding.detail.strip()
    gaps = [gap for gap in finding.data_gaps if gap not in detail]
    if gaps:  # as the card says them (cds_hooks.cards)
        detail += "\n\n**Left out:**\n" + "\n".join(f"- {gap}" for gap in gaps)
    if finding.source and finding.source not in detail:
        detail += f"\n\n*Source: {finding.source}*"
    return FindingView(
        rule_id=finding.rule_id,
        title=title_of(finding.rule_id),
        severity=finding.severity.value,
        severity_label=SEVERITY_LABEL[finding.severity],
        summary=finding.summary,
        detail=render_markdown(detail),
        evidence=finding.evidence,
        suggested_orders=tuple(order.label for order in finding.suggested_orders),
        highlighted=highlighted,
        acknowledged=acknowledged,
    )


def _banner(record: PatientRecord, resources: Any) -> Banner | None:
    if not record.patient_ref:
        return None
    sex = {"male": "Male", "female": "Female"}.get(record.sex.value or "", "Sex undetermined")
    return Banner(
        name=record.patient_name or "Name not recorded",
        sex=sex,
        birth_date=record.birth_date.isoformat() if record.birth_date else "not recorded",
        age=record.age,
        mrn=_mrn(resources, record.patient_ref),
        patient_id=record.patient_ref.split("/", 1)[-1],
    )


def _mrn(resources: Any, patient_ref: str) -> str | None:
    for resource in iter_resources(resources):
        if f"Patient/{resource.get('id')}" != patient_ref or resource["resourceType"] != "Patient":
            continue
        for identifier in resource.get("identifier") or ():
            kind = identifier.get("type") if isinstance(identifier, dict) else None
            codings = kind.get("coding") if isinstance(kind, dict) else None
            if any(isinstance(c, dict) and c.get("code") == _MR for c in codings or ()):
                value = identifier.get("value")
                return str(value) if value else None
    return None


def _intent_view(assessment: Any) -> IntentView:
    intent: Intent = assessment.intent
    course = assessment.course
    return IntentView(
        intent=intent.value,
        label=intent.label,
        explanation=assessment.explanation,
        clues=_merged_clues(assessment.clues),
        course=course.name,
        dose=course.dose.description or "dose not stated",
        started=course.start.date().isoformat() if course.start else None,
    )


def _merged_clues(clues: Any) -> tuple[tuple[str, str], ...]:
    """One line per piece of evidence, with every resource that shows it."""
    refs: dict[str, list[str]] = {}
    for clue in clues:
        refs.setdefault(clue.text, [])
        if clue.ref and clue.ref not in refs[clue.text]:
            refs[clue.text].append(clue.ref)
    return tuple((text, ", ".join(found)) for text, found in refs.items())


def _site(name: str) -> str:
    """ "DXA Lumbar spine [T-score] Bone density" -> "Lumbar spine"."""
    return re.sub(r"^DXA\s+|\s*\[.*$", "", name).strip() or name


def _same_day(results: list[LabResult], when: datetime) -> list[LabResult]:
    return [r for r in results if r.date.date() == when.date() and r.value is not None]


def _values(results: list[LabResult], names: dict[str, str]) -> str:
    shown = []
    for code, label in names.items():
        result = next((r for r in results if r.code.endswith(code)), None)
        if result is not None:
            shown.append(f"{label} {result.shown()}")
    return " · ".join(shown)


def _transaminase_values(results: list[LabResult]) -> str:
    """ "ALT 24 U/L · AST 21 U/L": the first of each, whichever LOINC method coded it."""
    shown: dict[str, str] = {}
    for result in results:
        short = transaminase(result)
        if short is not None:
            shown.setdefault(short, f"{short} {result.shown()}")
    return " · ".join(shown[short] for short in TRANSAMINASES.values() if short in shown)


def _monitoring(
    record: PatientRecord, findings: dict[str, Finding], settings: Settings, now: datetime
) -> tuple[MonitoringItem, ...]:
    items = []

    last_dexa = record.last_dexa()
    t_scores = record.results("dxa-tscore")
    newest_t = next((r for r in t_scores if r.value is not None), None)
    dexa_text = ""
    if newest_t is not None:
        dexa_text = "T-score " + " · ".join(
            f"{_site(r.name)} {format_number(r.value or 0.0)}"
            for r in _same_day(t_scores, newest_t.date)
        )
    lowest = lowest_recent_t_score(record)
    low_bone_mass = bool(record.conditions_in("osteopenia")) or (
        lowest is not None and lowest[0] <= settings.low_bone_mass_t_score
    )
    dexa_interval = (
        settings.dexa_interval_low_bone_mass if low_bone_mass else settings.dexa_interval
    )
    items.append(
        _item(
            "dexa",
            "DXA bone density",
            "dexa-due",
            last_dexa.date if last_dexa else None,
            dexa_text or (last_dexa.name if last_dexa else ""),
            dexa_interval,
            findings,
            settings,
            now,
        )
    )

    last_liver = last_liver_panel(record)
    liver_text = ""
    if last_liver is not None:
        same_day = _same_day(record.results("liver-transaminases"), last_liver.date)
        liver_text = _transaminase_values(same_day) or "panel done"
    items.append(
        _item(
            "liver",
            "Liver panel",
            "liver-panel-due",
            last_liver.date if last_liver else None,
            liver_text,
            settings.liver_panel_interval,
            findings,
            settings,
            now,
        )
    )

    last_lipid = record.latest_done("lipid-panel-evidence")
    lipid_text = ""
    if last_lipid is not None:
        same_day = _same_day(record.results("lipid-panel"), last_lipid.date)
        lipid_text = _values(
            same_day, {"2093-3": "Total", "13457-7": "LDL", "18262-6": "LDL", "2085-9": "HDL"}
        )
    items.append(
        _item(
            "lipid",
            "Lipid panel",
            "lipid-panel-due",
            last_lipid.date if last_lipid else None,
            lipid_text or (last_lipid.name if last_lipid else ""),
            settings.lipid_panel_interval,
            findings,
            settings,
            now,
        )
    )

    last_glycemic = record.latest_done("hba1c", "glucose-fasting")
    glycemic_text = ""
    if last_glycemic is not None:
        kind = "HbA1c" if last_glycemic in record.results("hba1c") else "Glucose"
        glycemic_text = f"{kind} {last_glycemic.shown()}"
    items.append(
        _item(
            "glycemic",
            "HbA1c (or fasting glucose)",
            "glycemic-monitoring-due",
            last_glycemic.date if last_glycemic else None,
            glycemic_text,
            settings.glycemic_interval,
            findings,
            settings,
            now,
        )
    )
    return tuple(_with_panel_finding(item, findings) for item in items)


# Findings about a panel's own results: beside one, the panel is never "Up to date" in green.
_PANEL_FINDINGS = {"liver": ("liver-injury-on-ai",), "dexa": ("bone-loss-on-ai",)}


def _with_panel_finding(item: MonitoringItem, findings: dict[str, Finding]) -> MonitoringItem:
    """A panel done recently whose results raised a warning or critical finding (a liver
    panel showing Hy's law) says the finding, not "Up to date"."""
    if item.status == "due":
        return item
    for rule_id in _PANEL_FINDINGS.get(item.key, ()):
        finding = findings.get(rule_id)
        if finding is not None and finding.severity.rank >= 1:
            words = "Critical" if finding.severity.rank == 2 else "Warning"
            return replace(
                item,
                status="finding",
                status_text=f"{words}: {title_of(rule_id).lower()}",
                repeat_by=None,
                severity=finding.severity.value,
            )
    return item


def _item(
    key: str,
    label: str,
    rule_id: str,
    last: datetime | None,
    last_text: str,
    interval: timedelta,
    findings: dict[str, Finding],
    settings: Settings,
    now: datetime,
) -> MonitoringItem:
    repeat_by = last + interval if last else None
    finding = findings.get(rule_id)
    if finding is not None:
        status, status_text = "due", "Due now"
    elif not settings.enabled(rule_id):
        status, status_text = "off", "Not checked at this site"
    elif repeat_by is not None and repeat_by >= now:
        status, status_text = "ok", "Up to date"
    else:
        status, status_text = "not-required", "Not required now"
    return MonitoringItem(
        key=key,
        label=label,
        rule_id=rule_id,
        last_date=last.date().isoformat() if last else None,
        last_text=last_text,
        status=status,
        status_text=status_text,
        repeat_by=repeat_by.date().isoformat() if repeat_by and status == "ok" else None,
        severity=finding.severity.value if finding else None,
    )
