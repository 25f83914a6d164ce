"""Prefetch values are checked against their template (CDS Hooks 2.0: "It is the CDS Service's
responsibility to check prefetched data against its template"): an error the client got
instead of the data is fetched again when possible, else a gap, never "none on record"."""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from tests.cds_hooks.cds_helpers import (
    PATIENT_VIEW,
    Keys,
    bundle,
    call,
    estradiol_result,
    hook_body,
    patient,
    trt_man_chart,
    trt_man_prefetch,
)
from tests.cds_hooks.test_cds_fetch import fake_fhir, topics, with_fhir

ESTRADIOL_RULES = {"estradiol-low", "estradiol-high", "estradiol-monitoring-due"}
ERROR = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "timeout", "diagnostics": "search timed out"}],
}


def searchset_reporting(severity: str, *resources: dict[str, Any]) -> dict[str, Any]:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": "processing"}],
    }
    searchset = bundle(*resources)
    searchset["entry"].append({"resource": outcome, "search": {"mode": "outcome"}})
    return searchset


def prefetch_with(**values: Any) -> dict[str, Any]:
    prefetch = trt_man_prefetch()
    prefetch.update(values)
    return prefetch


def incomplete_card(response: Any) -> dict[str, Any]:
    (card,) = [
        c for c in response.json["cards"] if c["source"]["topic"]["code"] == "data-incomplete"
    ]
    return card


# -- malformed prefetch: a 400, as for draftOrders -----------------------------------------------


@pytest.mark.parametrize("entry", [5, True, 1.5, "entries", {"resource": {}}])
def test_a_prefetch_bundle_whose_entry_is_not_a_list_is_a_400(
    client: FlaskClient, keys: Keys, entry: Any
) -> None:
    conditions = {"resourceType": "Bundle", "type": "searchset", "entry": entry}
    response = call(
        client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch_with(conditions=conditions))
    )
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert {"field": "prefetch.conditions", "problem": "entry must be a list"} in response.json[
        "details"
    ]


def test_a_prefetch_bundle_with_null_or_no_entry_is_an_empty_result(
    client: FlaskClient, keys: Keys
) -> None:
    empty = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    body = hook_body(prefetch=prefetch_with(conditions=empty, dxaOrders={**empty, "entry": None}))
    response = call(client, keys, PATIENT_VIEW, body)
    assert response.status_code == 200
    assert "data-incomplete" not in topics(response)


# -- an error or the wrong data, with no FHIR access: a gap, not "none on record" ------------------


@pytest.mark.parametrize(
    "estradiol",
    [
        ERROR,
        searchset_reporting("error"),
        searchset_reporting("fatal"),
        estradiol_result("e2-1", 11.0),  # a bare Observation: a search is answered by a Bundle
    ],
    ids=["OperationOutcome", "searchset with an error outcome", "fatal outcome", "not a Bundle"],
)
def test_an_unusable_prefetch_withholds_its_rules_and_says_so(
    client: FlaskClient, keys: Keys, estradiol: dict[str, Any]
) -> None:
    response = call(
        client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch_with(estradiol=estradiol))
    )
    assert response.status_code == 200
    found = set(topics(response))
    assert not found & ESTRADIOL_RULES  # neither "none since ..." nor a guess
    assert {"anastrozole-intent", "liver-panel-due"} <= found  # the rest is still judged
    card = incomplete_card(response)
    assert "estradiol and testosterone results" in card["summary"]
    assert "`estradiol-monitoring-due`" in card["detail"]


def test_a_searchset_with_only_an_informational_outcome_is_used(
    client: FlaskClient, keys: Keys
) -> None:
    estradiol = searchset_reporting("information", estradiol_result("e2-1", 11.0))
    response = call(
        client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch_with(estradiol=estradiol))
    )
    assert "estradiol-low" in topics(response)
    assert "data-incomplete" not in topics(response)


@pytest.mark.parametrize(
    "value",
    [ERROR, trt_man_chart()[1], bundle()],
    ids=["OperationOutcome", "a MedicationRequest", "an empty Bundle"],
)
def test_an_unusable_patient_prefetch_without_fhir_access_is_a_412(
    client: FlaskClient, keys: Keys, value: dict[str, Any]
) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch_with(patient=value)))
    assert response.status_code == 412
    assert response.json["missingPrefetch"] == ["patient"]
    assert "sex-undetermined" not in response.get_data(as_text=True)


def test_the_patient_inside_a_bundle_answers_the_patient_template(
    client: FlaskClient, keys: Keys
) -> None:
    response = call(
        client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch_with(patient=bundle(patient())))
    )
    assert response.status_code == 200
    assert "estradiol-low" in topics(response)


# -- an error or the wrong data, with FHIR access: fetched ---------------------------------------


@pytest.mark.parametrize(
    "key, value",
    [
        ("estradiol", ERROR),
        ("estradiol", searchset_reporting("error")),
        ("patient", ERROR),
        ("patient", estradiol_result("e2-1", 11.0)),
    ],
    ids=[
        "estradiol OperationOutcome",
        "estradiol error outcome",
        "patient OperationOutcome",
        "patient an Observation",
    ],
)
def test_an_unusable_prefetch_is_fetched_from_the_fhir_server(
    client: FlaskClient, keys: Keys, key: str, value: dict[str, Any]
) -> None:
    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart())
        response = call(
            client, keys, PATIENT_VIEW, with_fhir(prefetch=prefetch_with(**{key: value}))
        )
        asked = [c.request.url for c in mock.calls]
    assert response.status_code == 200
    assert {"estradiol-low", "anastrozole-intent"} <= set(topics(response))
    assert "data-incomplete" not in topics(response)
    if key == "patient":
        assert any(url.endswith("/Patient/p1") for url in asked)
    else:
        assert any("2243-4" in url for url in asked)


def test_an_unusable_prefetch_whose_fetch_fails_is_a_gap(client: FlaskClient, keys: Keys) -> None:
    def estradiol_down(path: str, params: dict[str, str]) -> tuple[int, dict[str, str], str] | None:
        if path == "Observation" and "2243-4" in params.get("code", ""):
            return 503, {}, json.dumps(ERROR)
        return None

    with responses.RequestsMock() as mock:
        fake_fhir(mock, trt_man_chart(), estradiol_down)
        response = call(
            client, keys, PATIENT_VIEW, with_fhir(prefetch=prefetch_with(estradiol=ERROR))
        )
    assert response.status_code == 200
    assert not set(topics(response)) & ESTRADIOL_RULES
    assert "estradiol and testosterone results" in incomplete_card(response)["summary"]
