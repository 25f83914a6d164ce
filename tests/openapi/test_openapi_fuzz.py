"""Schemathesis against the live server (gunicorn on 127.0.0.1, JWT verification on): for
every operation of the OpenAPI document, generated bodies (valid and invalid) with a fresh
valid JWT each: no 5xx, every 4xx a JSON body with a reason, every response as documented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cds_hooks.openapi import openapi_document
from tests.cds_hooks.cds_helpers import Keys
from tests.security.sec_live_server import LiveService, live_service

pytestmark = pytest.mark.integration

MAX_EXAMPLES = 30  # per operation and mode; the whole run stays under a minute
SCHEMA = schemathesis.openapi.from_dict(openapi_document())
OPERATIONS = {result.ok().label: result.ok() for result in SCHEMA.get_all_operations()}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[LiveService]:
    folder = tmp_path_factory.mktemp("fuzzed")
    with live_service(folder, keys, workers=2) as running:
        yield running


def json_error_with_reason(response: schemathesis.Response) -> None:
    if 400 <= response.status_code < 500:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/json"), (response.status_code, content_type)
        body = orjson.loads(response.content)
        assert isinstance(body.get("error"), str) and body["error"]
        assert isinstance(body.get("message"), str) and body["message"]


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        yield http


# Invalid data only where there is input to make invalid: the POST bodies and parameters.
RUNS = [(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)] + [
    (label, GenerationMode.NEGATIVE) for label in sorted(OPERATIONS) if label.startswith("POST")
]


@pytest.mark.parametrize(("label", "mode"), RUNS, ids=[f"{op}-{m.value}" for op, m in RUNS])
def test_the_live_server_conforms_to_its_openapi_document(
    service: LiveService, session: requests.Session, label: str, mode: GenerationMode
) -> None:
    operation = OPERATIONS[label]
    statuses: list[int] = []

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        headers = service.headers(case.formatted_path)  # a fresh jti per call, aud = the URL
        response = case.call_and_validate(
            base_url=service.base,
            session=session,
            headers=headers,
            checks=CHECKS,
            timeout=10,
        )
        json_error_with_reason(response)
        statuses.append(response.status_code)

    fuzz()
    assert statuses, "no example was run"
    assert all(status < 500 for status in statuses)
