"""ai-interaction: anastrozole with tamoxifen or an estrogen-containing therapy."""

from __future__ import annotations

from datetime import datetime, timedelta

from clinical.finding import Finding, Intent, Severity
from clinical.intent import infer_intent
from clinical.record import MedicationCourse, PatientRecord
from clinical.rules.common import day, detail, fit
from clinical.settings import Settings

RULE_ID = "ai-interaction"
SOURCE = (
    "Arimidex PI 7: not with tamoxifen (ATAC: no benefit over tamoxifen alone, anastrozole "
    "levels 27% lower) and not with estrogen-containing therapies (they diminish its action)"
)


def _is_switch(one: MedicationCourse, other: MedicationCourse, days: int) -> bool:
    """The drug started first ends no later than `days` after the other starts: a switch, not
    a combination."""
    if one.start is None or other.start is None:
        return False
    first, second_start = (one, other.start) if one.start <= other.start else (other, one.start)
    return first.end is not None and first.end - second_start <= timedelta(days=days)


def ai_interaction(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    anastrozole = record.current_courses("anastrozole")
    if not anastrozole:
        return []
    course = anastrozole[0]
    tamoxifen = [
        t
        for t in record.current_courses("tamoxifen")
        if not _is_switch(t, course, settings.tamoxifen_switch_days)
    ]
    estrogen = record.current_courses("estrogen-containing-therapy")
    if not tamoxifen and not estrogen:
        return []
    assessment = infer_intent(record, now)
    oncology = assessment is not None and assessment.intent is Intent.ONCOLOGY_SUPPRESSION
    involved = [*anastrozole, *tamoxifen, *estrogen]
    critical = any(c.is_draft for c in involved) or (bool(estrogen) and oncology)
    partners = [c.name for c in (*tamoxifen, *estrogen)]
    lines = [
        f"{c.name} ({'draft order' if c.is_draft else c.status}"
        + (f", since {day(c.start)}" if c.start and not c.is_draft else "")
        + ")"
        for c in involved
    ]
    if tamoxifen:
        lines.append(
            "Tamoxifen with anastrozole: no benefit over tamoxifen alone (ATAC); stop one."
        )
        summary = fit(
            "Anastrozole with tamoxifen: no added benefit (ATAC), anastrozole levels 27% lower",
            "Anastrozole with tamoxifen: do not combine",
        )
    else:
        lines.append("Estrogen opposes anastrozole: stop the estrogen or reconsider the AI.")
        summary = fit(
            f"Anastrozole with estrogen ({partners[0]}): estrogen diminishes its action",
            "Anastrozole with an estrogen-containing therapy: estrogen diminishes its action",
        )
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.CRITICAL if critical else Severity.WARNING,
            summary=summary,
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=tuple(c.ref for c in involved),
            intent=assessment.intent if assessment else None,
        )
    ]
