"""Feedback at the edges: timestamps that do not exist in UTC are a 400, not a 500; text longer
than its column is stored cut to fit and marked, so one long comment loses no other item."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.models import TRUNCATED
from tests.cds_hooks.cds_helpers import Keys
from tests.cds_hooks.test_cds_feedback import ACCEPTED, DISMISSED, OVERRIDDEN, post, stored

REASON = OVERRIDDEN["overrideReason"]


@pytest.mark.parametrize(
    "timestamp",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:30:00-01:00"],
    ids=["before year 1 in UTC", "after year 9999 in UTC"],
)
def test_a_timestamp_outside_the_utc_range_is_a_400_naming_the_field(
    app: Flask, client: FlaskClient, keys: Keys, timestamp: str
) -> None:
    response = post(client, keys, {"feedback": [{**DISMISSED, "outcomeTimestamp": timestamp}]})
    assert response.status_code == 400
    assert response.json["error"] == "bad_request"
    assert [d["field"] for d in response.json["details"]] == ["feedback.0.outcomeTimestamp"]
    assert stored(app) == []


def test_the_edges_of_the_utc_range_are_stored(app: Flask, client: FlaskClient, keys: Keys) -> None:
    edges = [
        {**DISMISSED, "outcomeTimestamp": "0001-01-01T00:00:00Z"},
        {**DISMISSED, "outcomeTimestamp": "9999-12-31T23:30:00+01:00"},
    ]
    assert post(client, keys, {"feedback": edges}).json == {"received": 2}


def _cut(text: str, column: int) -> str:
    return text[: column - len(TRUNCATED)] + TRUNCATED


LONG: dict[str, tuple[dict[str, Any], str, str, int]] = {
    # case: (item, stored column, the long text, column size)
    "userComment": (
        {**OVERRIDDEN, "overrideReason": {**REASON, "userComment": "c" * 4001}},
        "user_comment",
        "c" * 4001,
        4000,
    ),
    "reason display": (
        {**OVERRIDDEN, "overrideReason": {"reason": {**REASON["reason"], "display": "d" * 501}}},
        "override_reason_display",
        "d" * 501,
        500,
    ),
    "reason code": (
        {**OVERRIDDEN, "overrideReason": {"reason": {**REASON["reason"], "code": "k" * 201}}},
        "override_reason_code",
        "k" * 201,
        200,
    ),
    "reason system": (
        {**OVERRIDDEN, "overrideReason": {"reason": {**REASON["reason"], "system": "s" * 501}}},
        "override_reason_system",
        "s" * 501,
        500,
    ),
    "card id": ({**DISMISSED, "card": "u" * 201}, "card_uuid", "u" * 201, 200),
}


@pytest.mark.parametrize("case", sorted(LONG))
def test_an_over_long_text_is_stored_cut_and_marked_beside_the_other_items(
    app: Flask, client: FlaskClient, keys: Keys, case: str
) -> None:
    item, column, text, size = LONG[case]
    response = post(client, keys, {"feedback": [ACCEPTED, item]})
    assert response.status_code == 200
    assert response.json == {"received": 2}
    accepted, long_one = stored(app)
    assert accepted["card_uuid"] == ACCEPTED["card"]
    assert long_one[column] == _cut(text, size)
    assert len(long_one[column]) == size


def test_an_over_long_suggestion_id_is_stored_cut_and_marked(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    item = {**ACCEPTED, "acceptedSuggestions": [{"id": "i" * 201}, {"id": "short"}]}
    assert post(client, keys, {"feedback": [item, DISMISSED]}).json == {"received": 2}
    assert stored(app)[0]["accepted_suggestions"] == [_cut("i" * 201, 200), "short"]


def test_text_that_fits_its_column_is_stored_as_given(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    item = {**OVERRIDDEN, "overrideReason": {**REASON, "userComment": "c" * 4000}}
    assert post(client, keys, {"feedback": [item]}).status_code == 200
    assert stored(app)[0]["user_comment"] == "c" * 4000
