"""GET /cds-services: the CDS Hooks 2.0 discovery document and its prefetch templates."""

from __future__ import annotations

import re
from datetime import date
from urllib.parse import parse_qsl, urlencode

import pytest
from flask.testing import FlaskClient

from cds_hooks.services import discovery_document, prefetch_templates
from clinical.rules import CATALOGUE
from clinical.valuesets import load as load_valuesets
from tests.sandbox.launcher_proxy import launcher_url

SERVICES = {
    "anastrozole-monitor-patient-view": "patient-view",
    "anastrozole-monitor-order-select": "order-select",
    "anastrozole-monitor-order-sign": "order-sign",
}
# CDS Hooks 2.0 prefetch tokens: context fields, user ids; plus the relative date token
TOKEN = re.compile(r"\{\{(.*?)\}\}")
ALLOWED_TOKENS = re.compile(r"^(context\.patientId|today\(\) - \d+ days)$")


def test_discovery_lists_the_three_services_with_the_required_fields(client: FlaskClient) -> None:
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    services = response.json["services"]
    assert {s["id"]: s["hook"] for s in services} == SERVICES
    for service in services:
        assert set(service) >= {"hook", "title", "description", "id", "prefetch"}
        for field in ("hook", "title", "description", "id"):
            assert isinstance(service[field], str) and service[field]
        assert all(isinstance(v, str) and v for v in service["prefetch"].values())


def test_no_discovery_value_is_null_or_empty() -> None:
    def walk(value: object) -> None:
        assert value not in (None, "", [], {})
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(discovery_document(relative_dates=True))


@pytest.mark.parametrize("template", prefetch_templates(), ids=lambda t: t.key)
def test_every_template_is_narrow_by_patient_and_uses_only_known_tokens(template: object) -> None:
    text = template.template(relative_dates=True)  # type: ignore[attr-defined]
    tokens = TOKEN.findall(text)
    assert "context.patientId" in tokens
    assert all(ALLOWED_TOKENS.match(token) for token in tokens), tokens
    resource_type, _, query = text.partition("?")
    if not query:
        assert resource_type == "Patient/{{context.patientId}}"
        return
    params = dict(parse_qsl(query))
    assert params["patient"] == "{{context.patientId}}"
    assert 0 < int(params["_count"]) <= 200


@pytest.mark.parametrize(
    ("key", "valueset"),
    [
        ("estradiol", "estradiol-serum"),
        ("liverTests", "hepatic-function-panel"),
        ("lipidTests", "lipid-panel-evidence"),
        ("glycemicTests", "hba1c"),
        ("boneDensity", "dxa-bmd-observations"),
        ("dxaOrders", "dxa-procedure"),
    ],
)
def test_result_templates_ask_by_the_value_set_codes_newest_first(key: str, valueset: str) -> None:
    template = next(t for t in prefetch_templates() if t.key == key)
    params = dict(parse_qsl(template.template(relative_dates=True).partition("?")[2]))
    codes = set(params["code"].split(","))
    assert {f"{c.system}|{c.code}" for c in load_valuesets().codes(valueset)} <= codes
    if key != "dxaOrders":
        assert params["_sort"] == "-date"
        assert re.fullmatch(r"ge\{\{today\(\) - \d+ days\}\}", params["date"])


def test_relative_dates_can_be_switched_off_for_strict_clients(make_settings: object) -> None:
    from anastrozole_cds.app import create_app

    client = create_app(make_settings(prefetch_relative_dates=False)).test_client()  # type: ignore[operator]
    for service in client.get("/cds-services").json["services"]:
        assert all("today()" not in template for template in service["prefetch"].values())


def test_the_service_resolves_its_own_templates_like_a_client() -> None:
    template = next(t for t in prefetch_templates() if t.key == "estradiol")
    query = template.resolve("pt/../1 x", date(2026, 11, 1))
    assert query.startswith("Observation?patient=pt%2F..%2F1%20x&")
    assert query.endswith("&date=ge2024-11-01")
    assert "{{" not in query


def test_every_slice_of_the_chart_a_rule_reads_is_asked_for_by_a_template() -> None:
    """A rule reading data no prefetch template asks for would be judged on "none on record"
    whenever the EHR prefetches: each slice a rule reads is some template's."""
    provided = {slice_ for template in prefetch_templates() for slice_ in template.provides}
    read = {slice_ for rule in CATALOGUE for slice_ in rule.inputs}
    assert read - provided == set()


@pytest.mark.parametrize("template", prefetch_templates(), ids=lambda t: t.key)
def test_published_templates_survive_a_proxy_and_a_client_that_re_encodes(template: object) -> None:
    """docs/cds-hooks.md, "Prefetch": search values are published percent-encoded. A client
    that fills the token and sends the rest as it is passes a proxy that collapses `//`
    (smart-launcher-v2's) unchanged; one that parses and re-encodes gets the values meant."""
    text = template.template(relative_dates=False)  # type: ignore[attr-defined]
    filled = text.replace("{{context.patientId}}", "p1")
    assert (
        launcher_url("https://ehr.example/fhir", "/" + filled)
        == f"https://ehr.example/fhir/{filled}"
    )
    query = filled.partition("?")[2]
    values = dict(parse_qsl(query))
    raw = template.query.replace("{{context.patientId}}", "p1")  # type: ignore[attr-defined]
    assert values == dict(parse_qsl(raw.partition("?")[2], keep_blank_values=True))
    assert urlencode(values, safe=",") == query  # form encoding writes what is published


def test_the_medication_templates_bring_the_medications_they_name() -> None:
    queries = {t.key: dict(parse_qsl(t.template(relative_dates=False).partition("?")[2]))
               for t in prefetch_templates()}  # fmt: skip
    assert queries["medicationRequests"]["_include"] == "MedicationRequest:medication"
    assert queries["medicationStatements"]["_include"] == "MedicationStatement:medication"
