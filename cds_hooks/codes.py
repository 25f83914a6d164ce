"""The code systems on the cards: the rule as `source.topic`, the override reasons, and the
topic of the card that says data was missing. The rules themselves (ids, titles, meanings,
reasons) are the clinical core's (`clinical.rules`); these systems are this face's contract.
"""

from __future__ import annotations

from clinical.rules import OverrideReason

RULES_SYSTEM = "https://anastrozole-cds.example/rules"
OVERRIDE_REASONS_SYSTEM = "https://anastrozole-cds.example/override-reasons"
# Not a rule: the card that says some checks were skipped because data could not be had.
DATA_INCOMPLETE_TOPIC = "data-incomplete"


def override_reason_coding(reason: OverrideReason) -> dict[str, str]:
    return {"system": OVERRIDE_REASONS_SYSTEM, "code": reason.code, "display": reason.display}
