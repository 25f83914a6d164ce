"""The rule catalogue: every rule of DESIGN.md, in the order cards are listed at equal severity."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from clinical.finding import Finding
from clinical.record import PatientRecord
from clinical.rules.ai_interaction import ai_interaction
from clinical.rules.anastrozole_intent import anastrozole_intent
from clinical.rules.bone_loss_on_ai import bone_loss_on_ai
from clinical.rules.dexa_due import dexa_due
from clinical.rules.dose_intent_mismatch import dose_intent_mismatch
from clinical.rules.estradiol_high import estradiol_high
from clinical.rules.estradiol_low import estradiol_low
from clinical.rules.estradiol_monitoring_due import estradiol_monitoring_due
from clinical.rules.glycemic_monitoring_due import glycemic_monitoring_due
from clinical.rules.lipid_panel_due import lipid_panel_due
from clinical.rules.liver_injury_on_ai import liver_injury_on_ai
from clinical.rules.liver_panel_due import liver_panel_due
from clinical.rules.premenopausal_on_ai import premenopausal_on_ai
from clinical.rules.sex_undetermined import sex_undetermined
from clinical.settings import Settings

Rule = Callable[[PatientRecord, Settings, datetime], list[Finding]]

CATALOGUE: dict[str, Rule] = {
    "ai-interaction": ai_interaction,
    "premenopausal-on-ai": premenopausal_on_ai,
    "liver-injury-on-ai": liver_injury_on_ai,
    "estradiol-low": estradiol_low,
    "dose-intent-mismatch": dose_intent_mismatch,
    "bone-loss-on-ai": bone_loss_on_ai,
    "estradiol-high": estradiol_high,
    "dexa-due": dexa_due,
    "estradiol-monitoring-due": estradiol_monitoring_due,
    "liver-panel-due": liver_panel_due,
    "lipid-panel-due": lipid_panel_due,
    "glycemic-monitoring-due": glycemic_monitoring_due,
    "sex-undetermined": sex_undetermined,
    "anastrozole-intent": anastrozole_intent,
}
RULE_IDS = tuple(CATALOGUE)
