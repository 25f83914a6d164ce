"""A course with no start date (authoredOn, boundsPeriod and validityPeriod are all optional in
FHIR R4) next to a dated one: the chart draws it as "start not recorded", and the page opens."""

from __future__ import annotations

import copy
import xml.etree.ElementTree as ET
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from clinical import DEFAULT_SETTINGS, build_record
from clinical.intent import infer_intent
from smartapp.trend import trend_chart
from tests.conftest import read_fixture, resources_of
from tests.smartapp.smart_helpers import HARLAN, LOW_E2, Sandbox, launch_and_sign_in, scenario_now

SVG = "{http://www.w3.org/2000/svg}"


def with_an_undated_course(resources: list[dict[str, Any]], order_id: str) -> None:
    """Add a stopped copy of the order with every date that could start its course removed."""
    undated = copy.deepcopy(next(r for r in resources if r.get("id") == order_id))
    undated["id"] = f"{order_id}-undated"
    undated["status"] = "stopped"
    undated.pop("authoredOn")
    undated.pop("dispenseRequest", None)
    for dosage in undated["dosageInstruction"]:
        dosage["timing"]["repeat"].pop("boundsPeriod", None)
    resources.append(undated)


@pytest.mark.parametrize(
    ("order_id", "drug"),
    [("mr-harlan-anastrozole", "anastrozole"), ("mr-harlan-testo", "testosterone")],
)
def test_an_undated_course_beside_a_dated_one_is_drawn_as_start_not_recorded(
    order_id: str, drug: str
) -> None:
    resources = resources_of(read_fixture(LOW_E2))
    with_an_undated_course(resources, order_id)
    now = scenario_now(LOW_E2)
    record = build_record(resources, now)
    assessment = infer_intent(record, now)
    chart = trend_chart(record, assessment.intent if assessment else None, DEFAULT_SETTINGS, now)
    bars = [
        r.attrib
        for r in ET.fromstring(chart.svg).iter(f"{SVG}rect")
        if r.attrib.get("data-drug") == drug
    ]
    assert sorted(bar["data-start"] for bar in bars)[0] == ""  # the undated one
    assert len(bars) == 2
    assert "start not recorded" in chart.svg


def test_the_page_opens_for_a_patient_with_an_undated_anastrozole_course(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    with_an_undated_course(sandbox.fhir.patients[HARLAN], "mr-harlan-anastrozole")
    response = client.get(launch_and_sign_in(client, sandbox))
    assert response.status_code == 200
    assert "start not recorded" in response.get_data(as_text=True)
