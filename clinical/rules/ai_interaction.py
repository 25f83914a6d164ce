"""ai-interaction: anastrozole with tamoxifen or an estrogen-containing therapy."""

from __future__ import annotations

from datetime import datetime, timedelta

from clinical.finding import Finding, Intent, OrderAction, Severity
from clinical.intent import infer_intent
from clinical.record import MedicationCourse, PatientRecord
from clinical.rules.common import day, detail, fit
from clinical.rules.rule import BENEFIT_OUTWEIGHS_RISK, MANAGED_BY_ONCOLOGY, SWITCHING_THERAPY, Rule
from clinical.settings import Settings

RULE_ID = "ai-interaction"
SOURCE = (
    "Arimidex PI 7: not with tamoxifen (ATAC: no benefit over tamoxifen alone, anastrozole "
    "levels 27% lower) and not with estrogen-containing therapies (they diminish its action)"
)


def _is_switch(
    partner: MedicationCourse,
    anastrozole_start: datetime | None,
    anastrozole_end: datetime | None,
    days: int,
) -> bool:
    """The drug started first ends no later than `days` after the other starts: a switch, not
    a combination. Anastrozole's start is that of the running therapy (a renewal written as a
    new order does not make months of combination look like a switch)."""
    if partner.start is None or anastrozole_start is None:
        return False
    if partner.start <= anastrozole_start:
        first_end, second_start = partner.end, anastrozole_start
    else:
        first_end, second_start = anastrozole_end, partner.start
    return first_end is not None and first_end - second_start <= timedelta(days=days)


def _started(course: MedicationCourse, now: datetime) -> bool:
    """A course dated to start later (tamoxifen planned after the AI) is not taken yet."""
    return course.is_draft or course.start is None or course.start <= now


def ai_interaction(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    anastrozole = record.current_courses("anastrozole")
    if not anastrozole:
        return []
    running = [c for c in anastrozole if not c.is_draft]
    start = (
        record.therapy_start("anastrozole")
        if running
        else min((c.start for c in anastrozole if c.start is not None), default=None)
    )
    ends = [c.end for c in (running or anastrozole)]
    end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    tamoxifen = [
        t
        for t in record.current_courses("tamoxifen")
        if _started(t, now) and not _is_switch(t, start, end, settings.tamoxifen_switch_days)
    ]
    estrogen = [
        c for c in record.current_courses("estrogen-containing-therapy") if _started(c, now)
    ]
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
            # a tamoxifen or estrogen draft next to anastrozole: offer to take the draft back
            order_actions=tuple(
                OrderAction(
                    "delete", c.ref, f"Remove the draft order of {c.name}", recommended=True
                )
                for c in (*tamoxifen, *estrogen)
                if c.is_draft
            ),
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Anastrozole with tamoxifen or estrogen",
    meaning="Anastrozole with tamoxifen or an estrogen-containing therapy.",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(SWITCHING_THERAPY, BENEFIT_OUTWEIGHS_RISK, MANAGED_BY_ONCOLOGY),
    check=ai_interaction,
)
