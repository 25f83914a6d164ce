"""Which patients any rule can apply to, decided from the medication lines alone.

Every rule of the catalogue starts from a current course of an aromatase inhibitor, of
anastrozole or of testosterone (clinical/rules/: `infer_intent` needs anastrozole, which
nine rules read first; dexa-due, bone-loss-on-ai, premenopausal-on-ai and sex-undetermined
need an aromatase inhibitor; estradiol-high needs testosterone), or from a current drug the
core cannot read (it says so, rather than finding nothing). A patient with no order,
statement or administration of one of them gets no finding, so their other resources need
not be read whole.
tests/population/test_candidates.py holds this against every fixture and synthetic patient.

An order is classified by the core itself: `clinical.build_record` on the order alone (its
status set to active, so a stopped course still counts: the check is never narrower than
the rules'), with the Medication it names. The answer is remembered per drug concept, so an
export of millions of orders classifies each product once. An order naming a Medication that
is not in the export cannot be cleared: its patient is judged, with the gap said.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

import msgspec
import orjson

from anastrozole_cds.population.lines import MEDICATION_ORDERS, patient_of, reference_id
from clinical import build_record
from clinical.valuesets import ValueSets

# The drug value sets a rule needs a current course of (clinical/rules/, see above).
RULE_DRUGS: Final = frozenset({"aromatase-inhibitors", "anastrozole", "testosterone-products"})
_MEDICATION_FIELDS = ("medicationCodeableConcept", "medicationReference", "contained")


class _Order(msgspec.Struct):
    """What an order or statement says about its patient and drug, nothing else."""

    resourceType: Any = None
    id: Any = None
    subject: Any = None
    patient: Any = None
    medicationCodeableConcept: Any = None
    medicationReference: Any = None
    contained: Any = None


_ORDER = msgspec.json.Decoder(_Order)


@dataclass(frozen=True, slots=True)
class MissingMedication:
    """An order naming a Medication the export does not hold: its drug is unknown."""

    patient_id: str
    order: str  # "MedicationRequest/123"
    medication: str  # the reference as written: "Medication/m1", "Medication?code=..."

    def gap(self) -> str:
        return (
            f"{self.order} names {self.medication}, which is not in the export: its drug is unknown"
        )


@dataclass(slots=True)
class Candidates:
    """The patients to judge, and the orders whose drug could not be known."""

    patients: set[str] = field(default_factory=set)
    missing: list[MissingMedication] = field(default_factory=list)

    def add(self, other: Candidates) -> None:
        self.patients |= other.patients
        self.missing.extend(other.missing)

    def all(self) -> set[str]:
        return self.patients | {m.patient_id for m in self.missing}


class Classifier:
    """Tells whether an order is for a drug a rule needs, by asking the core, once per drug."""

    def __init__(self, valuesets: ValueSets, now: datetime) -> None:
        self.valuesets = valuesets
        self.now = now
        self.known: dict[bytes, bool] = {}

    def needs(self, order: Mapping[str, Any], medication: bytes | None) -> bool:
        """True when the core reads this order (with `medication`, the Medication it names)
        as a course of a drug some rule starts from."""
        key = orjson.dumps([order.get(name) for name in _MEDICATION_FIELDS]) + (medication or b"")
        answer = self.known.get(key)
        if answer is None:
            answer = self.known[key] = self._ask_core(order, medication)
        return answer

    def _ask_core(self, order: Mapping[str, Any], medication: bytes | None) -> bool:
        alone = {
            "resourceType": order.get("resourceType"),
            "id": "order",
            "status": "active",
            **{name: order[name] for name in _MEDICATION_FIELDS if order.get(name) is not None},
        }
        resources = [alone, *([orjson.loads(medication)] if medication else [])]
        record = build_record(resources, self.now, self.valuesets)
        unreadable = bool(record.unread_medications)  # said by the core: judge the patient
        return unreadable or any(course.drugs & RULE_DRUGS for course in record.medications)


def read_order(line: bytes) -> tuple[str, dict[str, Any]] | None:
    """(patient id, the order's drug fields) of a MedicationRequest or MedicationStatement
    line; None for any other line, or one that names no patient (the reading reports it)."""
    try:
        order = _ORDER.decode(line)
    except msgspec.DecodeError:
        return None
    if order.resourceType not in MEDICATION_ORDERS:
        return None
    patient_id = patient_of(order.resourceType, order.id, order.subject, order.patient)
    if patient_id is None:
        return None
    fields = {name: getattr(order, name) for name in ("resourceType", "id", *_MEDICATION_FIELDS)}
    return patient_id, fields


def judge_orders(
    orders: Iterable[tuple[str, dict[str, Any]]],
    medications: Mapping[str, bytes],
    classifier: Classifier,
) -> Candidates:
    """The candidates among these orders' patients, given the export's Medications by id."""
    found = Candidates()
    for patient_id, order in orders:
        if patient_id in found.patients:
            continue
        written = _named_medication(order)
        medication_id = reference_id(written, "Medication") if written else None
        medication = medications.get(medication_id) if medication_id else None
        if written is not None and medication is None:
            order_ref = f"{order['resourceType']}/{order.get('id') or '?'}"
            found.missing.append(MissingMedication(patient_id, order_ref, written))
        elif classifier.needs(order, medication):
            found.patients.add(patient_id)
    return found


def _named_medication(order: Mapping[str, Any]) -> str | None:
    """The reference to a Medication resource the order's drug is read from, as written:
    None when the order has a code of its own (the core reads it and ignores any reference),
    names a contained Medication ("#id") or none."""
    if order.get("medicationCodeableConcept") is not None:
        return None
    reference = order.get("medicationReference")
    target = reference.get("reference") if isinstance(reference, dict) else None
    if not isinstance(target, str) or not target or target.startswith("#"):
        return None
    return target
