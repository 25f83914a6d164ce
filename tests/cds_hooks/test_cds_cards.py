"""Finding -> card: the CDS Hooks 2.0 card fields, limits, suggestions and links."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fhir.resources.R4B.servicerequest import ServiceRequest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cds_hooks.cards import (
    CardContext,
    card_for,
    data_incomplete_card,
    service_request_for,
    short_summary,
)
from cds_hooks.codes import RULES_SYSTEM
from clinical import orders
from clinical.finding import Finding, Intent, Severity, SuggestedOrder
from clinical.rules import RULE_IDS, RULES

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
CTX = CardContext(
    base_url="https://cds.example.org",
    patient_id="p1",
    now=NOW,
    user_reference="Practitioner/dr-1",
    encounter_id="enc-9",
)
SUGGESTS: dict[str, tuple[SuggestedOrder, ...]] = {
    "dexa-due": (orders.DXA,),
    "liver-panel-due": (orders.HEPATIC_PANEL,),
    "lipid-panel-due": (orders.LIPID_PANEL,),
    "glycemic-monitoring-due": (orders.HBA1C,),
    "estradiol-low": (orders.ESTRADIOL,),
    "estradiol-high": (orders.ESTRADIOL,),
    "estradiol-monitoring-due": (orders.ESTRADIOL,),
    "premenopausal-on-ai": (orders.FSH, orders.ESTRADIOL),
}


def finding(rule_id: str, severity: Severity = Severity.WARNING, **changes: Any) -> Finding:
    values: dict[str, Any] = {
        "rule_id": rule_id,
        "severity": severity,
        "summary": "Estradiol 11 pg/mL on anastrozole (TRT): below 20 pg/mL floor",
        "detail": "- LOINC 2243-4: **11 pg/mL** on 2026-10-01",
        "source": "Fink 2006 JCEM",
        "evidence": ("Observation/e2-1",),
        "suggested_orders": SUGGESTS.get(rule_id, ()),
        "intent": Intent.TRT_MODULATION,
    }
    values.update(changes)
    return Finding(**values)


def test_every_rule_has_a_title_a_meaning_and_reasons_to_dismiss_its_card() -> None:
    for rule in RULES.values():
        assert 1 <= len(rule.override_reasons) <= 5
        assert rule.title and rule.meaning


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_a_card_has_the_spec_fields_and_the_rule_as_topic(rule_id: str) -> None:
    card = card_for(finding(rule_id), CTX)
    uuid.UUID(card["uuid"])
    assert card["summary"] == "Estradiol 11 pg/mL on anastrozole (TRT): below 20 pg/mL floor"
    assert card["indicator"] == "warning"
    assert card["source"]["label"] == "Anastrozole monitoring"
    assert card["source"]["url"].startswith("https://cds.example.org/")
    assert card["source"]["topic"] == {
        "system": RULES_SYSTEM,
        "code": rule_id,
        "display": RULES[rule_id].title,
    }
    assert "**11 pg/mL**" in card["detail"]
    assert "Fink 2006 JCEM" in card["detail"]
    reasons = card["overrideReasons"]
    assert reasons and all(
        set(r) == {"system", "code", "display"} and r["display"] for r in reasons
    )
    assert json.loads(json.dumps(card)) == card  # plain JSON, nothing null or empty
    assert all(value not in (None, "", [], {}) for value in card.values())


@pytest.mark.parametrize("severity", list(Severity))
def test_the_indicator_is_the_severity(severity: Severity) -> None:
    assert card_for(finding("dexa-due", severity), CTX)["indicator"] == severity.value


def test_summaries_stay_under_140_characters() -> None:
    long = "A" * 140
    card = card_for(finding("dexa-due", summary=long), CTX)
    assert len(card["summary"]) < 140
    assert card["summary"].endswith("…")
    assert short_summary("short  and\nsimple") == "short and simple"


@pytest.mark.parametrize("rule_id", sorted(SUGGESTS))
def test_suggestions_create_valid_draft_service_requests(rule_id: str) -> None:
    card = card_for(finding(rule_id), CTX)
    suggestions = card["suggestions"]
    assert len(suggestions) == len(SUGGESTS[rule_id])
    assert card["selectionBehavior"] in ("at-most-one", "any")
    for suggestion, order in zip(suggestions, SUGGESTS[rule_id], strict=True):
        uuid.UUID(suggestion["uuid"])
        assert suggestion["label"] == order.label
        (action,) = suggestion["actions"]
        assert action["type"] == "create"
        assert action["description"]
        resource = action["resource"]
        ServiceRequest.model_validate(resource)  # valid FHIR R4 (R4B model)
        assert resource["resourceType"] == "ServiceRequest"
        assert resource["status"] == "draft"
        assert resource["intent"] in ("order", "proposal")
        assert resource["subject"] == {"reference": "Patient/p1"}
        assert resource["encounter"] == {"reference": "Encounter/enc-9"}
        assert resource["requester"] == {"reference": "Practitioner/dr-1"}
        codes = [(c["system"], c["code"]) for c in resource["code"]["coding"]]
        assert codes == [(c.system, c.code) for c in order.codings]
        category = resource["category"][0]["coding"][0]
        assert category["system"] == "http://snomed.info/sct"
        assert (
            category["code"] == {"laboratory": "108252007", "imaging": "363679005"}[order.category]
        )


def test_the_dxa_suggestion_orders_a_bone_density_study_by_cpt_snomed_and_loinc() -> None:
    resource = card_for(finding("dexa-due"), CTX)["suggestions"][0]["actions"][0]["resource"]
    systems = {c["system"]: c["code"] for c in resource["code"]["coding"]}
    assert systems == {
        "http://www.ama-assn.org/go/cpt": "77080",
        "http://snomed.info/sct": "312681000",
        "http://loinc.org": "38268-9",
    }


def test_the_liver_suggestion_orders_a_hepatic_function_panel() -> None:
    resource = card_for(finding("liver-panel-due"), CTX)["suggestions"][0]["actions"][0]["resource"]
    assert resource["code"]["coding"][0]["code"] == "24325-3"


def test_a_card_without_orders_has_no_suggestions_and_no_selection_behaviour() -> None:
    card = card_for(finding("anastrozole-intent", Severity.INFO), CTX)
    assert "suggestions" not in card
    assert "selectionBehavior" not in card


def test_the_suggestion_intent_is_a_setting() -> None:
    ctx = CardContext(
        base_url="https://x.example", patient_id="p1", now=NOW, suggestion_intent="proposal"
    )
    resource = card_for(finding("dexa-due"), ctx)["suggestions"][0]["actions"][0]["resource"]
    assert resource["intent"] == "proposal"
    assert "requester" not in resource


def test_links_open_the_rule_page_and_the_smart_app_with_the_rule_in_app_context() -> None:
    absolute, smart = card_for(finding("dexa-due"), CTX)["links"]
    assert absolute["type"] == "absolute"
    assert absolute["url"] == "https://cds.example.org/about/rules/dexa-due"
    assert "appContext" not in absolute
    assert smart["type"] == "smart"
    assert smart["url"] == "https://cds.example.org/launch.html"
    assert json.loads(smart["appContext"]) == {"rule": "dexa-due"}
    assert all(link["label"] for link in (absolute, smart))


def test_data_gaps_and_source_are_added_once() -> None:
    plain = card_for(
        finding("estradiol-low", data_gaps=("Estradiol in nmol/mL: unit unknown",)), CTX
    )
    assert "**Left out:**\n- Estradiol in nmol/mL: unit unknown" in plain["detail"]
    assert plain["detail"].count("Fink 2006 JCEM") == 1
    already = finding(
        "estradiol-low",
        detail="- x\n\n**Left out:**\n- gap one\n\n*Source: Fink 2006 JCEM*",
        data_gaps=("gap one",),
    )
    detail = card_for(already, CTX)["detail"]
    assert detail.count("gap one") == 1
    assert detail.count("Fink 2006 JCEM") == 1


def test_cards_and_suggestions_get_fresh_uuids() -> None:
    first, second = card_for(finding("dexa-due"), CTX), card_for(finding("dexa-due"), CTX)
    assert first["uuid"] != second["uuid"]
    assert first["suggestions"][0]["uuid"] != second["suggestions"][0]["uuid"]


def test_the_data_incomplete_card_names_what_was_missing_and_what_was_skipped() -> None:
    card = data_incomplete_card([("liver tests", "timeout")], ["liver-panel-due"], CTX)
    assert card["indicator"] == "info"
    assert "liver tests" in card["summary"] and len(card["summary"]) < 140
    assert "- liver tests: timeout" in card["detail"]
    assert "`liver-panel-due`" in card["detail"]
    assert card["source"]["topic"]["code"] == "data-incomplete"


# The coded part of a suggestion is validated with fhir.resources once per order and intent;
# the references and texts around it are checked by the card builder itself. These hold the
# two together: whatever a request can put in them, a resource that leaves is valid FHIR, and
# one that is left out would not have been.
_ids = st.from_regex(r"\A[A-Za-z0-9\-.]{1,64}\Z")
_text = st.text(max_size=40)


@settings(max_examples=150, deadline=None)
@given(
    patient_id=_ids,
    encounter_id=st.none() | _text,
    user_reference=st.none() | _text | _text.map(lambda t: f"Practitioner/{t}"),
    summary=_text,
    product_label=_text,
    intent=st.sampled_from(["order", "proposal", "plan", "not-an-intent"]),
    rule_id=st.sampled_from(sorted(SUGGESTS)),
)
def test_a_suggested_service_request_is_sent_exactly_when_it_is_valid_fhir(
    patient_id: str,
    encounter_id: str | None,
    user_reference: str | None,
    summary: str,
    product_label: str,
    intent: str,
    rule_id: str,
) -> None:
    ctx = CardContext(
        base_url="https://cds.example.org",
        patient_id=patient_id,
        now=NOW,
        product_label=product_label,
        user_reference=user_reference,
        encounter_id=encounter_id,
        suggestion_intent=intent,
    )
    the_finding = finding(rule_id, summary=summary)
    for order in SUGGESTS[rule_id]:
        resource = service_request_for(order, the_finding, ctx)
        if resource is not None:
            ServiceRequest.model_validate(resource)
            assert resource["subject"] == {"reference": f"Patient/{patient_id}"}
            assert resource["intent"] == intent
        else:
            with pytest.raises(ValidationError):
                ServiceRequest.model_validate(_as_built_before_caching(order, the_finding, ctx))


def _as_built_before_caching(
    order: SuggestedOrder, the_finding: Finding, ctx: CardContext
) -> dict[str, Any]:
    """The whole resource, assembled without the builder's checks, for fhir.resources."""
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": ctx.suggestion_intent,
        "code": {
            "coding": [
                {"system": c.system, "code": c.code, "display": c.display} for c in order.codings
            ],
            "text": order.codings[0].display,
        },
        "subject": {"reference": f"Patient/{ctx.patient_id}"},
        "authoredOn": ctx.now.isoformat(),
        "reasonCode": [{"text": short_summary(the_finding.summary)}],
        "note": [{"text": f"Suggested by {ctx.product_label} (rule {the_finding.rule_id})."}],
    }
    if ctx.encounter_id:
        resource["encounter"] = {"reference": f"Encounter/{ctx.encounter_id}"}
    if ctx.user_reference and ctx.user_reference.split("/", 1)[0] in (
        "Practitioner",
        "PractitionerRole",
    ):
        resource["requester"] = {"reference": ctx.user_reference}
    return resource


def test_each_card_gets_its_own_copy_of_a_suggested_resource() -> None:
    first = card_for(finding("dexa-due"), CTX)["suggestions"][0]["actions"][0]["resource"]
    first["code"]["coding"].clear()
    second = card_for(finding("dexa-due"), CTX)["suggestions"][0]["actions"][0]["resource"]
    assert len(second["code"]["coding"]) == 3
