"""Bundle JSON bytes -> the resources the reader could use, decoding only what it reads.

Most of a long record is Observations no rule reads (vital signs, blood counts...). msgspec
splits the Bundle into each resource's raw bytes and decodes only a small head of each
(type, status, code); an Observation the reader would pass over is dropped undecoded. A lab
result is decoded with only the fields the reader reads of one (`LAB_OBSERVATION_FIELDS`:
no meta, subject, performer or interpretation; only `high` of a reference range), with its
code decoded once per distinct text and shared, and every other resource whole with orjson.
At 10,000 resources this more than halves the parse (benchmarks/).

Conservative by construction: a resource is dropped only when `observation_reading` says
`_Reader.observation` would do nothing with it, and any shape not handled here (not a Bundle,
a list, prefetch values, odd entries, a nested Bundle, anything msgspec rejects) returns None
so that the caller decodes the whole text with orjson instead. A test records every field the
reader reads from lab results, over all fixtures and generated ones, against those lists.

Two differences are left, both about numbers no valid FHIR resource holds:
- msgspec does not range-check the numbers it skips, so a number beyond a double's range
  (1e400) in a field left undecoded is not refused, where orjson refuses the whole text;
- in a lab result, msgspec reads an integer beyond 64 bits exactly, where orjson reads the
  nearest double. A decimal (valueQuantity.value) gives the same number either way; only an
  out-of-range valueInteger (FHIR's integer is 32 bits) or a number where text belongs reads
  differently.
Such numbers are still JSON by RFC 8259's grammar.
"""

from __future__ import annotations

from typing import Any, TypedDict

import msgspec
import orjson

from clinical.reader import (
    LAB_OBSERVATION_FIELDS,
    LAB_REFERENCE_RANGE_FIELDS,
    MENOPAUSE_RANGE_VALUESETS,
    MENOPAUSE_REFERENCE_RANGE_FIELDS,
    ObservationReading,
    observation_reading,
    with_entry_id,
)
from clinical.valuesets import ValueSets


# gc=False: these hold decoded JSON only, which has no reference cycles, so the collector
# need not track them (msgspec's docs; -0.5% instructions at 100 resources).
class _Coding(msgspec.Struct, gc=False):
    system: Any = None
    code: Any = None


class _CodeableConcept(msgspec.Struct, gc=False):
    coding: list[_Coding] | None = None


class _Head(msgspec.Struct, gc=False):
    """What decides whether a resource is read; every other field is skipped undecoded. The
    code is kept as its raw bytes: a handful of codes recur across a long record, so each
    distinct text is decoded and judged once per read (`_Judge`)."""

    resourceType: Any = None
    status: Any = None
    code: msgspec.Raw = msgspec.Raw(b"null")
    valueCodeableConcept: Any = None  # rare: decoded only where present


class _Entry(msgspec.Struct, gc=False):
    resource: msgspec.Raw = msgspec.Raw(b"null")  # (msgspec has no `Raw | None`)
    fullUrl: Any = None


class _Bundle(msgspec.Struct, gc=False):
    resourceType: Any = None
    entry: list[_Entry] | None = None


_BUNDLE = msgspec.json.Decoder(_Bundle)
_HEAD = msgspec.json.Decoder(_Head)
# Typed structs rather than dicts for the code (about a third cheaper); a code of another
# shape fails to decode, and the resource is then kept.
_CODE = msgspec.json.Decoder(_CodeableConcept | None)

# A lab result's fields as a dict (msgspec decodes a TypedDict to a plain dict, skipping every
# field not named); the fields are the reader's own lists, so the two cannot drift apart. The
# code is not among them: its judge decoded it once for every result that shares its text.
_ReferenceRange = TypedDict(  # type: ignore[misc]
    "_ReferenceRange", dict.fromkeys(LAB_REFERENCE_RANGE_FIELDS, Any), total=False
)
# Estradiol and FSH: also the range's low bound, type and text (the lab's postmenopausal range).
_MenopauseRange = TypedDict(  # type: ignore[misc]
    "_MenopauseRange", dict.fromkeys(MENOPAUSE_REFERENCE_RANGE_FIELDS, Any), total=False
)


class _Subject(TypedDict, total=False):
    reference: Any  # not its display


_LAB_FIELDS: dict[str, Any] = {
    **dict.fromkeys(LAB_OBSERVATION_FIELDS, Any),
    "referenceRange": list[_ReferenceRange],  # not a list of objects: orjson decides
    "subject": _Subject,  # not an object: orjson decides
}
del _LAB_FIELDS["code"]
_LabObservation = TypedDict("_LabObservation", _LAB_FIELDS, total=False)  # type: ignore[misc]
_MENOPAUSE_LAB_FIELDS = {**_LAB_FIELDS, "referenceRange": list[_MenopauseRange]}
_MenopauseLab = TypedDict("_MenopauseLab", _MENOPAUSE_LAB_FIELDS, total=False)  # type: ignore[misc]
_LAB_OBSERVATION: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_LabObservation)  # dicts
_MENOPAUSE_LAB: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_MenopauseLab)

# Errors that send a text back to the full orjson parse, which then decides what it is
# (msgspec.DecodeError and ValidationError are ValueErrors; deep nesting hits the recursion
# limit in msgspec sooner than orjson's).
_NOT_HANDLED = (ValueError, RecursionError)

_OTHER: tuple[ObservationReading, Any] = ("other", None)


def read_lazily(data: bytes, valuesets: ValueSets) -> list[dict[str, Any]] | None:
    """The resources of a Bundle that the reader could use, in order (nested Bundles as they
    are); None when the text is not a shape handled here. Raises orjson.JSONDecodeError when
    a resource it decodes is not valid JSON."""
    if not isinstance(data, bytes) or not _valid_utf8(data):
        return None
    try:
        bundle = _BUNDLE.decode(data)
    except _NOT_HANDLED:
        return None
    if bundle.resourceType != "Bundle":
        return None
    resources: list[dict[str, Any]] = []
    judge = _judge_for(valuesets)
    for entry in bundle.entry or ():
        raw = entry.resource
        try:
            head = _HEAD.decode(raw)
        except msgspec.ValidationError:
            head = None  # not an object, or odd types: decode it and let the checks below decide
        except _NOT_HANDLED:
            return None
        reading, code = (
            judge.reading(head.status, head.code)
            if head is not None
            and head.resourceType == "Observation"
            and head.valueCodeableConcept is None
            else _OTHER
        )
        if reading == "unread":
            continue
        resource = (
            _lab_observation(raw, code) if reading == "lab" else orjson.loads(memoryview(raw))
        )
        # As `iter_resources` does with a Bundle's entries: objects only, and an id from a
        # urn:uuid fullUrl where the resource has none.
        if isinstance(resource, dict):
            if "id" not in resource:
                resource = with_entry_id(resource, entry.fullUrl)
            resources.append(resource)
    return resources


def _lab_observation(raw: msgspec.Raw, code: tuple[Any, bool]) -> Any:
    """A lab result with only the fields the reader reads (no copy of the other bytes), and
    the code its judge decoded: one dict, shared by every result with that code text, in
    this read and later ones (the reader never changes a resource)."""
    try:
        decoder = _MENOPAUSE_LAB if code[1] else _LAB_OBSERVATION
        resource: dict[str, Any] = decoder.decode(raw)
    except _NOT_HANDLED:  # e.g. a number beyond a double's range: orjson decides
        return orjson.loads(memoryview(raw))
    resource["code"] = code[0]
    return resource


class _Judge:
    """`observation_reading` once per distinct (status, code text), remembered across reads:
    the same few hundred code texts recur across every patient of an EHR. A lab result's
    code is remembered with its verdict, decoded by orjson as the whole text would be. At most
    `max_readings` are kept (all forgotten at once beyond that, so a flood of odd codes costs
    memory only up to the bound). A pure function of the value sets, so thread-safe as it is:
    two threads may judge the same code text once each."""

    def __init__(self, valuesets: ValueSets, max_readings: int = 20_000) -> None:
        self.valuesets = valuesets
        self.max_readings = max_readings
        self.readings: dict[tuple[Any, bytes], tuple[ObservationReading, Any]] = {}

    def reading(self, status: Any, code: msgspec.Raw) -> tuple[ObservationReading, Any]:
        if not isinstance(status, (str, type(None))):  # odd: judged, not remembered
            return self.judge(status, code)
        key = (status, bytes(code))
        reading = self.readings.get(key)
        if reading is None:
            if len(self.readings) >= self.max_readings:
                self.readings = {}
            reading = self.readings[key] = self.judge(status, code)
        return reading

    def judge(self, status: Any, code: msgspec.Raw) -> tuple[ObservationReading, Any]:
        try:
            concept = _CODE.decode(code)
        except msgspec.ValidationError:
            return _OTHER  # a code of another shape: keep all of it, the reader decides
        codes = [] if concept is None or concept.coding is None else concept.coding
        reading = observation_reading(
            self.valuesets, status, [(coding.system, coding.code) for coding in codes]
        )
        if reading != "lab":
            return reading, None
        try:
            decoded = orjson.loads(memoryview(code))
        except orjson.JSONDecodeError:
            return _OTHER  # orjson refuses it (1e400): decoding all of it then says why
        # an object: a lab result's code holds the coding that matched
        menopause = bool(self.valuesets.names_for_codeable(decoded) & MENOPAUSE_RANGE_VALUESETS)
        return "lab", (decoded, menopause)


# One judge per value sets in use (in practice the packaged ones, `valuesets.load()`); the
# entry holds its ValueSets, so an id is never reused while its judge is here.
_JUDGES: dict[int, _Judge] = {}


def _judge_for(valuesets: ValueSets) -> _Judge:
    judge = _JUDGES.get(id(valuesets))
    if judge is None:
        if len(_JUDGES) >= 8:  # value sets built on the fly (tests): keep the newest only
            _JUDGES.clear()
        judge = _JUDGES[id(valuesets)] = _Judge(valuesets)
    return judge


def _valid_utf8(data: bytes) -> bool:
    """orjson rejects text that is not UTF-8; msgspec does not check the bytes it skips."""
    if data.isascii():  # the usual case, and far cheaper than decoding
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
