"""What a card says about each rule besides the finding: its title and its override reasons.

The rule ids are the contract of DESIGN.md (card `source.topic.code`); the reasons are the
clinician's words for "why not", coded so that feedback can be counted.
"""

from __future__ import annotations

from dataclasses import dataclass

RULES_SYSTEM = "https://anastrozole-cds.example/rules"
OVERRIDE_REASONS_SYSTEM = "https://anastrozole-cds.example/override-reasons"
# Not a rule: the card that says some checks were skipped because data could not be had.
DATA_INCOMPLETE_TOPIC = "data-incomplete"


@dataclass(frozen=True, slots=True)
class OverrideReason:
    code: str
    display: str

    def as_coding(self) -> dict[str, str]:
        return {"system": OVERRIDE_REASONS_SYSTEM, "code": self.code, "display": self.display}


MANAGED_BY_ONCOLOGY = OverrideReason("managed-by-oncology", "Managed by oncology")
MANAGED_BY_SPECIALIST = OverrideReason("managed-by-specialist", "Managed by another specialist")
PATIENT_DECLINED = OverrideReason("patient-declined", "Patient declined")
ALREADY_SCHEDULED = OverrideReason("already-scheduled", "Already scheduled elsewhere")
RESULT_ELSEWHERE = OverrideReason("result-elsewhere", "Recent result not in this record")
INDICATION_DOCUMENTED = OverrideReason("indication-documented", "Indication documented elsewhere")
DOSE_INTENDED = OverrideReason("dose-intended", "Dose is intended")
DOSE_CHANGE_PLANNED = OverrideReason("dose-change-planned", "Dose change already planned")
WILL_REPEAT = OverrideReason("will-repeat-test", "Will repeat the test")
BENEFIT_OUTWEIGHS_RISK = OverrideReason("benefit-outweighs-risk", "Benefit outweighs risk")
SWITCHING_THERAPY = OverrideReason("switching-therapy", "Switching therapy, not combining")
BONE_THERAPY_ELSEWHERE = OverrideReason(
    "bone-therapy-elsewhere", "Bone-protective therapy given elsewhere"
)
MENOPAUSE_DOCUMENTED = OverrideReason(
    "menopause-documented", "Menopause or ovarian suppression documented elsewhere"
)
SEX_REVIEWED = OverrideReason("sex-reviewed", "Sex for clinical use reviewed")
NOT_APPLICABLE = OverrideReason("not-applicable", "Not applicable to this patient")


@dataclass(frozen=True, slots=True)
class RuleCard:
    """How a rule's cards are labelled and dismissed."""

    rule_id: str
    title: str
    override_reasons: tuple[OverrideReason, ...]
    meaning: str = ""


_MONITORING_DUE = (ALREADY_SCHEDULED, RESULT_ELSEWHERE, PATIENT_DECLINED)

RULE_CARDS: dict[str, RuleCard] = {
    card.rule_id: card
    for card in (
        RuleCard(
            "anastrozole-intent",
            "What the anastrozole is for",
            (INDICATION_DOCUMENTED, NOT_APPLICABLE),
            meaning="The inferred intent of anastrozole (oncology suppression, TRT modulation, male infertility, or unclear) and the evidence for it.",
        ),
        RuleCard(
            "dose-intent-mismatch",
            "Dose or schedule does not fit the intent",
            (DOSE_INTENDED, MANAGED_BY_ONCOLOGY, MANAGED_BY_SPECIALIST),
            meaning="The dose or schedule does not fit the intent or the patient's sex (labelled dose 1 mg daily; TRT modulation 0.25-0.5 mg twice weekly).",
        ),
        RuleCard(
            "estradiol-low",
            "Estradiol below the floor",
            (DOSE_CHANGE_PLANNED, WILL_REPEAT, MANAGED_BY_SPECIALIST, PATIENT_DECLINED),
            meaning="Estradiol below the floor where the intent is modulation or fertility, not suppression.",
        ),
        RuleCard(
            "estradiol-high",
            "Estradiol above the ceiling on testosterone",
            (WILL_REPEAT, MANAGED_BY_SPECIALIST, PATIENT_DECLINED),
            meaning="Estradiol above the ceiling in a man on testosterone therapy.",
        ),
        RuleCard(
            "estradiol-monitoring-due",
            "Estradiol check due",
            (*_MONITORING_DUE, MANAGED_BY_SPECIALIST),
            meaning="On anastrozole for modulation or fertility and no recent estradiol result.",
        ),
        RuleCard(
            "dexa-due",
            "DXA bone density scan due",
            (*_MONITORING_DUE, MANAGED_BY_ONCOLOGY),
            meaning="No baseline or no recent DXA bone density scan while on an aromatase inhibitor.",
        ),
        RuleCard(
            "liver-panel-due",
            "Liver panel due",
            _MONITORING_DUE,
            meaning="No recent hepatic function panel while on anastrozole.",
        ),
        RuleCard(
            "lipid-panel-due",
            "Lipid panel due",
            _MONITORING_DUE,
            meaning="No recent lipid panel while on anastrozole.",
        ),
        RuleCard(
            "glycemic-monitoring-due",
            "HbA1c or glucose due",
            _MONITORING_DUE,
            meaning="No recent HbA1c or fasting glucose while on anastrozole for modulation.",
        ),
        RuleCard(
            "bone-loss-on-ai",
            "Osteoporosis on an aromatase inhibitor without bone protection",
            (BONE_THERAPY_ELSEWHERE, MANAGED_BY_ONCOLOGY, PATIENT_DECLINED),
            meaning="Osteoporosis or a low T-score on an aromatase inhibitor without bone-protective therapy.",
        ),
        RuleCard(
            "liver-injury-on-ai",
            "Transaminases raised on anastrozole",
            (MANAGED_BY_SPECIALIST, WILL_REPEAT, BENEFIT_OUTWEIGHS_RISK),
            meaning="Transaminases well above normal while on anastrozole.",
        ),
        RuleCard(
            "premenopausal-on-ai",
            "Aromatase inhibitor without proven menopause or ovarian suppression",
            (MENOPAUSE_DOCUMENTED, MANAGED_BY_ONCOLOGY, INDICATION_DOCUMENTED),
            meaning="A woman not shown to be postmenopausal, on an aromatase inhibitor without ovarian suppression.",
        ),
        RuleCard(
            "ai-interaction",
            "Anastrozole with tamoxifen or estrogen",
            (SWITCHING_THERAPY, BENEFIT_OUTWEIGHS_RISK, MANAGED_BY_ONCOLOGY),
            meaning="Anastrozole with tamoxifen or an estrogen-containing therapy.",
        ),
        RuleCard(
            "sex-undetermined",
            "Sex for clinical use undetermined",
            (SEX_REVIEWED, NOT_APPLICABLE),
            meaning="Sex for clinical use is unknown or conflicting: sex-specific advice is withheld.",
        ),
    )
}

RULE_IDS: tuple[str, ...] = tuple(RULE_CARDS)


def rule_card(rule_id: str) -> RuleCard:
    """The card labels of a rule; a rule this table does not know gets generic ones."""
    return RULE_CARDS.get(rule_id) or RuleCard(
        rule_id, rule_id.replace("-", " ").capitalize(), (NOT_APPLICABLE,)
    )
