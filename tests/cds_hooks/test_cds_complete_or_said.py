"""The chart is complete, or the card says it is not: the token's scope, paged prefetch,
keys left out, drugs named by reference, and where the token may go. The EHR's FHIR server
is a stub on 127.0.0.1 (real HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from cds_hooks.services import prefetch_templates
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_fhir_stub import StubFhirServer, prefetch_for, searchset
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    NOW,
    ORDER_SELECT,
    PATIENT_VIEW,
    RXNORM,
    Keys,
    anastrozole,
    bundle,
    call,
    empty_prefetch,
    hook_body,
    patient,
    trt_man_chart,
)

TOKEN = "fhir-token-complete-9c1d"


@pytest.fixture(scope="module")
def fhir_server() -> Iterator[StubFhirServer]:
    server = StubFhirServer(page_size=50).start()
    yield server
    server.stop()


@pytest.fixture
def fhir(fhir_server: StubFhirServer) -> StubFhirServer:
    fhir_server.resources = trt_man_chart()
    fhir_server.requests.clear()
    return fhir_server


@pytest.fixture
def client(fhir: StubFhirServer, make_settings: Callable[..., ProductSettings]) -> FlaskClient:
    jwks = str(make_settings().issuers[0].jwks_file)
    settings = make_settings(
        issuers=[{"iss": ISSUER, "jwks_file": jwks, "fhir_servers": [fhir.base_url]}],
        fhir_deadline_seconds=5.0,
    )
    return create_app(settings).test_client()


def with_access(fhir: StubFhirServer, scope: str | None = "patient/*.read", **body: Any) -> Any:
    request = hook_body(**body)
    request["fhirServer"] = fhir.base_url
    request["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer"}
    if scope is not None:
        request["fhirAuthorization"]["scope"] = scope
    return request


def topics(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.json
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


def asked_types(fhir: StubFhirServer) -> set[str]:
    return {path.removeprefix("/fhir/").split("?")[0].split("/")[0] for path, _ in fhir.requests}


def full_prefetch() -> dict[str, Any]:
    return prefetch_for(trt_man_chart(), prefetch_templates(), "p1", NOW.date())


# -- the token's scope ------------------------------------------------------------------------------


def test_no_query_is_sent_that_the_tokens_scope_cannot_make_and_the_card_says_so(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    scope = ("patient/Patient.read patient/MedicationRequest.read patient/Condition.read "
             "patient/MedicationStatement.read launch openid")  # fmt: skip
    found = topics(call(client, keys, PATIENT_VIEW, with_access(fhir, scope)))
    assert asked_types(fhir) == {"Patient", "MedicationRequest", "MedicationStatement", "Condition"}
    assert "estradiol-low" not in found  # its results could not be asked for: not judged
    detail = found["data-incomplete"]["detail"]
    assert (
        "estradiol and testosterone results: the EHR's token may not search Observation" in detail
    )
    assert "`estradiol-low`" in detail


@pytest.mark.parametrize(
    "scope",
    [
        "patient/*.rs",
        "patient/*.r patient/*.s",  # a grant split as .r and .s is .rs
        "user/*.*",
        None,  # no scope: it says nothing, every query is tried
    ],
)
def test_a_grant_that_covers_every_query_gets_every_card(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer, scope: str | None
) -> None:
    found = topics(call(client, keys, PATIENT_VIEW, with_access(fhir, scope)))
    assert "estradiol-low" in found and "data-incomplete" not in found
    assert "Observation" in asked_types(fhir)


def test_a_grant_that_may_read_but_not_search_is_refused_the_searches(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    response = call(client, keys, PATIENT_VIEW, with_access(fhir, "patient/*.r"))
    assert response.status_code == 412  # medication orders and conditions cannot be searched
    assert asked_types(fhir) == {"Patient"}
    assert "may not search MedicationRequest" in response.json["message"]


# -- where the token goes ---------------------------------------------------------------------------


def test_a_fhir_server_with_trailing_space_is_queried_at_its_registered_base(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    body = with_access(fhir)
    body["fhirServer"] = fhir.base_url + "  "
    assert "estradiol-low" in topics(call(client, keys, PATIENT_VIEW, body))
    assert fhir.requests and all(path.startswith("/fhir/") for path, _ in fhir.requests)


def test_a_fhir_server_whose_scheme_is_in_capitals_is_the_registered_one(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    body = with_access(fhir)
    body["fhirServer"] = fhir.base_url.replace("http://", "HTTP://")
    assert "estradiol-low" in topics(call(client, keys, PATIENT_VIEW, body))


def test_search_values_reach_the_fhir_server_percent_encoded(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    call(client, keys, PATIENT_VIEW, with_access(fhir))
    searches = [path.partition("?")[2] for path, _ in fhir.requests if "?" in path]
    assert searches and not any("//" in query or "|" in query for query in searches)
    assert any("code=http%3A%2F%2Floinc.org%7C2243-4" in query for query in searches)


# -- paged prefetch ---------------------------------------------------------------------------------


def paged(fhir: StubFhirServer, next_path: str) -> dict[str, Any]:
    """The estradiol key as its first page: nothing on it, more on the next."""
    prefetch = full_prefetch()
    prefetch["estradiol"] = searchset(
        [], next_url=f"{fhir.base_url.rsplit('/fhir', 1)[0]}{next_path}"
    )
    return prefetch


def test_the_rest_of_a_paged_prefetch_is_read_with_the_token(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    next_path = "/fhir/Observation?patient=p1&code=http%3A%2F%2Floinc.org%7C2243-4"
    body = with_access(fhir, prefetch=paged(fhir, next_path))
    found = topics(call(client, keys, PATIENT_VIEW, body))
    assert "estradiol-low" in found and "data-incomplete" not in found
    (followed,) = [(path, auth) for path, auth in fhir.requests if path == next_path]
    assert followed == (next_path, f"Bearer {TOKEN}")


def test_a_next_link_off_the_registered_base_is_not_followed_and_is_a_gap(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    body = with_access(fhir, prefetch=paged(fhir, "/other/Observation?patient=p1"))
    found = topics(call(client, keys, PATIENT_VIEW, body))
    assert not any("/other/" in path for path, _ in fhir.requests)
    assert "estradiol-low" not in found
    assert (
        "its next link is not on the registered FHIR server" in found["data-incomplete"]["detail"]
    )


def test_without_fhir_access_a_paged_core_slice_means_nothing_can_be_judged(
    client: FlaskClient, keys: Keys
) -> None:
    prefetch = full_prefetch()
    prefetch["medicationRequests"]["link"] = [{"relation": "next", "url": "https://x/fhir/M?p=2"}]
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    assert response.status_code == 412
    assert response.json["missingPrefetch"] == ["medicationRequests"]
    assert "only the first page was sent" in response.json["message"]


# -- keys left out ----------------------------------------------------------------------------------


def test_a_left_out_key_for_a_patient_on_no_watched_drug_adds_no_card(
    client: FlaskClient, keys: Keys
) -> None:
    prefetch = empty_prefetch()
    prefetch["patient"] = patient()
    del prefetch["liverTests"]
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    assert topics(response) == {}  # nothing this service watches: nothing to say


def test_a_left_out_optional_key_changes_nothing(client: FlaskClient, keys: Keys) -> None:
    prefetch = full_prefetch()
    del prefetch["boneDensityImaging"], prefetch["medicationStatements"]
    assert "data-incomplete" not in topics(
        call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch))
    )


# -- drugs named by reference -----------------------------------------------------------------------


def by_reference(
    order: dict[str, Any], reference: str, display: str | None = None
) -> dict[str, Any]:
    order = {key: value for key, value in order.items() if key != "medicationCodeableConcept"}
    order["medicationReference"] = {"reference": reference}
    if display:
        order["medicationReference"]["display"] = display
    return order


ANASTROZOLE_MEDICATION = {
    "resourceType": "Medication",
    "id": "med-ana",
    "code": {
        "coding": [{"system": RXNORM, "code": "199224", "display": "anastrozole 1 MG Oral Tablet"}]
    },
}


def prefetch_with_orders(*orders: dict[str, Any]) -> dict[str, Any]:
    prefetch = full_prefetch()
    prefetch["medicationRequests"] = bundle(*orders)
    return prefetch


def test_a_contained_medication_is_read_without_asking(client: FlaskClient, keys: Keys) -> None:
    chart = trt_man_chart()
    order = by_reference(chart[1], "#m")
    order["contained"] = [{**ANASTROZOLE_MEDICATION, "id": "m"}]
    prefetch = prefetch_with_orders(order, chart[2])
    assert "estradiol-low" in topics(call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch)))


def test_a_medication_in_the_bundle_by_its_urn_uuid_is_read(
    client: FlaskClient, keys: Keys
) -> None:
    chart = trt_man_chart()
    prefetch = prefetch_with_orders(by_reference(chart[1], "urn:uuid:5d7f"), chart[2])
    medication = {k: v for k, v in ANASTROZOLE_MEDICATION.items() if k != "id"}
    prefetch["medicationRequests"]["entry"].append(
        {"fullUrl": "urn:uuid:5d7f", "resource": medication}
    )
    assert "estradiol-low" in topics(call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch)))


def test_a_medication_the_prefetch_lacks_is_read_from_the_fhir_server(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    fhir.resources.append(ANASTROZOLE_MEDICATION)
    chart = trt_man_chart()
    body = with_access(
        fhir, prefetch=prefetch_with_orders(by_reference(chart[1], "Medication/med-ana"), chart[2])
    )
    assert "estradiol-low" in topics(call(client, keys, PATIENT_VIEW, body))
    asked = [unquote(path) for path, _ in fhir.requests if path.startswith("/fhir/Medication?")]
    assert asked == ["/fhir/Medication?_id=med-ana&_count=1"]


def test_a_drug_named_only_by_a_reference_that_cannot_be_had_is_a_412_not_silence(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    chart = trt_man_chart()
    prefetch = prefetch_with_orders(by_reference(chart[1], "Medication/med-gone"), chart[2])
    response = call(client, keys, PATIENT_VIEW, with_access(fhir, prefetch=prefetch))
    assert response.status_code == 412
    assert response.json["missingPrefetch"] == ["medicationReferences"]
    assert "the EHR does not have them" in response.json["message"]


def test_a_reference_with_a_name_is_read_by_that_name_when_the_medication_cannot_be_had(
    client: FlaskClient, keys: Keys
) -> None:
    chart = trt_man_chart()
    order = by_reference(chart[1], "Medication/med-gone", display="anastrozole 1 mg tablet")
    prefetch = prefetch_with_orders(order, chart[2])
    found = topics(call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch)))
    assert "anastrozole-intent" in found and "data-incomplete" not in found


def test_a_selected_draft_naming_its_drug_by_reference_is_judged_as_that_drug(
    client: FlaskClient, keys: Keys, fhir: StubFhirServer
) -> None:
    fhir.resources.append(ANASTROZOLE_MEDICATION)
    chart = trt_man_chart()
    new_order = by_reference({**anastrozole("rx-new"), "status": "draft"}, "Medication/med-ana")
    body = with_access(
        fhir,
        hook="order-select",
        prefetch=prefetch_with_orders(chart[2]),
        draftOrders=bundle(new_order),
        selections=["MedicationRequest/rx-new"],
    )
    found = topics(call(client, keys, ORDER_SELECT, body))
    assert "anastrozole-intent" in found  # an aromatase inhibitor ordered: every card
