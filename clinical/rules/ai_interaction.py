"""ai-interaction: an aromatase inhibitor with tamoxifen, an estrogen-containing therapy, or
another aromatase inhibitor (duplicate therapy)."""

from __future__ import annotations

from datetime import datetime, timedelta

from clinical.finding import Finding, Intent, OrderAction, Severity
from clinical.intent import infer_intent
from clinical.record import MedicationCourse, PatientRecord
from clinical.rules.common import capitalised, day, detail, drug_label, fit
from clinical.rules.rule import BENEFIT_OUTWEIGHS_RISK, MANAGED_BY_ONCOLOGY, SWITCHING_THERAPY, Rule
from clinical.settings import Settings

RULE_ID = "ai-interaction"
SOURCE = (
    "Arimidex PI 7: not with tamoxifen (ATAC: no benefit over tamoxifen alone, anastrozole "
    "levels 27% lower) and not with estrogen-containing therapies (they diminish its action); "
    "two aromatase inhibitors (anastrozole, letrozole, exemestane: one class) are duplicate therapy"
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


def _running_span(
    record: PatientRecord, courses: list[MedicationCourse], drug: str
) -> tuple[datetime | None, datetime | None]:
    """When the drug's therapy began (a renewal does not restart it) and when it ends (None:
    no end recorded)."""
    running = [c for c in courses if not c.is_draft]
    start = (
        record.therapy_start(drug)
        if running
        else min((c.start for c in courses if c.start is not None), default=None)
    )
    ends = [c.end for c in (running or courses)]
    end = None if any(e is None for e in ends) else max(e for e in ends if e is not None)
    return start, end


def _other_ais(
    record: PatientRecord, ai: list[MedicationCourse], settings: Settings, now: datetime
) -> tuple[str, list[MedicationCourse]]:
    """The first AI (anastrozole if any), and the courses of other AIs taken with it (not a
    switch: the one started first ending within the switch window of the other's start)."""
    by_drug: dict[str, list[MedicationCourse]] = {}
    for course in ai:
        for drug in sorted(course.ingredients & set(_AI_DRUGS)) or ["aromatase-inhibitors"]:
            by_drug.setdefault(drug, []).append(course)
    if len(by_drug) < 2:
        return next(iter(by_drug), "aromatase-inhibitors"), []
    first = next(drug for drug in (*_AI_DRUGS, "aromatase-inhibitors") if drug in by_drug)
    start, end = _running_span(record, by_drug[first], first)
    others = [
        course
        for drug, courses in by_drug.items()
        if drug != first
        for course in courses
        if _started(course, now)
        and not _is_switch(course, start, end, settings.tamoxifen_switch_days)
    ]
    return first, others


_AI_DRUGS = ("anastrozole", "letrozole", "exemestane")


def ai_interaction(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    ai = record.current_courses("aromatase-inhibitors")
    if not ai:
        return []
    first, duplicates = _other_ais(record, ai, settings, now)
    mine = [c for c in ai if first in c.drugs] or ai
    start, end = _running_span(record, mine, first)
    tamoxifen = [
        t
        for t in record.current_courses("tamoxifen")
        if _started(t, now) and not _is_switch(t, start, end, settings.tamoxifen_switch_days)
    ]
    estrogen = [
        c for c in record.current_courses("estrogen-containing-therapy") if _started(c, now)
    ]
    if not tamoxifen and not estrogen and not duplicates:
        return []
    assessment = infer_intent(record, now, "aromatase-inhibitors")
    oncology = assessment is not None and assessment.intent is Intent.ONCOLOGY_SUPPRESSION
    involved = list(dict.fromkeys([*mine, *duplicates, *tamoxifen, *estrogen]))
    critical = any(c.is_draft for c in involved) or (bool(estrogen) and oncology)
    name = drug_label(mine[0])
    partners = [c.name for c in (*tamoxifen, *estrogen)]
    lines = [
        f"{c.name} ({'draft order' if c.is_draft else c.status}"
        + (f", since {day(c.start)}" if c.start and not c.is_draft else "")
        + ")"
        for c in involved
    ]
    if tamoxifen:
        lines.append(f"Tamoxifen with {name}: no benefit over tamoxifen alone (ATAC); stop one.")
        summary = fit(
            f"{capitalised(name)} with tamoxifen: no added benefit (ATAC), "
            + ("anastrozole levels 27% lower" if name == "anastrozole" else "do not combine"),
            f"{capitalised(name)} with tamoxifen: do not combine",
        )
    elif estrogen:
        lines.append(f"Estrogen opposes {name}: stop the estrogen or reconsider the AI.")
        summary = fit(
            f"{capitalised(name)} with estrogen ({partners[0]}): estrogen diminishes its action",
            f"{capitalised(name)} with an estrogen-containing therapy: estrogen diminishes its action",
        )
    else:
        others = sorted({drug_label(c) for c in duplicates})
        summary = fit(
            f"Two aromatase inhibitors: {name} with {' and '.join(others)}, duplicate therapy",
            "Two aromatase inhibitors at once: duplicate therapy",
        )
    if duplicates and (tamoxifen or estrogen):
        lines.append("Two aromatase inhibitors at once as well: duplicate therapy.")
    elif duplicates:
        lines.append(
            "Anastrozole, letrozole and exemestane are one class: taking two is duplicate "
            "therapy with no added benefit; stop one."
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
            # a draft that makes the combination: offer to take the draft back
            order_actions=tuple(
                OrderAction(
                    "delete", c.ref, f"Remove the draft order of {c.name}", recommended=True
                )
                for c in dict.fromkeys(
                    [*(mine if duplicates else ()), *duplicates, *tamoxifen, *estrogen]
                )
                if c.is_draft
            ),
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Anastrozole with tamoxifen or estrogen",
    meaning="An aromatase inhibitor with tamoxifen, an estrogen-containing therapy, or a second "
    "aromatase inhibitor (duplicate therapy).",
    source=SOURCE,
    reads=frozenset(),
    override_reasons=(SWITCHING_THERAPY, BENEFIT_OUTWEIGHS_RISK, MANAGED_BY_ONCOLOGY),
    check=ai_interaction,
)
