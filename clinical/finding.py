"""What the rules say: a Finding, with the orders it suggests."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal


class Severity(StrEnum):
    """Card indicator, in CDS Hooks words."""

    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class Intent(StrEnum):
    """What the anastrozole is for: every rule reads the intent first (docs/rules.md)."""

    ONCOLOGY_SUPPRESSION = "oncology-suppression"
    TRT_MODULATION = "trt-modulation"
    FERTILITY = "fertility"
    UNCLEAR = "unclear"

    @property
    def label(self) -> str:
        return _INTENT_LABEL[self]


_INTENT_LABEL = {
    Intent.ONCOLOGY_SUPPRESSION: "oncology suppression",
    Intent.TRT_MODULATION: "TRT modulation",
    Intent.FERTILITY: "male infertility",
    Intent.UNCLEAR: "unclear",
}


@dataclass(frozen=True, slots=True)
class Coding:
    system: str
    code: str
    display: str


@dataclass(frozen=True, slots=True)
class SuggestedOrder:
    """A test the finding suggests ordering, by code; adapters turn it into a ServiceRequest."""

    label: str  # what the clinician reads on the button: "Order DXA bone density study"
    codings: tuple[Coding, ...]  # first is the preferred code
    category: str  # "laboratory" or "imaging"


@dataclass(frozen=True, slots=True)
class ProposedDose:
    """A dose a finding proposes for a draft order, in FHIR Timing terms: `amount_mg` taken
    `frequency` times every `period` `period_unit` (UCUM: d, wk)."""

    amount_mg: float
    frequency: int
    period: float
    period_unit: Literal["d", "wk"]
    text: str  # "1 mg once daily", as the clinician reads it


@dataclass(frozen=True, slots=True)
class OrderAction:
    """A change to a draft order of the hook call that the finding proposes: an order hook's
    card offers it as a suggestion (update the draft's dose, or delete the draft)."""

    kind: Literal["update", "delete"]
    target: str  # the draft order, "MedicationRequest/draft-1"
    label: str  # the suggestion as the clinician reads it: "Change to 1 mg once daily"
    dose: ProposedDose | None = None  # update: the new dose
    recommended: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    rule_id: str
    severity: Severity
    summary: str  # <= 140 characters, with the number and unit
    detail: str  # markdown: the evidence (values, dates) and the source
    source: str  # the guideline, label or study behind the rule, short
    evidence: tuple[str, ...] = ()  # "Observation/123" references used
    suggested_orders: tuple[SuggestedOrder, ...] = ()
    intent: Intent | None = None
    data_gaps: tuple[str, ...] = field(default=())  # data left out and why, said to the clinician
    order_actions: tuple[OrderAction, ...] = ()  # changes to draft orders it proposes

    def __post_init__(self) -> None:
        if len(self.summary) > 140:
            raise ValueError(f"summary over 140 characters: {self.summary!r}")
