"""The app still lists every finding; one a clinician answered in the EHR with a reason (so the
EHR's cards keep it away) is marked "acknowledged", with the reason and the date."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from flask import Flask

import smartapp
from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from cds_hooks.codes import OVERRIDE_REASONS_SYSTEM
from cds_hooks.services import prefetch_templates
from smartapp.config import SmartSettings
from tests.cds_hooks.cds_fhir_stub import prefetch_for
from tests.conftest import read_fixture, resources_of
from tests.smartapp.smart_helpers import (
    CLIENT_ID,
    FHIR_BASE,
    HARLAN,
    LOW_E2,
    bridged,
    build_sandbox,
    launch_and_sign_in,
    scenario_now,
)
from tests.smartapp.test_smart_dashboard import text

PATIENT_VIEW = "anastrozole-monitor-patient-view"


def product_app(tmp_path: Path) -> Flask:
    """Both faces on one app; the CDS calls unsigned (development switch), as from one EHR."""
    now = scenario_now(LOW_E2)
    product = load_settings(
        store_url="sqlite://",
        instance_path=tmp_path,
        evaluation_time=now,
        insecure_skip_jwt_verification=True,
    )
    app = create_app(product)
    smartapp.init_app(
        app,
        product,
        app.extensions["runtime.store"],
        smart_settings=SmartSettings(allowed_issuers=(FHIR_BASE,), client_id=CLIENT_ID),
    )
    return app


def show_chart(app: Flask) -> dict[str, str]:
    """The patient-view cards for Harlan's chart: rule -> card uuid."""
    resources = resources_of(read_fixture(LOW_E2))
    prefetch = prefetch_for(resources, prefetch_templates(), HARLAN, scenario_now(LOW_E2).date())
    body = {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/dr-1", "patientId": HARLAN},
        "prefetch": prefetch,
    }
    response = app.test_client().post(f"/cds-services/{PATIENT_VIEW}", json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    app.extensions["cds_hooks"].screen.log.flush()  # the batch the background thread writes
    return {card["source"]["topic"]["code"]: card["uuid"] for card in response.json["cards"]}


def answer(app: Flask, card: str, **item: Any) -> None:
    feedback = {"card": card, "outcomeTimestamp": "2026-10-20T09:30:00.000Z", **item}
    response = app.test_client().post(
        f"/cds-services/{PATIENT_VIEW}/feedback", data=orjson.dumps({"feedback": [feedback]})
    )
    assert response.status_code == 200, response.get_data(as_text=True)


def dashboard(app: Flask) -> str:
    sandbox = build_sandbox(fixtures=(LOW_E2,))
    client = app.test_client()
    with bridged(sandbox):
        page = client.get(launch_and_sign_in(client, sandbox, HARLAN))
    assert page.status_code == 200
    return page.get_data(as_text=True)


def test_a_finding_answered_with_a_reason_is_marked_acknowledged_with_reason_and_date(
    tmp_path: Path,
) -> None:
    app = product_app(tmp_path)
    cards = show_chart(app)
    reason = {"code": "will-repeat-test", "system": OVERRIDE_REASONS_SYSTEM}
    answer(app, cards["estradiol-low"], outcome="overridden", overrideReason={"reason": reason})
    page = dashboard(app)
    words = text(page)
    today = datetime.now(UTC).date().isoformat()  # answers are dated by the wall clock
    assert f"Acknowledged {today}: Will repeat the test" in words
    assert "not shown there as a card until" in words
    low = page.split('data-rule="estradiol-low"', 1)[1].split("</li>", 1)[0]
    assert 'class="acknowledged"' in low
    intent = page.split('data-rule="anastrozole-intent"', 1)[1].split("</li>", 1)[0]
    assert "acknowledged" not in intent  # not answered: not marked
    assert 'data-rule="estradiol-low"' in page  # the app lists it all the same


def test_a_plain_dismiss_marks_nothing(tmp_path: Path) -> None:
    app = product_app(tmp_path)
    cards = show_chart(app)
    answer(app, cards["estradiol-low"], outcome="overridden")
    assert "Acknowledged" not in text(dashboard(app))
