"""One NDJSON line of an export, judged: whose resource it is, whether the core would read it,
or why it is not a resource. Pure functions, shared by both engines (in process and Spark).

Most lines of a real export belong to patients no rule can apply to (`candidates.py`). Their
patient is told from the line by decoding only `resourceType`, `subject` and `patient`
(msgspec skips the other fields while still checking the JSON: about a quarter of a full
parse); only the lines of the patients who are judged are parsed whole.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any, Final

import msgspec
import orjson

from clinical.reader import (
    LAB_OBSERVATION_FIELDS,
    READ_TYPES,
    local_reference,
    observation_reading_of,
)
from clinical.valuesets import ValueSets

Resource = dict[str, Any]

# The resource types `clinical.reader` reads for a patient, as it says (a type it learns to read
# is kept here too); Medication joins them by reference.
PATIENT_TYPES: Final = READ_TYPES
# What says a patient takes or was given a drug (a dose given in clinic is one too).
MEDICATION_ORDERS: Final = ("MedicationRequest", "MedicationStatement", "MedicationAdministration")
MEDICATION_TYPES: Final = frozenset({"Medication", *MEDICATION_ORDERS})
UTF8_BOM: Final = b"\xef\xbb\xbf"  # written by some tools at the start of a file or line

# What a line is (the first item of an outcome tuple; tuples: cheap to make and to pickle).
BAD: Final = "bad"  # (BAD, reason): not JSON, or not a resource
OTHER: Final = "other"  # (OTHER, type): a type the core does not read
NOT_JUDGED: Final = "not-judged"  # (NOT_JUDGED, type): its patient is on no drug a rule needs
UNREAD: Final = "unread"  # (UNREAD, type): an Observation the core would pass over
NOBODY: Final = "nobody"  # (NOBODY, type): names no patient (or a Medication without id)
KEPT: Final = "kept"  # (KEPT, type, patient id, text): held for its patient
MEDICATION: Final = "medication"  # (MEDICATION, type, medication id, text)

Outcome = tuple[Any, ...]


class _Reference(msgspec.Struct, gc=False):
    reference: Any = None


class _Head(msgspec.Struct, gc=False):
    """The fields that say what a resource is and whose. A line where they have another
    shape (a subject that is not an object) fails to decode and is parsed whole."""

    resourceType: Any = None
    id: Any = None
    subject: _Reference | None = None
    patient: _Reference | None = None


_HEAD = msgspec.json.Decoder(_Head)


def clean(line: bytes) -> bytes:
    """The line without a byte order mark or surrounding white space (CRLF included)."""
    return line.removeprefix(UTF8_BOM).strip()


def judge_line(line: bytes, keep: Container[str] | None, valuesets: ValueSets) -> Outcome:
    """What one non-blank line is. `keep`: the patients whose resources are held (None: all);
    another patient's line is NOT_JUDGED after decoding its head only."""
    try:
        head = _HEAD.decode(line)
    except msgspec.DecodeError:  # not JSON, or not an object: the full parse says which
        return _judge_parsed(line, keep, valuesets)
    resource_type = head.resourceType
    if not isinstance(resource_type, str):
        return _judge_parsed(line, keep, valuesets)
    if resource_type not in PATIENT_TYPES:
        if resource_type != "Medication":
            return (OTHER, resource_type)
    elif keep is not None:
        if resource_type == "Patient":
            patient_id = head.id if isinstance(head.id, str) and head.id else None
        else:
            patient_id = _patient_referenced(head.subject) or _patient_referenced(head.patient)
        if patient_id is not None and patient_id not in keep:
            return (NOT_JUDGED, resource_type)
    return _judge_parsed(line, keep, valuesets)


def _patient_referenced(reference: _Reference | None) -> str | None:
    if reference is None:
        return None
    written = reference.reference
    found = _PATIENT_REFERENCES.get(written, _UNSEEN) if isinstance(written, str) else None
    return reference_id(written, "Patient") if found is _UNSEEN else found  # type: ignore[return-value]


def _judge_parsed(line: bytes, keep: Container[str] | None, valuesets: ValueSets) -> Outcome:
    resource = parse_resource(line)
    if isinstance(resource, str):
        return (BAD, resource)
    return judge_resource(resource, line, keep, valuesets)


def judge_resource(
    resource: Resource, text: bytes, keep: Container[str] | None, valuesets: ValueSets
) -> Outcome:
    """What a parsed resource is (`text`: its JSON), and the text to hold for its patient."""
    resource_type = resource["resourceType"]
    if resource_type == "Medication":
        medication_id = resource.get("id")
        if isinstance(medication_id, str) and medication_id:
            return (MEDICATION, resource_type, medication_id, text)
        return (NOBODY, resource_type)  # no id: no order can name it
    if resource_type not in PATIENT_TYPES:
        return (OTHER, resource_type)
    patient_id = patient_id_of(resource)
    if patient_id is not None and keep is not None and patient_id not in keep:
        return (NOT_JUDGED, resource_type)
    if resource_type == "Observation":
        reading = observation_reading_of(valuesets, resource)
        if reading == "unread":
            return (UNREAD, resource_type)
        if reading == "lab":  # only the fields the reader reads of a lab result
            text = _compact({k: resource[k] for k in LAB_OBSERVATION_FIELDS if k in resource})
    if patient_id is None:
        return (NOBODY, resource_type)
    return (KEPT, resource_type, patient_id, text)


def parse_resource(line: bytes) -> Resource | str:
    """One NDJSON line as a resource, or the reason it is not one."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return f"not JSON ({error.msg} at column {error.colno})"
    if not isinstance(value, dict):
        return f"not a FHIR resource (a JSON {_json_kind(value)})"
    if not isinstance(value.get("resourceType"), str):
        return "not a FHIR resource (no resourceType)"
    return value


def _json_kind(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def _compact(resource: Resource) -> bytes:
    """The resource's JSON in a bytes object of its own size: orjson's output keeps a buffer
    of 4 kB or more, 8 times a lab result's size (measured with tracemalloc)."""
    return bytes(memoryview(orjson.dumps(resource)))


def patient_id_of(resource: Resource) -> str | None:
    """The patient a resource belongs to: a Patient's own id, else its subject or patient."""
    return patient_of(
        resource["resourceType"],
        resource.get("id"),
        resource.get("subject"),
        resource.get("patient"),
    )


def patient_of(resource_type: str, own_id: Any, subject: Any, patient: Any) -> str | None:
    """The patient of a resource of this type, from its id, subject and patient fields."""
    if resource_type == "Patient":
        return own_id if isinstance(own_id, str) and own_id else None
    for reference in (subject, patient):
        if isinstance(reference, dict):
            patient_id = reference_id(reference.get("reference"), "Patient")
            if patient_id is not None:
                return patient_id
    return None


def reference_id(reference: Any, resource_type: str) -> str | None:
    """The id in a reference to `resource_type`, read as the core reads references
    (`local_reference`: relative, absolute, versioned, or `urn:uuid:` taken as that type's id,
    as Synthea writes them: a patient of that id must then be in the export)."""
    if not isinstance(reference, str):
        return None
    remembered = _READ_REFERENCES.setdefault(resource_type, {})
    found = remembered.get(reference, _UNSEEN)
    if found is _UNSEEN:
        if len(remembered) >= _REFERENCES_REMEMBERED:
            remembered.clear()
        found_type, _, target_id = local_reference(reference, resource_type).rpartition("/")
        found = remembered[reference] = (
            target_id if found_type == resource_type and target_id else None
        )
    return found  # type: ignore[return-value]


# A patient's lines name them by the same reference, one after another: each is read once
# (a fifth of the reading's time when measured); forgotten in bulk past this many.
_READ_REFERENCES: dict[str, dict[str, str | None]] = {"Patient": {}}
_PATIENT_REFERENCES = _READ_REFERENCES["Patient"]
_REFERENCES_REMEMBERED: Final = 65_536
_UNSEEN: Final = object()


def medication_named(order: Resource) -> str | None:
    """The Medication id an order or statement names by reference ("#id": contained, None)."""
    reference = order.get("medicationReference")
    if not isinstance(reference, dict):
        return None
    target = reference.get("reference")
    if isinstance(target, str) and target.startswith("#"):
        return None
    return reference_id(target, "Medication")
