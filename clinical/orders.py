"""Tests the rules suggest ordering, by code (verified codes from data/valuesets.json)."""

from __future__ import annotations

from clinical.finding import Coding, SuggestedOrder
from clinical.valuesets import CPT, LOINC, SNOMED

ESTRADIOL = SuggestedOrder(
    "Order estradiol (sensitive LC-MS/MS assay)",
    (Coding(LOINC, "2243-4", "Estradiol (E2) [Mass/volume] in Serum or Plasma"),),
    "laboratory",
)
DXA = SuggestedOrder(
    "Order DXA bone density study",
    (
        Coding(CPT, "77080", "DXA bone density study, axial skeleton"),
        Coding(SNOMED, "312681000", "Bone density scan (procedure)"),
        Coding(LOINC, "38268-9", "DXA Skeletal system Views for bone density"),
    ),
    "imaging",
)
HEPATIC_PANEL = SuggestedOrder(
    "Order hepatic function panel",
    (Coding(LOINC, "24325-3", "Hepatic function 2000 panel - Serum or Plasma"),),
    "laboratory",
)
LIPID_PANEL = SuggestedOrder(
    "Order lipid panel",
    (Coding(LOINC, "24331-1", "Lipid 1996 panel - Serum or Plasma"),),
    "laboratory",
)
HBA1C = SuggestedOrder(
    "Order hemoglobin A1c",
    (Coding(LOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),),
    "laboratory",
)
FSH = SuggestedOrder(
    "Order FSH",
    (Coding(LOINC, "15067-2", "Follitropin [Units/volume] in Serum or Plasma"),),
    "laboratory",
)
