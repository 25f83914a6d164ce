"""End to end against a real FHIR R4 server (sekmet-fhir, pinned in the dev extra).

The synthetic patients are loaded with `anastrozole-cds load` (dates moved to today), then
every hook is played with `anastrozole-cds check` for every patient, with the prefetch filled
from the server and without it (the service queries the server), in process; and over real
HTTP against `anastrozole-cds serve`. Each patient's Bundle states the cards to expect.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner

from anastrozole_cds.cli import main
from cds_hooks.policy import EXTENSION_RULES
from ehr.client import FhirClient
from sandbox.ehr_client import (
    discovery_prefetch,
    fetch_prefetch,
    hook_context,
    hook_request,
    resolve_prefetch,
)
from sandbox.fhir_server import FhirServerError, start_fhir_server
from sandbox.loader import load_patient
from sandbox.patients import (
    REFERENCE_NOW,
    SyntheticPatient,
    all_patients,
    bundle_resources,
    days_to_shift,
)
from sandbox.processes import free_port, start_server, stop_process
from smartapp.fetch import fetch_chart
from tests.cds_hooks.card_defaults import cards_by_default, intent_is_unclear
from tests.cds_hooks.cds_helpers import ISSUER, make_keys
from tests.security.sec_live_server import live_service

pytestmark = pytest.mark.integration

PATIENTS = all_patients()


@pytest.fixture(scope="module")
def fhir_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """sekmet-fhir on a free port with a temporary SQLite store (sandbox.fhir_server)."""
    try:
        server = start_fhir_server(tmp_path_factory.mktemp("sekmet"))
    except FhirServerError as error:
        pytest.fail(str(error))
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def loaded(fhir_server: str) -> str:
    result = CliRunner().invoke(main, ["load", "--fhir-server", fhir_server])
    assert result.exit_code == 0, result.output
    return fhir_server


def _cards(output: str) -> dict[str, str]:
    response = orjson.loads(output)
    return {card["source"]["topic"]["code"]: card["indicator"] for card in response["cards"]}


def _shown(patient: SyntheticPatient, hook: str = "patient-view") -> dict[str, str]:
    """The cards the Bundle's stated findings make at `hook`, with the default [cards] table."""
    stated = patient.expected_cards if hook == "patient-view" else patient.renewal_cards
    unclear = intent_is_unclear(bundle_resources(patient.bundle), REFERENCE_NOW)
    return cards_by_default(hook, stated, intent_unclear=unclear)


def _check(*args: str) -> dict[str, str]:
    result = CliRunner().invoke(main, ["check", "--json", *args])
    assert result.exit_code == 0, result.output
    return _cards(result.stdout)


def test_loading_twice_keeps_one_copy_of_each_patient(loaded: str) -> None:
    again = CliRunner().invoke(main, ["load", "--fhir-server", loaded, PATIENTS[0].key])
    assert again.exit_code == 0, again.output
    patient = PATIENTS[0]
    found = requests.get(f"{loaded}/Patient?_id={patient.patient_id}", timeout=10).json()
    assert found["total"] == 1
    observations = requests.get(
        f"{loaded}/Observation?patient={patient.patient_id}&_summary=count", timeout=10
    ).json()
    written = sum(
        1 for e in patient.bundle["entry"] if e["resource"]["resourceType"] == "Observation"
    )
    assert observations["total"] == written


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
@pytest.mark.parametrize("patient", PATIENTS, ids=[p.key for p in PATIENTS])
def test_every_hook_raises_the_cards_the_bundle_states(
    loaded: str, patient: SyntheticPatient, prefetch: bool
) -> None:
    common = ["--fhir-server", loaded, "--patient", patient.patient_id]
    if not prefetch:
        common.append("--no-prefetch")
    assert _check(*common) == _shown(patient)
    for hook in ("order-select", "order-sign"):
        if patient.renewal_cards:
            assert _check(*common, "--hook", hook) == _shown(patient, hook), hook
        else:  # nothing to renew: check says so and fails cleanly
            result = CliRunner().invoke(main, ["check", *common, "--hook", hook])
            assert result.exit_code == 1
            assert "no active anastrozole order" in result.output


@pytest.fixture(scope="module")
def proxy(loaded: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The FHIR server behind a proxy that collapses `//` as smart-launcher-v2's does."""
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    command = [sys.executable, "-m", "tests.sandbox.launcher_proxy", loaded, str(port)]
    log = tmp_path_factory.mktemp("proxy") / "proxy.log"
    process = start_server(command, env=dict(os.environ), log=log, ready_url=f"{base}/metadata",
                           what="the launcher-like proxy")  # fmt: skip
    try:
        yield base
    finally:
        stop_process(process)


@pytest.fixture(scope="module")
def service(
    loaded: str, proxy: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """`anastrozole-cds serve` trusting a test issuer that may name the test FHIR server, and
    the same server behind the launcher-like proxy."""
    folder = tmp_path_factory.mktemp("served")
    keys = make_keys(folder)
    key_file = folder / "ehr-private.jwk.json"
    key_file.write_bytes(orjson.dumps(keys.es384.as_dict(private=True)))
    with live_service(
        folder,
        keys,
        fhir_servers=(loaded, proxy),
        evaluation_time=None,
        # generous: a loaded 2-core machine runs the FHIR server, the proxy and the suite
        extra_toml="fhir_deadline_seconds = 20\nfhir_read_timeout_seconds = 10",
    ) as live:
        yield {"base": live.base, "key": str(key_file), "live": live}


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
@pytest.mark.parametrize("key", ["trt-low-e2", "onc-no-dexa", "ai-tamoxifen"])
def test_check_over_real_http_against_serve(
    loaded: str, service: dict[str, Any], key: str, prefetch: bool
) -> None:
    patient = next(p for p in PATIENTS if p.key == key)
    args = ["--fhir-server", loaded, "--patient", patient.patient_id, "--service",
            service["base"], "--key", service["key"], "--issuer", ISSUER]  # fmt: skip
    if not prefetch:
        args.append("--no-prefetch")
    assert _check(*args) == _shown(patient)
    assert _check(*args, "--hook", "order-sign") == _shown(patient, "order-sign")


def test_an_unsigned_call_over_http_is_refused(loaded: str, service: dict[str, Any]) -> None:
    patient = PATIENTS[0]
    result = CliRunner().invoke(
        main,
        [
            "check",
            "--fhir-server",
            loaded,
            "--patient",
            patient.patient_id,
            "--service",
            service["base"],
        ],
    )
    assert result.exit_code == 1
    assert "HTTP 401" in result.output


def test_the_guides_order_select_example_shows_the_interaction(loaded: str) -> None:
    """docs/integrators.md: a tamoxifen draft for a woman on anastrozole."""
    draft = Path(__file__).parents[2] / "docs" / "examples" / "draft-tamoxifen.json"
    assert _check(
        "--fhir-server", loaded, "--patient", "onc-no-dexa-pt-maren-6710", "--hook",
        "order-select", "--draft-order", str(draft), "--select", "MedicationRequest/draft-tamoxifen",
    ) == {"ai-interaction": "critical"}  # fmt: skip


def test_a_patient_key_given_as_the_id_stops_check_with_the_patient_id(loaded: str) -> None:
    result = CliRunner().invoke(main, ["check", "--fhir-server", loaded, "--patient", "trt-low-e2"])
    assert result.exit_code == 1
    assert f"Patient/trt-low-e2 not found on {loaded}" in result.output
    assert "trt-low-e2-pt-harlan-0417" in result.output


# -- data crosses the boundary complete, or the card says it did not ----------------------------


def _by_key(key: str) -> SyntheticPatient:
    return next(p for p in PATIENTS if p.key == key)


HYS_LAW = _by_key("trt-hys-law")  # liver-injury-on-ai (critical) needs its coded liver results


def test_the_proxy_collapses_unencoded_code_systems_as_the_launcher_does(
    loaded: str, proxy: str
) -> None:
    """The proxy is faithful: `code=http://loinc.org|...` comes back empty through it."""
    search = f"Observation?patient={HYS_LAW.patient_id}&code=http://loinc.org|1742-6"
    assert requests.get(f"{loaded}/{search}", timeout=10).json()["total"] == 1
    assert requests.get(f"{proxy}/{search}", timeout=10).json()["total"] == 0


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
def test_behind_a_proxy_that_collapses_double_slashes_check_finds_the_coded_results(
    proxy: str, prefetch: bool
) -> None:
    args = ["--fhir-server", proxy, "--patient", HYS_LAW.patient_id]
    assert _check(*args, *([] if prefetch else ["--no-prefetch"])) == _shown(HYS_LAW)
    assert HYS_LAW.expected_cards["liver-injury-on-ai"] == "critical"


def test_behind_the_proxy_the_served_service_finds_the_coded_results_itself(
    proxy: str, service: dict[str, Any]
) -> None:
    args = ["--fhir-server", proxy, "--patient", HYS_LAW.patient_id, "--service",
            service["base"], "--key", service["key"], "--issuer", ISSUER, "--no-prefetch"]  # fmt: skip
    assert _check(*args) == _shown(HYS_LAW)


def test_behind_the_proxy_the_smart_apps_queries_find_the_coded_results(
    loaded: str, proxy: str
) -> None:
    def ids(base: str) -> set[str]:
        with FhirClient(base) as client:
            chart = fetch_chart(client, HYS_LAW.patient_id, deadline_seconds=20)
        assert chart.gaps == () and chart.unavailable is None
        return {f"{r['resourceType']}/{r['id']}" for r in chart.resources}

    direct = ids(loaded)
    assert {
        "Observation/trt-hys-law-obs-fenwick-alt",
        "Observation/trt-hys-law-obs-fenwick-tbili",
    } <= direct
    assert ids(proxy) == direct


def _call(service: dict[str, Any], body: dict[str, Any]) -> requests.Response:
    url = f"{service['base']}/cds-services/anastrozole-monitor-patient-view"
    live = service["live"]
    return requests.post(
        url,
        data=orjson.dumps(body),
        headers={**live.headers("/cds-services/anastrozole-monitor-patient-view"),
                 "Content-Type": "application/json"},
        timeout=30,
    )  # fmt: skip


def _full_prefetch(server: str, patient: SyntheticPatient) -> tuple[dict[str, Any], Any]:
    """What a CDS client prefetches from the server with the published templates."""
    context = hook_context("patient-view", patient.patient_id)
    queries = resolve_prefetch(discovery_prefetch("patient-view"), context, date.today())
    with FhirClient(server) as client:
        prefetch, problems = fetch_prefetch(client, queries)
    assert problems == {}
    return prefetch, context


def _topics(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 200, response.text
    return {card["source"]["topic"]["code"]: card["indicator"] for card in response.json()["cards"]}


def _rules_shown(response: requests.Response) -> set[str]:
    """Every rule a card speaks for: its topic, or each rule of a grouped reminder card."""
    assert response.status_code == 200, response.text
    shown = set()
    for card in response.json()["cards"]:
        shown.add(card["source"]["topic"]["code"])
        shown.update((card.get("extension") or {}).get(EXTENSION_RULES, ()))
    return shown


def _detail(response: requests.Response, topic: str) -> str:
    return next(
        card["detail"]
        for card in response.json()["cards"]
        if card["source"]["topic"]["code"] == topic
    )


def test_a_paged_prefetch_is_read_to_its_end_with_the_token(
    loaded: str, service: dict[str, Any]
) -> None:
    """The EHR sends the first page of estradiol results (oldest first, one a page): the
    service reads the next pages from the server, and finds the low one."""
    patient = _by_key("trt-low-e2")
    prefetch, context = _full_prefetch(loaded, patient)
    prefetch["estradiol"] = _first_page_of_estradiol(loaded, patient)
    body = hook_request("patient-view", loaded, context, prefetch=prefetch, access_token="t-1")
    assert _topics(_call(service, body)) == _shown(patient)


def test_a_paged_prefetch_without_fhir_access_withholds_the_estradiol_checks_and_says_so(
    loaded: str, service: dict[str, Any]
) -> None:
    patient = _by_key("trt-low-e2")
    prefetch, context = _full_prefetch(loaded, patient)
    prefetch["estradiol"] = _first_page_of_estradiol(loaded, patient)
    body = hook_request("patient-view", loaded, context, prefetch=prefetch)
    del body["fhirServer"]
    response = _call(service, body)
    shown = _rules_shown(response)
    assert {"estradiol-low", "estradiol-monitoring-due"}.isdisjoint(shown)  # not guessed
    assert "anastrozole-intent" not in _detail(response, "data-incomplete")  # judged: not skipped
    detail = _detail(response, "data-incomplete")
    assert "estradiol and testosterone results: only the first page was sent" in detail
    assert "`estradiol-low`" in detail


def _first_page_of_estradiol(server: str, patient: SyntheticPatient) -> dict[str, Any]:
    """One result a page, oldest first: page one is the old, normal baseline."""
    search = (f"{server}/Observation?patient={patient.patient_id}"
              "&code=http%3A%2F%2Floinc.org%7C2243-4&_sort=date&_count=1")  # fmt: skip
    page: dict[str, Any] = requests.get(search, timeout=10).json()
    assert len(page["entry"]) == 1 and any(link["relation"] == "next" for link in page["link"])
    return page


def test_a_prefetch_key_left_out_without_fhir_access_withholds_only_its_checks(
    loaded: str, service: dict[str, Any]
) -> None:
    """CDS Hooks 2.0 clients leave out keys they could not fill: not a 412."""
    prefetch, context = _full_prefetch(loaded, HYS_LAW)
    del prefetch["liverTests"]
    body = hook_request("patient-view", loaded, context, prefetch=prefetch)
    del body["fhirServer"]
    response = _call(service, body)
    shown = _rules_shown(response)
    assert {"liver-injury-on-ai", "liver-panel-due"}.isdisjoint(shown)
    assert "anastrozole-intent" not in _detail(response, "data-incomplete")  # judged: not skipped
    detail = _detail(response, "data-incomplete")
    assert "liver tests: not sent in the prefetch" in detail
    assert "`liver-injury-on-ai`" in detail


def test_a_prefetch_key_left_out_is_fetched_with_the_token(
    loaded: str, service: dict[str, Any]
) -> None:
    prefetch, context = _full_prefetch(loaded, HYS_LAW)
    del prefetch["liverTests"]
    body = hook_request("patient-view", loaded, context, prefetch=prefetch, access_token="t-2")
    assert _topics(_call(service, body)) == _shown(HYS_LAW)


def test_without_the_data_every_check_reads_the_answer_is_412(
    loaded: str, service: dict[str, Any]
) -> None:
    prefetch, context = _full_prefetch(loaded, HYS_LAW)
    del prefetch["medicationRequests"]
    body = hook_request("patient-view", loaded, context, prefetch=prefetch)
    del body["fhirServer"]
    response = _call(service, body)
    assert response.status_code == 412
    assert response.json()["missingPrefetch"] == ["medicationRequests"]


def test_the_sandbox_clinician_is_listed_for_a_launchers_provider_login(loaded: str) -> None:
    """smart-launcher-v2's provider login shows this list, and stops when it is empty."""
    listed = requests.get(
        f"{loaded}/Practitioner?_count=10&_summary=true&_sort=given", timeout=10
    ).json()
    names = [entry["resource"]["name"][0]["given"] for entry in listed["entry"]]
    assert ["Sam"] in names


# -- an order that names its drug only as Medication/{id} ----------------------------------------


@pytest.fixture(scope="module")
def by_reference(loaded: str) -> SyntheticPatient:
    """trt-low-e2 as another patient whose anastrozole order names its drug only by a
    reference (`medicationReference: Medication/{id}`, no display), its Medication on the
    server: as EHRs that keep drugs as Medication resources write orders."""
    source = _by_key("trt-low-e2")
    bundle = orjson.loads(orjson.dumps(source.bundle).replace(b"trt-low-e2-", b"by-ref-"))
    entries = bundle["entry"]
    order = next(
        e["resource"] for e in entries if e["resource"]["id"] == "by-ref-mr-harlan-anastrozole"
    )
    medication = {"resourceType": "Medication", "id": "by-ref-med-anastrozole",
                  "code": order.pop("medicationCodeableConcept")}  # fmt: skip
    order["medicationReference"] = {"reference": "Medication/by-ref-med-anastrozole"}
    entries.append({"resource": medication,
                    "request": {"method": "PUT", "url": "Medication/by-ref-med-anastrozole"}})  # fmt: skip
    patient = SyntheticPatient("by-ref", source.patient_id.replace("trt-low-e2-", "by-ref-"),
                               source.description, source.expected_cards, source.renewal_cards,
                               bundle)  # fmt: skip
    loaded_one = load_patient(requests.Session(), loaded, patient, days=days_to_shift(date.today()))
    assert loaded_one.ok, loaded_one.error
    return patient


@pytest.mark.parametrize("prefetch", [True, False], ids=["prefetch", "no-prefetch"])
def test_an_order_naming_its_drug_by_reference_is_read_with_its_medication(
    loaded: str, by_reference: SyntheticPatient, prefetch: bool
) -> None:
    """The medication templates ask for `_include=MedicationRequest:medication`."""
    args = ["--fhir-server", loaded, "--patient", by_reference.patient_id]
    assert _check(*args, *([] if prefetch else ["--no-prefetch"])) == _shown(by_reference)


def _without_medications(prefetch: dict[str, Any]) -> dict[str, Any]:
    """The medication orders as a client sends them that does not honour `_include`."""
    orders = prefetch["medicationRequests"]
    orders["entry"] = [e for e in orders["entry"] if e["resource"]["resourceType"] != "Medication"]
    return prefetch


def test_a_drug_the_prefetch_lacks_is_read_from_the_fhir_server_with_the_token(
    loaded: str, service: dict[str, Any], by_reference: SyntheticPatient
) -> None:
    prefetch, context = _full_prefetch(loaded, by_reference)
    body = hook_request("patient-view", loaded, context,
                        prefetch=_without_medications(prefetch), access_token="t-3")  # fmt: skip
    assert _topics(_call(service, body)) == _shown(by_reference)


def test_a_drug_that_cannot_be_had_is_said_never_passed_over(
    loaded: str, service: dict[str, Any], by_reference: SyntheticPatient
) -> None:
    prefetch, context = _full_prefetch(loaded, by_reference)
    body = hook_request("patient-view", loaded, context, prefetch=_without_medications(prefetch))
    del body["fhirServer"]
    response = _call(service, body)
    assert response.status_code == 412
    assert response.json()["missingPrefetch"] == ["medicationReferences"]
    assert "1 order names its drug only by a reference" in response.json()["message"]


# -- cards that act on the order being signed -----------------------------------------------------


def _cards_json(*args: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(main, ["check", "--json", *args])
    assert result.exit_code == 0, result.output
    cards: list[dict[str, Any]] = orjson.loads(result.stdout)["cards"]
    return cards


def _suggested_actions(cards: list[dict[str, Any]], topic: str) -> list[dict[str, Any]]:
    card = next(c for c in cards if c["source"]["topic"]["code"] == topic)
    return [
        {**action, "isRecommended": suggestion.get("isRecommended", False)}
        for suggestion in card.get("suggestions", ())
        for action in suggestion["actions"]
    ]


def test_order_sign_over_http_offers_to_change_the_draft_to_the_intents_dose(
    loaded: str, service: dict[str, Any]
) -> None:
    patient = _by_key("trt-1mg-daily")
    cards = _cards_json("--fhir-server", loaded, "--patient", patient.patient_id, "--hook",
                        "order-sign", "--service", service["base"], "--key", service["key"],
                        "--issuer", ISSUER)  # fmt: skip
    (update,) = [
        a for a in _suggested_actions(cards, "dose-intent-mismatch") if a["type"] == "update"
    ]
    assert update["isRecommended"] is True
    draft = update["resource"]
    assert draft["resourceType"] == "MedicationRequest" and draft["status"] == "draft"
    assert draft["id"].endswith("-renewal")  # the draft of the call, not the chart's order
    (dosage,) = draft["dosageInstruction"]
    assert dosage["text"] == "0.5 mg twice weekly"
    assert dosage["doseAndRate"][0]["doseQuantity"]["value"] == 0.5


def test_order_select_offers_to_remove_the_tamoxifen_draft(loaded: str) -> None:
    draft = Path(__file__).parents[2] / "docs" / "examples" / "draft-tamoxifen.json"
    cards = _cards_json("--fhir-server", loaded, "--patient", "onc-no-dexa-pt-maren-6710", "--hook",
                        "order-select", "--draft-order", str(draft))  # fmt: skip
    deletes = [a for a in _suggested_actions(cards, "ai-interaction") if a["type"] == "delete"]
    assert deletes == [
        {
            "type": "delete",
            "description": deletes[0]["description"],
            "resourceId": ["MedicationRequest/draft-tamoxifen"],
            "isRecommended": True,
        }
    ]


def test_a_draft_written_as_the_cds_hooks_sandbox_writes_it_gets_its_dose_checked(
    loaded: str, service: dict[str, Any], tmp_path: Path
) -> None:
    """The official sandbox's order-sign draft: one `{pill}` (UCUM, no unit) daily of the 1 mg
    tablet, `category` a single object, fixed id `request-123`. The tablet count is read with
    the product's strength (7 mg a week), so the TRT man's dose check runs on it."""
    patient = _by_key("trt-low-e2")
    draft = {
        "resourceType": "MedicationRequest",
        "id": "request-123",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient.patient_id}"},
        "authoredOn": date.today().isoformat(),
        "category": {"coding": [{"code": "community",
                                 "system": "http://terminology.hl7.org/CodeSystem/medicationrequest-category"}]},
        "medicationCodeableConcept": {
            "text": "anastrozole 1 MG Oral Tablet",
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "199224",
                        "display": "anastrozole 1 MG Oral Tablet"}],
        },
        "dosageInstruction": [{
            "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org",
                                              "code": "{pill}"}}],
        }],
    }  # fmt: skip
    draft_file = tmp_path / "sandbox-draft.json"
    draft_file.write_bytes(orjson.dumps(draft))
    cards = _cards_json("--fhir-server", loaded, "--patient", patient.patient_id, "--hook",
                        "order-sign", "--service", service["base"], "--key", service["key"],
                        "--issuer", ISSUER, "--draft-order", str(draft_file))  # fmt: skip
    mismatch = next(c for c in cards if c["source"]["topic"]["code"] == "dose-intent-mismatch")
    assert "7 mg/week" in mismatch["summary"]
    (update,) = [
        a for a in _suggested_actions(cards, "dose-intent-mismatch") if a["type"] == "update"
    ]
    assert update["resource"]["id"] == "request-123"
    assert update["resource"]["dosageInstruction"][0]["text"] == "0.5 mg twice weekly"
