"""The clinical core: FHIR R4 JSON -> PatientRecord -> findings. Pure: no I/O, no clock."""

from clinical.evaluate import evaluate, evaluate_json, evaluate_record
from clinical.finding import (
    Coding,
    Finding,
    Intent,
    OrderAction,
    ProposedDose,
    Severity,
    SuggestedOrder,
)
from clinical.reader import MixedPatientsError, build_record
from clinical.record import PatientRecord
from clinical.settings import DEFAULT_SETTINGS, SOURCES, Settings

__all__ = [
    "DEFAULT_SETTINGS",
    "SOURCES",
    "Coding",
    "Finding",
    "Intent",
    "MixedPatientsError",
    "OrderAction",
    "PatientRecord",
    "ProposedDose",
    "Settings",
    "Severity",
    "SuggestedOrder",
    "build_record",
    "evaluate",
    "evaluate_json",
    "evaluate_record",
]
