"""premenopausal-on-ai: a woman not shown postmenopausal on an AI without ovarian suppression."""

from __future__ import annotations

from datetime import datetime

from clinical import orders
from clinical.finding import Finding, Severity
from clinical.intent import infer_intent
from clinical.record import PatientRecord
from clinical.rules.common import detail, drug_label, fit, lab_line
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
    "Arimidex PI (older versions): contraindicated in premenopausal women; not effective "
    "without ovarian suppression (GnRH agonist or oophorectomy); ASCO; NCCN menopause definition"
)


def premenopausal_on_ai(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
    if record.sex.value != "female":
        return []
    courses = sorted(
        record.current_courses("aromatase-inhibitors"),
        key=lambda c: ("anastrozole" not in c.drugs, c.ref),
    )
    if not courses or record.current_courses("gnrh-agonists"):
        return []
    menopause = record.conditions_in("postmenopausal", active_only=False)
    oophorectomy = [p for p in record.procedures if "postmenopausal" in p.groups]
    age = record.age
    if menopause or oophorectomy or (age is not None and age >= settings.postmenopausal_age):
        return []
    premenopausal = record.conditions_in("premenopausal")
    age_text = f"aged {age}" if age is not None else "of unknown age"
    drug = drug_label(courses[0])
    lines = [
        f"Woman {age_text}; no menopause diagnosis, no bilateral oophorectomy, "
        f"under {settings.postmenopausal_age}.",
        f"On {', '.join(course.name for course in courses)} with no GnRH agonist.",
    ]
    lines += [f"Recorded: {c.name} ({c.code})" for c in premenopausal]
    # NCCN: FSH and estradiol in the postmenopausal range support, but do not alone show,
    # menopause under 60 (amenorrhoea for 12 months is needed too): said, not decided on.
    hormones = [r for r in (record.latest("fsh"), record.latest("estradiol-serum")) if r]
    lines += [f"Latest {lab_line(r)}" for r in hormones]
    lines.append(
        "Confirm menopausal status (FSH and estradiol, history) or add ovarian suppression."
    )
    return [
        Finding(
            rule_id=RULE_ID,
            severity=Severity.CRITICAL if premenopausal else Severity.WARNING,
            summary=fit(
                f"{drug[0].upper()}{drug[1:]} in a woman {age_text} not shown postmenopausal, "
                "without ovarian suppression",
                f"{drug[0].upper()}{drug[1:]} in a woman not shown postmenopausal",
            ),
            detail=detail(lines, SOURCE),
            source=SOURCE,
            evidence=tuple(c.ref for c in courses)
            + tuple(c.ref for c in premenopausal)
            + tuple(r.ref for r in hormones),
            suggested_orders=(orders.FSH, orders.ESTRADIOL),
            intent=(assessment.intent if (assessment := infer_intent(record, now)) else None),
        )
    ]


RULE = Rule(
    id=RULE_ID,
    title="Aromatase inhibitor without proven menopause or ovarian suppression",
    meaning="A woman not shown to be postmenopausal, on an aromatase inhibitor without ovarian suppression.",
    source=SOURCE,
    reads=frozenset({Input.SURGICAL_MENOPAUSE}),
    override_reasons=(MENOPAUSE_DOCUMENTED, MANAGED_BY_ONCOLOGY, INDICATION_DOCUMENTED),
    check=premenopausal_on_ai,
)
