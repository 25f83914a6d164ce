"""Finding -> CDS Hooks 2.0 card, with suggestions that create real orders or change the
draft order being signed.

Every suggested order is a FHIR R4 ServiceRequest built here and validated with
fhir.resources before it leaves; a resource that does not validate is left out of the card
(and logged) rather than sent. In order-select and order-sign, a finding's `order_actions`
become suggestions on the drafts of the call: `update` (the draft MedicationRequest, whole,
with the proposed dose, validated the same way) or `delete` (by `resourceId`).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from cds_hooks.codes import DATA_INCOMPLETE_TOPIC, RULES_SYSTEM, override_reason_coding
from clinical.finding import Coding, Finding, OrderAction, ProposedDose, SuggestedOrder
from clinical.rules import RULES
from clinical.valuesets import SNOMED

log = logging.getLogger(__name__)

UCUM = "http://unitsofmeasure.org"

SUMMARY_LIMIT = 140  # CDS Hooks 2.0: "<140-character summary"

# FHIR R4 servicerequest-category (SNOMED CT)
_CATEGORIES = {
    "laboratory": (SNOMED, "108252007", "Laboratory procedure"),
    "imaging": (SNOMED, "363679005", "Imaging"),
}


@dataclass(frozen=True, slots=True)
class CardContext:
    """What a card needs to know besides the finding."""

    base_url: str  # this service, as the EHR sees it
    patient_id: str
    now: datetime
    product_label: str = "Anastrozole monitoring"
    smart_launch_url: str | None = None  # default: {base_url}/launch.html
    user_reference: str | None = None  # context.userId, e.g. "Practitioner/123"
    encounter_id: str | None = None
    suggestion_intent: str = "order"  # "order" or "proposal"
    # order-select and order-sign: the draft orders of the call, by "Type/id"; the only
    # resources a card may offer to change
    drafts: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def launch_url(self) -> str:
        return self.smart_launch_url or f"{self.base_url}/launch.html"


def short_summary(text: str) -> str:
    """The summary within the spec's limit (Finding allows 140; the spec wants fewer)."""
    text = " ".join(text.split())
    return text if len(text) < SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 2].rstrip() + "…"


def card_for(finding: Finding, ctx: CardContext) -> dict[str, Any]:
    """One card for one finding."""
    rule = RULES[finding.rule_id]
    card: dict[str, Any] = {
        "uuid": str(uuid.uuid4()),
        "summary": short_summary(finding.summary),
        "indicator": finding.severity.value,
        "detail": _detail(finding),
        "source": {
            "label": ctx.product_label,
            "url": f"{ctx.base_url}/about/rules",
            "topic": {"system": RULES_SYSTEM, "code": finding.rule_id, "display": rule.title},
        },
    }
    suggestions = [
        s for action in finding.order_actions if (s := order_action_suggestion(action, ctx))
    ]
    suggestions += [
        s for order in finding.suggested_orders if (s := _suggestion(order, finding, ctx))
    ]
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = "any"  # each order stands on its own
    card["overrideReasons"] = [override_reason_coding(reason) for reason in rule.override_reasons]
    card["links"] = [
        {
            "label": f"About this check: {rule.title}",
            "url": f"{ctx.base_url}/about/rules/{finding.rule_id}",
            "type": "absolute",
        },
        {
            "label": "Open anastrozole monitoring",
            "url": ctx.launch_url,
            "type": "smart",
            "appContext": orjson.dumps({"rule": finding.rule_id}).decode(),
        },
    ]
    return card


def data_incomplete_card(
    missing: Sequence[tuple[str, str]], withheld: Sequence[str], ctx: CardContext
) -> dict[str, Any]:
    """The card that says which checks were skipped: `missing` is (what, why) per data slice."""
    what = ", ".join(label for label, _ in missing)
    lines = [
        "Some of the chart could not be read from the EHR, so the checks that need it were "
        "skipped rather than guessed:",
        "",
        *(f"- {label}: {reason}" for label, reason in missing),
    ]
    if withheld:
        lines += ["", "Skipped: " + ", ".join(f"`{rule}`" for rule in withheld) + "."]
    lines += ["", "Open the chart again later, or the app for the full picture."]
    return {
        "uuid": str(uuid.uuid4()),
        "summary": short_summary(f"Anastrozole checks incomplete: could not read {what}"),
        "indicator": "info",
        "detail": "\n".join(lines),
        "source": {
            "label": ctx.product_label,
            "url": f"{ctx.base_url}/about/rules",
            "topic": {
                "system": RULES_SYSTEM,
                "code": DATA_INCOMPLETE_TOPIC,
                "display": "Data incomplete",
            },
        },
        "links": [
            {
                "label": "Open anastrozole monitoring",
                "url": ctx.launch_url,
                "type": "smart",
                "appContext": orjson.dumps({"rule": DATA_INCOMPLETE_TOPIC}).decode(),
            }
        ],
    }


def _detail(finding: Finding) -> str:
    """The finding's markdown, with its data gaps and source added when it does not say them."""
    detail = finding.detail.strip()
    parts = [detail]
    gaps = [gap for gap in finding.data_gaps if gap not in detail]
    if gaps:
        parts.append("**Left out:**\n" + "\n".join(f"- {gap}" for gap in gaps))
    if finding.source and finding.source not in detail:
        parts.append(f"*Source: {finding.source}*")
    return "\n\n".join(part for part in parts if part)


def _suggestion(order: SuggestedOrder, finding: Finding, ctx: CardContext) -> dict[str, Any] | None:
    resource = service_request_for(order, finding, ctx)
    if resource is None:
        return None
    return {
        "label": order.label,
        "uuid": str(uuid.uuid4()),
        "actions": [
            {
                "type": "create",
                "description": f"{order.label} ({order.codings[0].display})",
                "resource": resource,
            }
        ],
    }


def order_action_suggestion(action: OrderAction, ctx: CardContext) -> dict[str, Any] | None:
    """A suggestion that changes a draft order of this call (CDS Hooks 2.0 Action), or None
    when the draft is not in the call or the changed order would not be valid FHIR R4."""
    draft = ctx.drafts.get(action.target)
    if draft is None:
        return None
    if action.kind == "delete":
        change: dict[str, Any] = {
            "type": "delete",
            "description": f"{action.label} ({action.target})",
            "resourceId": [action.target],  # CDS Hooks 2.0: relative references
        }
    else:
        updated = draft_with_dose(draft, action.dose) if action.dose else None
        if updated is None:
            return None
        change = {"type": "update", "description": action.label, "resource": updated}
    suggestion: dict[str, Any] = {
        "label": action.label,
        "uuid": str(uuid.uuid4()),
        "actions": [change],
    }
    if action.recommended:
        suggestion["isRecommended"] = True
    return suggestion


# Fields the CDS Hooks sandbox writes as one object where FHIR R4 has a list (its drafts'
# `category` and `reasonCode`): made lists, so that the draft sent back is valid R4.
_LIST_FIELDS = ("category", "reasonCode", "dosageInstruction", "note", "identifier")


def draft_with_dose(draft: dict[str, Any], dose: ProposedDose) -> dict[str, Any] | None:
    """The draft MedicationRequest, whole (CDS Hooks 2.0: an update holds "the updated resource
    in its entirety"), its dosage the proposed dose in mg (UCUM), its route and bounds kept;
    None, logged, when it is not a MedicationRequest or would not be valid FHIR R4."""
    if draft.get("resourceType") != "MedicationRequest":
        return None
    resource: dict[str, Any] = orjson.loads(orjson.dumps(draft))  # a copy, the draft untouched
    for name in _LIST_FIELDS:
        if isinstance(resource.get(name), dict):
            resource[name] = [resource[name]]
    previous = _first_dict(resource.get("dosageInstruction"))
    repeat: dict[str, Any] = {
        "frequency": dose.frequency,
        "period": _number(dose.period),
        "periodUnit": dose.period_unit,
    }
    bounds = _first_dict(_first_dict(previous.get("timing")).get("repeat"))
    for name in ("boundsPeriod", "boundsDuration"):
        if name in bounds:
            repeat[name] = bounds[name]
    dosage: dict[str, Any] = {
        "text": dose.text,
        "timing": {"repeat": repeat},
        "doseAndRate": [
            {
                "doseQuantity": {
                    "value": _number(dose.amount_mg),
                    "unit": "mg",
                    "system": UCUM,
                    "code": "mg",
                }
            }
        ],
    }
    if "route" in previous:
        dosage["route"] = previous["route"]
    resource["dosageInstruction"] = [dosage]
    try:
        MedicationRequest.model_validate(resource)
    except ValidationError as error:
        log.error("dose change of a draft order left out: %d errors", error.error_count())
        return None
    return resource


def _first_dict(value: Any) -> dict[str, Any]:
    """A JSON object, or the first of a list of them; {} for anything else."""
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, dict) else {}


def _number(value: float) -> int | float:
    """1.0 as 1: a FHIR decimal written as a clinician would read it."""
    return int(value) if float(value).is_integer() else value


def service_request_for(
    order: SuggestedOrder, finding: Finding, ctx: CardContext
) -> dict[str, Any] | None:
    """A draft ServiceRequest for the suggested test, valid FHIR R4 (R4B models).

    Its coded part (status, intent, code, category) is validated with fhir.resources once per
    order and intent (validating and dumping the whole resource cost about 1.4 ms a card); the
    rest are references and texts, which FHIR only asks to be non-blank strings."""
    coded = _coded_part(order.codings, order.category, ctx.suggestion_intent)
    if coded is None:
        return None
    resource: dict[str, Any] = orjson.loads(coded)  # a fresh copy for every card
    resource["subject"] = {"reference": f"Patient/{ctx.patient_id}"}
    resource["authoredOn"] = ctx.now.isoformat()
    resource["reasonCode"] = [{"text": short_summary(finding.summary)}]
    resource["note"] = [{"text": f"Suggested by {ctx.product_label} (rule {finding.rule_id})."}]
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    if ctx.user_reference and ctx.user_reference.split("/", 1)[0] in (
        "Practitioner",
        "PractitionerRole",
    ):
        resource["requester"] = {"reference": ctx.user_reference}
    if ctx.now.tzinfo is None or not all(
        _FHIR_STRING.search(text) for text in _texts(resource)
    ):  # a dateTime with a time needs its offset; a string must not be blank
        log.error("suggested ServiceRequest for %s left out: not valid FHIR", finding.rule_id)
        return None
    return resource


# FHIR R4 `string`: [ \r\n\t\S]+ (fhir.resources matches it anywhere in the value)
_FHIR_STRING = re.compile(r"[ \r\n\t\S]")


def _texts(resource: dict[str, Any]) -> tuple[str, ...]:
    """The free-text strings of a built ServiceRequest that did not come from `_coded_part`."""
    texts = [resource["subject"]["reference"], resource["reasonCode"][0]["text"]]
    texts.append(resource["note"][0]["text"])
    for key in ("encounter", "requester"):
        if key in resource:
            texts.append(resource[key]["reference"])
    return tuple(texts)


@lru_cache(maxsize=256)
def _coded_part(
    codings: tuple[Coding, ...], category_name: str | None, intent: str
) -> bytes | None:
    """status, intent, code and category as JSON, validated with fhir.resources; None (logged)
    when they are not valid FHIR."""
    if not codings:
        return None
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": intent,
        "code": {
            "coding": [{"system": c.system, "code": c.code, "display": c.display} for c in codings],
            "text": codings[0].display,
        },
    }
    category = _CATEGORIES.get(category_name or "")
    if category:
        system, code, display = category
        resource["category"] = [{"coding": [{"system": system, "code": code, "display": display}]}]
    try:
        validated = ServiceRequest.model_validate(
            {**resource, "subject": {"reference": "Patient/x"}}
        )
    except ValidationError as error:
        log.error("suggested ServiceRequest left out: %d errors", error.error_count())
        return None
    coded = orjson.loads(validated.model_dump_json(exclude_none=True))
    del coded["subject"]
    return orjson.dumps(coded)
