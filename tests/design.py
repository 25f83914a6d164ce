"""Contracts from shared/DESIGN.md that tests check the code against (written out, not imported
from the code, so that a change on either side is caught)."""

# DESIGN.md, "Rule ids": the card source.topic codes.
DESIGN_RULE_IDS = frozenset(
    {
        "anastrozole-intent",
        "dose-intent-mismatch",
        "estradiol-low",
        "estradiol-high",
        "estradiol-monitoring-due",
        "dexa-due",
        "liver-panel-due",
        "lipid-panel-due",
        "glycemic-monitoring-due",
        "bone-loss-on-ai",
        "liver-injury-on-ai",
        "premenopausal-on-ai",
        "ai-interaction",
        "sex-undetermined",
    }
)
