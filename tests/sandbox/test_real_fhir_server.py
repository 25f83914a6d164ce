"""End to end against a real FHIR R4 server (sekmet-fhir, pinned in the dev extra).

The synthetic patients are loaded with `anastrozole-cds load` (dates moved to today), then
every hook is played with `anastrozole-cds check` for every patient, with the prefetch filled
from the server and without it (the service queries the server), in process; and over real
HTTP against `anastrozole-cds serve`. Each patient's Bundle states the cards to expect.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.fhir_server import FhirServerError, start_fhir_server
from sandbox.patients import REFERENCE_NOW, SyntheticPatient, all_patients, bundle_resources
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
def service(loaded: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`anastrozole-cds serve` trusting a test issuer that may name the test FHIR server."""
    folder = tmp_path_factory.mktemp("served")
    keys = make_keys(folder)
    key_file = folder / "ehr-private.jwk.json"
    key_file.write_bytes(orjson.dumps(keys.es384.as_dict(private=True)))
    with live_service(
        folder,
        keys,
        fhir_servers=(loaded,),
        evaluation_time=None,
        extra_toml="fhir_deadline_seconds = 10",
    ) as live:
        yield {"base": live.base, "key": str(key_file)}


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
