"""premenopausal-on-ai: a woman not shown postmenopausal on an AI without ovarian suppression,
or one whose estradiol on the AI says her ovaries work (present, or recovered)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import ADULT_AGE, infer_intent
from clinical.record import ConditionEntry, LabResult, PatientRecord, format_number
from clinical.rules.common import (
    capitalised,
    condition_lines,
    day,
    detail,
    drug_label,
    fit,
    lab_line,
    names_of,
)
from clinical.rules.rule import (
    INDICATION_DOCUMENTED,
    MANAGED_BY_ONCOLOGY,
    MENOPAUSE_DOCUMENTED,
    Input,
    Rule,
)
from clinical.settings import Settings

RULE_ID = "premenopausal-on-ai"
SOURCE = (
    "NCCN breast cancer guideline, definition of menopause (bilateral oophorectomy; age >= 60; "
    "under 60, amenorrhoea >= 12 months without chemotherapy, tamoxifen, toremifene or ovarian "
    "suppression and FSH and estradiol in the postmenopausal range; after chemotherapy "
    "amenorrhoea is unreliable and serial FSH/estradiol are needed); Arimidex PI: not "
    "effective without ovarian suppression in premenopausal women"
)


@dataclass(frozen=True, slots=True)
class Hormones:
    """The latest FSH and estradiol, read against the postmenopausal range (the lab's when it
    sends one, else the site's)."""

    estradiol: LabResult | None
    fsh: LabResult | None
    estradiol_max: float
    fsh_min: float
    estradiol_range_from_lab: bool
    fsh_range_from_lab: bool

    @property
    def in_postmenopausal_range(self) -> bool:
        return (
            self.estradiol is not None
            and self.fsh is not None
            and self.estradiol.is_above(self.estradiol_max) is False
            and self.fsh.is_below(self.fsh_min) is False
        )


def hormones(record: PatientRecord, settings: Settings) -> Hormones:
    estradiol, fsh = record.latest("estradiol-serum"), record.latest("fsh")
    e2_range = estradiol.postmenopausal_range if estradiol else None
    fsh_range = fsh.postmenopausal_range if fsh else None
    e2_lab = e2_range is not None and e2_range[1] is not None
    fsh_lab = fsh_range is not None and fsh_range[0] is not None
    return Hormones(
        estradiol,
        fsh,
        e2_range[1] if e2_lab and e2_range and e2_range[1] is not None
        else settings.postmenopausal_estradiol_max_pg_ml,
        fsh_range[0] if fsh_lab and fsh_range and fsh_range[0] is not None
        else settings.postmenopausal_fsh_min_iu_l,
        e2_lab,
        fsh_lab,
    )  # fmt: skip


def _serially_in_range(record: PatientRecord, levels: Hormones) -> bool:
    """Two or more draws on different days with estradiol (or FSH) in the postmenopausal
    range, the latest both in range: what NCCN asks after chemotherapy."""
    days = {
        r.date.date()
        for r in record.results("estradiol-serum")
        if r.value is not None and r.is_above(levels.estradiol_max) is False
    } | {
        r.date.date()
        for r in record.results("fsh")
        if r.value is not None and r.is_below(levels.fsh_min) is False
    }
    return levels.in_postmenopausal_range and len(days) >= 2


def premenopausal_on_ai(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    age = record.age
    # NCCN's definition is for adults; a girl on an AI (precocious puberty) is not judged by it.
    if record.sex.value != "female" or (age is not None and age < ADULT_AGE):
        return []
    courses = sorted(
        record.current_courses("aromatase-inhibitors"),
        key=lambda c: ("anastrozole" not in c.drugs, c.ref),
    )
    if not courses or record.current_courses("gnrh-agonists"):
        return []
    # No ovaries, or 60 or older: postmenopausal whatever else the chart says (NCCN).
    removed = record.conditions_in("bilateral-oophorectomy", active_only=False, confirmed_only=True)
    procedures = [p for p in record.procedures if "bilateral-oophorectomy" in p.groups]
    if removed or procedures or (age is not None and age >= settings.postmenopausal_age):
        return []
    start = record.therapy_start("aromatase-inhibitors")
    since = start or now - settings.amenorrhoea_for_menopause
    levels = hormones(record, settings)
    on_ai = record.latest("estradiol-serum", since=since)
    recovered = on_ai is not None and on_ai.is_above(levels.estradiol_max) is True
    premenopausal = [c for c in record.conditions_in("premenopausal") if c.confirmed]
    periods = sorted(record.last_menstrual_periods, key=lambda e: e.date or now, reverse=True)
    last_period = periods[0] if periods else None
    menstruating = (
        last_period is not None
        and last_period.date is not None
        and now - last_period.date < settings.amenorrhoea_for_menopause
    )
    recorded = record.conditions_in("postmenopausal", active_only=False, confirmed_only=True)
    amenorrhoeic = bool(recorded) or (
        last_period is not None and last_period.date is not None and not menstruating
    )
    chemotherapy = record.conditions_in("chemotherapy-history", active_only=False)
    serm = record.current_courses("tamoxifen") + record.current_courses("toremifene")
    if not recovered and not premenopausal and not menstruating:
        shown = levels.in_postmenopausal_range and (amenorrhoeic or bool(serm))
        if shown and (not chemotherapy or _serially_in_range(record, levels)):
            return []
    drug = drug_label(courses[0])
    age_text = f"aged {age}" if age is not None else "of unknown age"
    lines = [
        f"Woman {age_text}: under {settings.postmenopausal_age}, no bilateral oophorectomy.",
        f"On {names_of(courses)} with no GnRH agonist.",
    ]
    lines += [f"Recorded: {line}" for line in condition_lines(premenopausal)]
    if last_period is not None and last_period.date is not None:
        lines.append(
            f"Last menstrual period {day(last_period.date)}"
            + (" (within 12 months: still menstruating)." if menstruating else ".")
        )
    lines += [
        f"Recorded: {line}; under {settings.postmenopausal_age} NCCN also wants FSH and estradiol "
        "in the postmenopausal range."
        for line in condition_lines(recorded)
    ]
    lines += _not_proof_lines(record, chemotherapy)
    lines += _hormone_lines(record, levels)
    if recovered and on_ai is not None:
        lines.append(
            f"Estradiol {on_ai.shown()} on {drug} is above the postmenopausal range: ovarian "
            "function is present or has recovered; the AI alone is ineffective and can "
            "stimulate the ovaries."
        )
    if serm:
        lines.append(
            f"On {names_of(serm)}: under 60 FSH and estradiol in the postmenopausal range "
            "are needed (NCCN)."
        )
    lines.append(
        "Confirm menopausal status (FSH and estradiol with a sensitive assay, serially after "
        "chemotherapy) or add ovarian suppression."
    )
    evidence = [c.ref for c in courses]
    evidence += [c.ref for c in (*premenopausal, *recorded, *chemotherapy)]
    evidence += [r.ref for r in (levels.fsh, levels.estradiol, on_ai) if r is not None]
    if last_period is not None:
        evidence.append(last_period.ref)
    assessment = infer_intent(record, now, "aromatase-inhibitors")
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.CRITICAL if premenopausal or menstruating else Severity.WARNING,
            summary=_summary(drug, age_text, recovered, on_ai),
            detail=detail(lines, SOURCE, record.gaps_for("estradiol-serum", "fsh")),
            source=SOURCE,
            evidence=tuple(dict.fromkeys(evidence)),
            suggested_orders=(orders.FSH, orders.ESTRADIOL),
            intent=assessment.intent if assessment else None,
            data_gaps=tuple(record.gaps_for("estradiol-serum", "fsh")),
        )
    ]


def _summary(drug: str, age_text: str, recovered: bool, on_ai: LabResult | None) -> str:
    if recovered and on_ai is not None:
        return fit(
            f"Estradiol {on_ai.shown()} on {drug} without ovarian suppression: ovarian "
            "function present, the AI is ineffective",
            f"Estradiol {on_ai.shown()} on {drug}: ovarian function present",
        )
    return fit(
        f"{capitalised(drug)} in a woman {age_text} not shown postmenopausal, without ovarian "
        "suppression",
        f"{capitalised(drug)} in a woman not shown postmenopausal",
    )


def _not_proof_lines(record: PatientRecord, chemotherapy: list[ConditionEntry]) -> list[str]:
    lines = [
        f"Recorded: {line}: menopausal symptoms, not proof of menopause."
        for line in condition_lines(record.conditions_in("menopause-symptoms", active_only=False))
    ]
    lines += [
        f"Recorded: {line}: amenorrhoea is not menopause; check FSH and estradiol."
        for line in condition_lines(record.conditions_in("amenorrhea", active_only=False))
    ]
    lines += [
        f"Recorded: {line}: amenorrhoea during or after chemotherapy is not reliable; serial "
        "FSH and estradiol are needed (NCCN)."
        for line in condition_lines(chemotherapy)
    ]
    lines += [
        f"Not confirmed ({c.status_text}), so not used: {c.name} ({c.code})"
        for c in record.conditions
        if not c.confirmed and c.groups & {"postmenopausal", "bilateral-oophorectomy"}
    ]
    return lines


def _hormone_lines(record: PatientRecord, levels: Hormones) -> list[str]:
    lines = []
    if levels.fsh is not None:
        where = "the lab's" if levels.fsh_range_from_lab else "site default"
        lines.append(
            f"Latest {lab_line(levels.fsh)} (postmenopausal from "
            f"{format_number(levels.fsh_min)} IU/L, {where})"
        )
        fsh = [r for r in record.results("fsh") if r.value is not None]
        if len(fsh) >= 2 and (fsh[0].value or 0) < (fsh[1].value or 0):
            lines.append(
                f"FSH falling: {fsh[1].shown()} on {day(fsh[1].date)}, then "
                f"{fsh[0].shown()} on {day(fsh[0].date)}."
            )
    else:
        lines.append("No FSH on record.")
    if levels.estradiol is not None:
        where = "the lab's" if levels.estradiol_range_from_lab else "site default"
        lines.append(
            f"Latest {lab_line(levels.estradiol)} (postmenopausal up to "
            f"{format_number(levels.estradiol_max)} pg/mL, {where})"
        )
    else:
        lines.append("No estradiol on record.")
    return lines


RULE = Rule(
    id=RULE_ID,
    title="Aromatase inhibitor without proven menopause or ovarian suppression",
    meaning="A woman not shown to be postmenopausal (NCCN), or with estradiol above the "
    "postmenopausal range, on an aromatase inhibitor without ovarian suppression.",
    source=SOURCE,
    reads=frozenset(
        {Input.SURGICAL_MENOPAUSE, Input.ESTRADIOL, Input.MENOPAUSE_TESTS, Input.CLINIC_GIVEN}
    ),
    override_reasons=(MENOPAUSE_DOCUMENTED, MANAGED_BY_ONCOLOGY, INDICATION_DOCUMENTED),
    check=premenopausal_on_ai,
)
