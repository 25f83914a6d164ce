"""By default discovery publishes only CDS Hooks 2.0 prefetch tokens ("MUST contain only the
qualified path to a hook context field or one of the following user identifiers"); the
relative-date token of the 3.0 ballot is an opt-in, and a strict 2.0 client that prefetches
the default templates gets a full answer."""

from __future__ import annotations

import re
from collections.abc import Callable

from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_fhir_stub import search, searchset
from tests.cds_hooks.cds_helpers import PATIENT_VIEW, Keys, call, hook_body, trt_man_chart

TOKEN = re.compile(r"\{\{(.*?)\}\}")
CDS_HOOKS_2_TOKEN = re.compile(
    r"^(context\.[A-Za-z]+|userPractitionerId|userPractitionerRoleId|userPatientId"
    r"|userRelatedPersonId)$"
)


def published_templates(client: FlaskClient) -> dict[str, str]:
    services = client.get("/cds-services").json["services"]
    assert len(services) == 3 and all(s["prefetch"] == services[0]["prefetch"] for s in services)
    templates: dict[str, str] = services[0]["prefetch"]
    return templates


def test_default_discovery_uses_only_cds_hooks_2_prefetch_tokens(client: FlaskClient) -> None:
    tokens = {
        t for template in published_templates(client).values() for t in TOKEN.findall(template)
    }
    assert tokens == {"context.patientId"}
    assert all(CDS_HOOKS_2_TOKEN.match(token) for token in tokens)


def test_relative_dates_are_published_when_switched_on(
    make_settings: Callable[..., ProductSettings],
) -> None:
    client = create_app(make_settings(prefetch_relative_dates=True)).test_client()
    templates = published_templates(client)
    assert templates["estradiol"].endswith("&date=ge{{today() - 730 days}}")
    assert "today()" not in templates["patient"]


def test_a_strict_2_0_client_prefetching_the_default_templates_gets_every_card(
    client: FlaskClient, keys: Keys
) -> None:
    """No fhirServer: the answer comes from the prefetch alone, with no 412 and no gap."""
    chart = trt_man_chart()
    prefetch = {}
    for key, template in published_templates(client).items():
        query = template.replace("{{context.patientId}}", "p1")
        found = search(chart, query)
        prefetch[key] = (found[0] if found else None) if "?" not in query else searchset(found)
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    assert response.status_code == 200
    found_topics = {card["source"]["topic"]["code"] for card in response.json["cards"]}
    assert {"estradiol-low", "liver-panel-due", "anastrozole-intent"} <= found_topics
    assert "data-incomplete" not in found_topics
