"""Service-level benchmarks (docs/performance.md): a whole patient-view call through the Flask
app in process, JWT verification on (each round signs a fresh token, untimed):

- with a 100-resource prefetch;
- with no prefetch, against a FHIR server on 127.0.0.1 that answers every query after 100 ms
  (goal: under 150 ms in all, because the queries run in parallel);
- with a 1,000-resource prefetch, ours against a naive service that first validates every
  prefetched resource with fhir.resources (goal: ours at least 20x faster).

These record `service_stage` (not `stage`) in extra_info, so conftest's core table is unchanged;
their medians are printed in pytest-benchmark's table under the group "service ...".
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from flask.testing import FlaskClient
from pytest_benchmark.fixture import BenchmarkFixture

from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from cds_hooks.services import prefetch_templates
from sandbox.synthetic import make_patient_bundle, prefetch_for
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    make_keys,
    service_url,
    settings_values,
)
from tests.faults.fault_fhir_server import Fault, FaultyFhirServer

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
FHIR_DELAY = 0.100


def patient_resources(n: int) -> list[dict[str, Any]]:
    return [entry["resource"] for entry in make_patient_bundle(n, seed=0, now=NOW)["entry"]]


def hook_request(resources: list[dict[str, Any]], *, prefetch: bool) -> dict[str, Any]:
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    body: dict[str, Any] = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": patient_id},
    }
    if prefetch:
        body["prefetch"] = prefetch_for(resources, [t.key for t in prefetch_templates()])
    return body


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("bench-keys"))


def make_client(keys: Keys, folder: Path, **overrides: Any) -> FlaskClient:
    values = settings_values(keys, folder, evaluation_time=NOW, **overrides)
    return create_app(load_settings(**values)).test_client()


def signed_call(client: FlaskClient, keys: Keys, data: bytes) -> Any:
    """The untimed half (a fresh JWT), and the timed call."""
    headers = {
        "Authorization": f"Bearer {keys.sign(service_url(PATIENT_VIEW))}",
        "Content-Type": "application/json",
    }
    return (client, data, headers), {}


def post(client: FlaskClient, data: bytes, headers: dict[str, str]) -> Any:
    response = client.post(f"/cds-services/{PATIENT_VIEW}", data=data, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return response


def naive_post(client: FlaskClient, data: bytes, headers: dict[str, str]) -> Any:
    """The naive service: validate every prefetched resource with fhir.resources, then answer."""
    body = orjson.loads(data)
    for value in body["prefetch"].values():
        if value is None:
            continue
        for resource in [e["resource"] for e in value.get("entry", ())] or [value]:
            model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
            model.model_dump(mode="json", exclude_none=True)
    return post(client, data, headers)


def _label(benchmark: BenchmarkFixture, stage: str, n: int) -> None:
    benchmark.group = "service: one patient-view call"
    benchmark.extra_info.update(service_stage=stage, resources=n)


@pytest.mark.parametrize("n", [100, 1_000])
def test_service_patient_view_with_prefetch(
    benchmark: BenchmarkFixture, keys: Keys, tmp_path: Path, n: int
) -> None:
    client = make_client(keys, tmp_path)
    data = orjson.dumps(hook_request(patient_resources(n), prefetch=True))
    _label(benchmark, "prefetch", n)
    response = benchmark.pedantic(
        post, setup=lambda: signed_call(client, keys, data), rounds=60, warmup_rounds=3
    )
    assert any(c["source"]["topic"]["code"] == "anastrozole-intent" for c in response.json["cards"])


def test_service_patient_view_naive_validation(
    benchmark: BenchmarkFixture, keys: Keys, tmp_path: Path
) -> None:
    client = make_client(keys, tmp_path)
    data = orjson.dumps(hook_request(patient_resources(1_000), prefetch=True))
    naive_post(*signed_call(client, keys, data)[0])  # untimed: imports the model classes
    _label(benchmark, "naive-validation", 1_000)
    benchmark.pedantic(naive_post, setup=lambda: signed_call(client, keys, data), rounds=5)


@pytest.mark.parametrize("parallel", [8, 24])
def test_service_patient_view_fetching_from_a_100_ms_fhir_server(
    benchmark: BenchmarkFixture, keys: Keys, tmp_path: Path, parallel: int
) -> None:
    resources = patient_resources(100)
    server = DelayedFhirServer(resources).start()
    try:
        client = make_client(
            keys,
            tmp_path,
            issuers=[
                {"iss": ISSUER, "jwks_file": str(keys.jwks_file), "fhir_servers": [server.base_url]}
            ],
            fhir_max_parallel=parallel,
        )
        body = hook_request(resources, prefetch=False)
        body["fhirServer"] = server.base_url
        data = orjson.dumps(body)
        _label(benchmark, f"fetch-100ms-x{parallel}", 100)
        response = benchmark.pedantic(
            post, setup=lambda: signed_call(client, keys, data), rounds=15, warmup_rounds=1
        )
        queries = len(prefetch_templates())
        benchmark.extra_info["fhir_queries_per_call"] = queries
        assert queries >= 5
        assert "data-incomplete" not in {
            c["source"]["topic"]["code"] for c in response.json["cards"]
        }
    finally:
        server.stop()


class DelayedFhirServer(FaultyFhirServer):
    """Answers every query with its data, after FHIR_DELAY."""

    def __init__(self, resources: list[dict[str, Any]]) -> None:
        super().__init__(resources, page_size=200)
        self.fault = self._slowly

    def _slowly(self, path: str) -> Fault:
        status, body = self._data.answer(path)
        return Fault(status=status, body=body, delay_seconds=FHIR_DELAY)
