"""An order hook with an empty draftOrders Bundle has nothing to judge: no cards, even when
the chart alone would give patient-view several (the order hooks show what the drafts bring)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.cds_hooks.cds_helpers import (
    ORDER_SELECT,
    ORDER_SIGN,
    PATIENT_VIEW,
    Keys,
    call,
    hook_body,
    trt_man_prefetch,
)

EMPTY_DRAFTS: dict[str, dict[str, Any]] = {
    "no entry": {"resourceType": "Bundle", "type": "collection"},
    "empty entry": {"resourceType": "Bundle", "type": "collection", "entry": []},
}


def test_the_chart_alone_gives_patient_view_cards(client: FlaskClient, keys: Keys) -> None:
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=trt_man_prefetch()))
    assert len(response.json["cards"]) >= 3  # so the empty answers below are not vacuous


@pytest.mark.parametrize("drafts", sorted(EMPTY_DRAFTS))
def test_order_sign_with_no_draft_orders_gives_no_cards(
    client: FlaskClient, keys: Keys, drafts: str
) -> None:
    body = hook_body("order-sign", prefetch=trt_man_prefetch(), draftOrders=EMPTY_DRAFTS[drafts])
    response = call(client, keys, ORDER_SIGN, body)
    assert response.status_code == 200
    assert response.json == {"cards": []}


@pytest.mark.parametrize("drafts", sorted(EMPTY_DRAFTS))
def test_order_select_with_no_draft_orders_gives_no_cards(
    client: FlaskClient, keys: Keys, drafts: str
) -> None:
    body = hook_body(
        "order-select",
        prefetch=trt_man_prefetch(),
        draftOrders=EMPTY_DRAFTS[drafts],
        selections=["MedicationRequest/rx-gone"],  # names a draft that is not there
    )
    response = call(client, keys, ORDER_SELECT, body)
    assert response.status_code == 200
    assert response.json == {"cards": []}
