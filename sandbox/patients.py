"""The synthetic patients of `sandbox/patients/`: what each one shows, and moving it in time.

Each file is a FHIR R4 transaction Bundle (PUT with stable ids, every id prefixed by the
patient's key so that patients never collide on one server). The Bundle states the cards it
should raise as `meta.tag` codings (system `EXPECTED_CARD_SYSTEM`, code = rule id, display =
severity; `EXPECTED_RENEWAL_CARD_SYSTEM` for the order hooks with a draft renewing the current
anastrozole order, absent when there is none to renew), names itself in `Bundle.identifier`, and its Patient's narrative says in words who
the patient is. The clinical content is that of the scenario fixtures in `tests/fixtures/`.

The bundles are dated for `REFERENCE_DATE`; `shift_dates` moves every date and dateTime by a
number of days (precision and time zone kept), so that a demo loaded today does not decay.
"""

from __future__ import annotations

import copy
import html
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any

import orjson

EXPECTED_CARD_SYSTEM = "https://anastrozole-cds.example/expected-card"
# order-select / order-sign with a draft that renews the current anastrozole order
EXPECTED_RENEWAL_CARD_SYSTEM = "https://anastrozole-cds.example/expected-card-on-renewal"
PATIENT_KEY_SYSTEM = "https://anastrozole-cds.example/synthetic-patient"
REFERENCE_DATE = date(2026, 11, 1)  # the bundles are written as if today were this day
REFERENCE_NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

Resource = dict[str, Any]

# The clinician the sandbox acts as (`check --user`'s default), loaded with every patient: a
# SMART launcher's provider login lists `Practitioner?_count=10&_summary=true&_sort=given`
# (smart-launcher-v2) and cannot go on when there is none.
PRACTITIONER_ID = "sandbox-clinician"


def sandbox_practitioner() -> Resource:
    """The synthetic clinician: a Practitioner with a given name, as a provider login lists."""
    return {
        "resourceType": "Practitioner",
        "id": PRACTITIONER_ID,
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Dr Sam Sandbox, a synthetic '
            "clinician for trying anastrozole-cds (no real person).</div>",
        },
        "active": True,
        "name": [{"use": "official", "family": "Sandbox", "given": ["Sam"], "prefix": ["Dr"]}],
    }


# Keys whose string values are FHIR date, dateTime or instant values in the resources we ship.
_DATE_KEYS = frozenset(
    {
        "start",
        "end",
        "issued",
        "authoredOn",
        "recorded",
        "lastUpdated",
        "timestamp",
        "date",
        "event",
        "birthDate",
        "recordedDate",
        "assertedDate",
        "started",
        "dateAsserted",
    }
)
_DATE_SUFFIXES = ("DateTime", "Instant")
# FHIR date / dateTime / instant: YYYY, YYYY-MM, YYYY-MM-DD, or a full date-time with zone.
_FHIR_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:(?P<time>T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?"
)


@dataclass(frozen=True, slots=True)
class SyntheticPatient:
    """One shipped patient: its key, what it shows, and its transaction Bundle."""

    key: str  # file name without .json, and the prefix of every id
    patient_id: str
    description: str
    expected_cards: dict[str, str]  # rule id -> severity, for patient-view
    renewal_cards: dict[str, str]  # the same for order hooks renewing anastrozole; {}: none
    bundle: dict[str, Any]


def expected_cards(bundle: dict[str, Any], system: str = EXPECTED_CARD_SYSTEM) -> dict[str, str]:
    """The cards a Bundle says it should raise: rule id -> severity, from its meta.tag."""
    tags = (bundle.get("meta") or {}).get("tag") or []
    return {
        tag["code"]: tag.get("display", "")
        for tag in tags
        if tag.get("system") == system and isinstance(tag.get("code"), str)
    }


def bundle_resources(bundle: dict[str, Any]) -> list[Resource]:
    """The resources of a Bundle, in order."""
    return [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]


def describe(bundle: dict[str, Any]) -> str:
    """The Patient's narrative as plain text: who this synthetic patient is."""
    for resource in bundle_resources(bundle):
        if resource.get("resourceType") == "Patient":
            div = (resource.get("text") or {}).get("div", "")
            return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", div)).split())
    return ""


def _patient(key: str, bundle: dict[str, Any]) -> SyntheticPatient:
    patient_ids = [r["id"] for r in bundle_resources(bundle) if r.get("resourceType") == "Patient"]
    if len(patient_ids) != 1:
        raise ValueError(f"synthetic patient {key} must hold exactly one Patient")
    return SyntheticPatient(
        key,
        patient_ids[0],
        describe(bundle),
        expected_cards(bundle),
        expected_cards(bundle, EXPECTED_RENEWAL_CARD_SYSTEM),
        bundle,
    )


@cache
def _all() -> tuple[SyntheticPatient, ...]:
    folder = resources.files("sandbox") / "patients"
    found = []
    for item in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if item.name.endswith(".json"):
            found.append(_patient(item.name.removesuffix(".json"), orjson.loads(item.read_bytes())))
    return tuple(found)


def all_patients() -> list[SyntheticPatient]:
    """Every shipped patient, by key. Bundles are fresh copies: callers may change them."""
    return [
        SyntheticPatient(
            p.key,
            p.patient_id,
            p.description,
            dict(p.expected_cards),
            dict(p.renewal_cards),
            copy.deepcopy(p.bundle),
        )
        for p in _all()
    ]


def patient(key: str) -> SyntheticPatient:
    """One shipped patient by key (file name without .json) or by its Patient id."""
    for candidate in all_patients():
        if key in (candidate.key, candidate.patient_id):
            return candidate
    known = ", ".join(p.key for p in _all())
    raise KeyError(f"no synthetic patient {key!r}; known: {known}")


# -- moving a patient in time -----------------------------------------------------------------


def days_to_shift(as_of: date, reference: date = REFERENCE_DATE) -> int:
    """How many days to move the bundles so that their `today` is `as_of`."""
    return (as_of - reference).days


def shift_date_text(value: str, days: int) -> str:
    """A FHIR date, dateTime or instant moved by `days`, at its own precision and zone.

    A year or year-month value moves only when the day-level shift crosses into another month
    or year (its first day is shifted). Anything that is not a FHIR date is returned as is.
    """
    match = _FHIR_DATE.fullmatch(value)
    if match is None or days == 0:
        return value
    year, month, day = match["year"], match["month"], match["day"]
    moved = date(int(year), int(month or 1), int(day or 1)) + timedelta(days=days)
    if month is None:
        return f"{moved.year:04d}"
    if day is None:
        return f"{moved.year:04d}-{moved.month:02d}"
    return f"{moved.isoformat()}{match['time'] or ''}{match['zone'] or ''}"


def shift_dates(document: Any, days: int) -> Any:
    """A copy of a FHIR document (resource, Bundle, list) with every date moved by `days`."""
    if isinstance(document, dict):
        shifted: dict[str, Any] = {}
        for name, value in document.items():
            if _is_date_key(name) and isinstance(value, str):
                shifted[name] = shift_date_text(value, days)
            elif _is_date_key(name) and isinstance(value, list):
                shifted[name] = [
                    shift_date_text(item, days) if isinstance(item, str) else item for item in value
                ]
            else:
                shifted[name] = shift_dates(value, days)
        return shifted
    if isinstance(document, list):
        return [shift_dates(item, days) for item in document]
    return document


def _is_date_key(name: str) -> bool:
    return name in _DATE_KEYS or name.endswith(_DATE_SUFFIXES)
