"""POST /cds-services/{id}/feedback (CDS Hooks 2.0 "Feedback"): stored durably, or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from runtime import schema
from runtime.store import Store
from tests.cds_hooks.cds_helpers import BASE, PATIENT_VIEW, Keys, bearer, service_url

URL = f"/cds-services/{PATIENT_VIEW}/feedback"
ACCEPTED = {
    "card": "4e0a3a1e-3283-4575-ab82-028d55fe2719",
    "outcome": "accepted",
    "acceptedSuggestions": [{"id": "e56e1945-20b3-4393-8503-a1a20fd73152"}],
    "outcomeTimestamp": "2026-11-01T12:05:00Z",
}
OVERRIDDEN = {
    "card": "9368d37b-283f-44a0-93ea-547cebab93ed",
    "outcome": "overridden",
    "overrideReason": {
        "reason": {
            "code": "already-scheduled",
            "system": "https://anastrozole-cds.example/override-reasons",
            "display": "Already scheduled elsewhere",
        },
        "userComment": "DXA booked at the county hospital.",
    },
    "outcomeTimestamp": "2026-11-01T12:06:00+01:00",
}
DISMISSED = {
    "card": "f6b95768-b1c8-40dc-8385-bf3504b82ffb",
    "outcome": "overridden",
    "outcomeTimestamp": "2026-11-01T12:07:00Z",
}


def post(client: FlaskClient, keys: Keys, body: Any, aud: str | None = None) -> Any:
    token = keys.sign(aud or f"{service_url(PATIENT_VIEW)}/feedback")
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post(
        URL, data=data, headers={**bearer(token), "Content-Type": "application/json"}
    )


def stored(app: Flask) -> list[dict[str, Any]]:
    store: Store = app.extensions["runtime.store"]
    return store.feedback()


def test_every_kind_of_feedback_is_stored_and_answered_200(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    response = post(client, keys, {"feedback": [ACCEPTED, OVERRIDDEN, DISMISSED]})
    assert response.status_code == 200
    assert response.json == {"received": 3}
    accepted, overridden, dismissed = stored(app)
    assert accepted["card_uuid"] == ACCEPTED["card"]
    assert accepted["outcome"] == "accepted"
    assert accepted["accepted_suggestions"] == ["e56e1945-20b3-4393-8503-a1a20fd73152"]
    assert accepted["service_id"] == PATIENT_VIEW
    assert accepted["issuer"] == "https://ehr.example.org"
    assert overridden["override_reason_code"] == "already-scheduled"
    assert (
        overridden["override_reason_system"] == "https://anastrozole-cds.example/override-reasons"
    )
    assert overridden["user_comment"] == "DXA booked at the county hospital."
    assert overridden["outcome_timestamp"].isoformat() == "2026-11-01T11:06:00"  # stored in UTC
    assert dismissed["override_reason_code"] is None


def test_the_service_url_is_accepted_as_audience_too(client: FlaskClient, keys: Keys) -> None:
    assert (
        post(client, keys, {"feedback": [DISMISSED]}, aud=service_url(PATIENT_VIEW)).status_code
        == 200
    )


BAD_FEEDBACK: dict[str, Any] = {
    "not JSON": b"{",
    "no feedback array": {"cards": []},
    "empty feedback": {"feedback": []},
    "no card": {"feedback": [{k: v for k, v in DISMISSED.items() if k != "card"}]},
    "unknown outcome": {"feedback": [{**DISMISSED, "outcome": "ignored"}]},
    "accepted without suggestions": {"feedback": [{**ACCEPTED, "acceptedSuggestions": []}]},
    "accepted with an override reason": {
        "feedback": [{**ACCEPTED, "overrideReason": OVERRIDDEN["overrideReason"]}]
    },
    "overridden with suggestions": {
        "feedback": [{**DISMISSED, "acceptedSuggestions": ACCEPTED["acceptedSuggestions"]}]
    },
    "no timestamp": {"feedback": [{k: v for k, v in DISMISSED.items() if k != "outcomeTimestamp"}]},
    "timestamp not a date": {"feedback": [{**DISMISSED, "outcomeTimestamp": "yesterday"}]},
    "reason without code": {
        "feedback": [{**OVERRIDDEN, "overrideReason": {"reason": {"system": "x"}}}]
    },
    "one good, one bad": {"feedback": [ACCEPTED, {**DISMISSED, "outcome": "maybe"}]},
}


@pytest.mark.parametrize("case", sorted(BAD_FEEDBACK))
def test_bad_feedback_is_400_and_nothing_is_stored(
    app: Flask, client: FlaskClient, keys: Keys, case: str
) -> None:
    response = post(client, keys, BAD_FEEDBACK[case])
    assert response.status_code == 400, response.json
    assert response.json["error"] == "bad_request"
    assert response.json["details"]
    assert stored(app) == []


def test_feedback_needs_the_jwt(app: Flask, client: FlaskClient) -> None:
    response = client.post(URL, json={"feedback": [DISMISSED]})
    assert response.status_code == 401
    assert stored(app) == []


def test_feedback_for_an_unknown_service_is_404(client: FlaskClient, keys: Keys) -> None:
    token = keys.sign(f"{BASE}/cds-services/nope/feedback")
    response = client.post(
        "/cds-services/nope/feedback", json={"feedback": [DISMISSED]}, headers=bearer(token)
    )
    assert response.status_code == 404


def test_feedback_survives_a_restart(make_settings: Any, keys: Keys, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'durable.sqlite3'}"
    schema.upgrade(url)  # as `serve` does before its workers start
    first = create_app(make_settings(store_url=url))
    assert post(first.test_client(), keys, {"feedback": [ACCEPTED]}).status_code == 200
    first.extensions["runtime.store"].dispose()
    second = create_app(make_settings(store_url=url))
    assert [row["card_uuid"] for row in stored(second)] == [ACCEPTED["card"]]


def test_a_store_failure_is_503_and_leaves_nothing_half_written(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    store: Store = app.extensions["runtime.store"]
    real = store.engine
    with real.begin() as connection:  # a broken table makes the second insert fail
        connection.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE INSERT ON cds_feedback WHEN NEW.card_uuid = 'boom' BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    response = post(client, keys, {"feedback": [ACCEPTED, {**DISMISSED, "card": "boom"}]})
    assert response.status_code == 503
    assert response.json["error"] == "unavailable"
    assert stored(app) == []
