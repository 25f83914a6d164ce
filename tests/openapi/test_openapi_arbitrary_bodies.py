"""Property tests of the request parser and the card builder: whatever the context, prefetch
and draftOrders hold, the answer is a card list or a JSON 4xx, never a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anastrozole_cds.app import create_app
from cds_hooks.services import prefetch_templates
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import (
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_VIEW,
    anastrozole,
    trt_man_chart,
)

RESOURCE_TYPES = (
    "Patient", "MedicationRequest", "MedicationStatement", "Condition", "Observation",
    "Procedure", "DiagnosticReport", "ServiceRequest", "ImagingStudy", "Bundle", "Basic",
)  # fmt: skip
KEYS = [template.key for template in prefetch_templates()]
FIELDS = (
    "id", "status", "code", "subject", "gender", "birthDate", "valueQuantity", "valueString",
    "effectiveDateTime", "medicationCodeableConcept", "dosageInstruction", "authoredOn",
    "extension", "entry", "coding", "value", "unit", "onsetDateTime", "performedDateTime",
    "interpretation", "category", "clinicalStatus", "verificationStatus",
)  # fmt: skip

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["2026-10-01", "1978-03-02", "pg/mL", "199224", "2243-4", "Patient/p1"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
resources = st.builds(
    lambda kind, fields, subject: {
        **fields,
        "resourceType": kind,
        **({"subject": {"reference": "Patient/p1"}} if subject else {}),
    },
    st.sampled_from(RESOURCE_TYPES),
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=6),
    st.booleans(),
)
bundles = st.builds(
    lambda entries: {"resourceType": "Bundle", "type": "searchset", "entry": entries},
    st.lists(st.one_of(st.builds(lambda r: {"resource": r}, resources), json_values), max_size=5),
)
prefetch = st.dictionaries(
    st.sampled_from(KEYS) | st.text(max_size=8),
    st.one_of(st.none(), resources, bundles, json_values),
    max_size=len(KEYS),
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "userId": st.one_of(st.just("Practitioner/dr-1"), json_values),
        "patientId": st.one_of(st.just("p1"), json_values),
        "encounterId": json_values,
        "draftOrders": st.one_of(bundles, json_values),
        "selections": st.one_of(st.just(["MedicationRequest/rx-ana"]), json_values),
    },
)
bodies = st.fixed_dictionaries(
    {"context": st.one_of(contexts, json_values)},
    optional={"prefetch": st.one_of(prefetch, json_values)},
)

FUZZ = settings(
    max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)


def _post(make_settings: Callable[..., ProductSettings]) -> Callable[[str, bytes], Any]:
    client = create_app(make_settings(insecure_skip_jwt_verification=True)).test_client()

    def post(service_id: str, body: bytes) -> Any:
        return client.post(
            f"/cds-services/{service_id}", data=body, headers={"Content-Type": "application/json"}
        )

    return post


def _assert_answered(response: Any) -> None:
    assert response.status_code in (200, 400, 412), response.get_data(as_text=True)[:300]
    body = orjson.loads(response.get_data())
    if response.status_code == 200:
        assert isinstance(body["cards"], list)
    else:
        assert body["error"] and body["message"]


def test_arbitrary_context_prefetch_and_draft_orders_never_give_a_500(
    make_settings: Callable[..., ProductSettings],
) -> None:
    post = _post(make_settings)
    hooks = {PATIENT_VIEW: "patient-view", ORDER_SIGN: "order-sign", ORDER_SELECT: "order-select"}

    @FUZZ
    @given(service_id=st.sampled_from(sorted(hooks)), body=bodies)
    def check(service_id: str, body: dict[str, Any]) -> None:
        full = {"hook": hooks[service_id], "hookInstance": str(uuid.uuid4()), **body}
        _assert_answered(post(service_id, json.dumps(full).encode()))

    check()


def test_a_valid_context_with_arbitrary_chart_data_gets_cards(
    make_settings: Callable[..., ProductSettings],
) -> None:
    """Every key prefetched (so nothing is fetched), the chart arbitrary: the card builder
    gets whatever the record parser made of it, and answers 200 (or 400 for another patient)."""
    post = _post(make_settings)

    @FUZZ
    @given(
        chart=st.lists(resources, max_size=12),
        # arbitrary drafts, and now and then a real one: an anastrozole order at 1 mg daily
        drafts=st.lists(
            resources | st.just(anastrozole("rx-draft", status="draft", dose_mg=1, per_week=7)),
            max_size=3,
        ),
    )
    def check(chart: list[dict[str, Any]], drafts: list[dict[str, Any]]) -> None:
        body = {
            "hook": "order-sign",
            "hookInstance": str(uuid.uuid4()),
            "context": {
                "userId": "Practitioner/dr-1",
                "patientId": "p1",
                "draftOrders": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [{"resource": r} for r in drafts],
                },
            },
            "prefetch": {
                key: {
                    "resourceType": "Bundle",
                    "entry": [{"resource": r} for r in [*trt_man_chart(), *chart]],
                }
                for key in KEYS
            },
        }
        response = post(ORDER_SIGN, json.dumps(body).encode())
        _assert_answered(response)
        assert response.status_code != 412
        if response.status_code == 200:
            answered.append(len(orjson.loads(response.get_data())["cards"]))

    answered: list[int] = []

    check()
    assert any(answered), "the card builder never ran: the strategy is too narrow"


@FUZZ
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_as_a_body_are_a_json_400_or_cards(raw: bytes) -> None:
    from tests.cds_hooks.cds_helpers import settings_values

    client = _BYTES_CLIENT.get("client")
    if client is None:
        import tempfile
        from pathlib import Path

        from anastrozole_cds.settings import load_settings
        from tests.cds_hooks.cds_helpers import make_keys

        folder = Path(tempfile.mkdtemp())
        values = settings_values(make_keys(folder), folder, insecure_skip_jwt_verification=True)
        client = create_app(load_settings(**values)).test_client()
        _BYTES_CLIENT["client"] = client
    response = client.post(f"/cds-services/{PATIENT_VIEW}", data=raw)
    assert response.status_code in (400, 412)
    assert orjson.loads(response.get_data())["error"]


_BYTES_CLIENT: dict[str, Any] = {}
