"""A card answered with a reason is not shown again for the same patient, rule and evidence;
new evidence brings it back, a critical one comes back soon, a plain dismiss changes nothing.
In process (Flask client, SQLite in memory); over real HTTP in test_alert_burden_http.py."""

from __future__ import annotations

import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from anastrozole_cds.app import create_app
from cds_hooks.codes import OVERRIDE_REASONS_SYSTEM
from cds_hooks.policy import EXTENSION_RULES
from runtime.acknowledgements import card_evidence_table, patient_key
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    bearer,
    bundle,
    call,
    estradiol_result,
    hook_body,
    service_url,
    trt_man_prefetch,
)

OTHER_EHR = "https://other-ehr.example.org"
WILL_REPEAT = {"code": "will-repeat-test", "system": OVERRIDE_REASONS_SYSTEM}


@pytest.fixture
def app(make_settings: Callable[..., ProductSettings], keys: Keys) -> Flask:
    """The default [cards] table (what a clinician is shown), two trusted EHRs."""
    issuers = [
        {"iss": ISSUER, "jwks_file": str(keys.jwks_file)},
        {"iss": OTHER_EHR, "jwks_file": str(keys.jwks_file)},
    ]
    return create_app(make_settings(cards={}, issuers=issuers))


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


def open_chart(
    app: Flask, client: FlaskClient, keys: Keys, prefetch: dict[str, Any], **sign: Any
) -> dict[str, dict[str, Any]]:
    """patient-view: topic -> card. The cards' rows are written (as the background does)."""
    response = call(client, keys, PATIENT_VIEW, hook_body(prefetch=prefetch), **sign)
    assert response.status_code == 200, response.json
    app.extensions["cds_hooks"].screen.log.flush()
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


def answer(client: FlaskClient, keys: Keys, item: dict[str, Any], **sign: Any) -> None:
    """Feedback as the CDS Hooks sandbox sends it: no display, no comment."""
    body = {"feedback": [{"outcomeTimestamp": "2026-11-01T12:05:00.123Z", **item}]}
    token = keys.sign(f"{service_url(PATIENT_VIEW)}/feedback", **sign)
    response = client.post(
        f"/cds-services/{PATIENT_VIEW}/feedback",
        data=orjson.dumps(body),
        headers={**bearer(token), "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.json


def override(card: dict[str, Any], reason: dict[str, str] | None = WILL_REPEAT) -> dict[str, Any]:
    item: dict[str, Any] = {"card": card["uuid"], "outcome": "overridden"}
    if reason is not None:
        item["overrideReason"] = {"reason": reason}
    return item


def later(app: Flask, delta: timedelta) -> None:
    """Move the suppression clock (the wall clock: an answer is dated when it is received)."""
    app.extensions["cds_hooks"].screen.clock = lambda: datetime.now(UTC) + delta


def test_a_card_overridden_with_one_of_its_reasons_is_not_shown_again(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))
    again = open_chart(app, client, keys, trt_man_prefetch())
    assert "estradiol-low" not in again
    assert "monitoring-due" in again  # the others are not touched


def test_a_plain_dismiss_without_a_reason_does_not_keep_the_card_away(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"], reason=None))
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch())


def test_a_reason_coding_of_the_ehrs_own_also_acknowledges(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    local = {"code": "discussed-with-patient", "system": "https://ehr.example.org/reasons"}
    answer(client, keys, override(first["estradiol-low"], reason=local))
    assert "estradiol-low" not in open_chart(app, client, keys, trt_man_prefetch())


def accept(card: dict[str, Any], *suggestions: str) -> dict[str, Any]:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": s} for s in suggestions],
    }


def test_an_accepted_suggestion_acknowledges_its_card(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    card = open_chart(app, client, keys, trt_man_prefetch())["estradiol-low"]
    answer(client, keys, accept(card, card["suggestions"][0]["uuid"]))
    assert "estradiol-low" not in open_chart(app, client, keys, trt_man_prefetch())


def test_accepting_one_order_of_the_monitoring_card_acknowledges_that_check_only(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    group = open_chart(app, client, keys, trt_man_prefetch())["monitoring-due"]
    rules = group["extension"][EXTENSION_RULES]
    assert len(rules) >= 3 and "lipid-panel-due" in rules
    lipids = next(
        s for s in group["suggestions"] if "(rule lipid-panel-due)" in orjson.dumps(s).decode()
    )
    answer(client, keys, accept(group, lipids["uuid"]))
    again = open_chart(app, client, keys, trt_man_prefetch())["monitoring-due"]
    assert again["extension"][EXTENSION_RULES] == [r for r in rules if r != "lipid-panel-due"]


def test_overriding_the_monitoring_card_with_a_reason_acknowledges_every_check_on_it(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    group = open_chart(app, client, keys, trt_man_prefetch())["monitoring-due"]
    scheduled = {"code": "already-scheduled", "system": OVERRIDE_REASONS_SYSTEM}
    answer(client, keys, override(group, reason=scheduled))
    again = open_chart(app, client, keys, trt_man_prefetch())
    assert set(again) == {"estradiol-low"}


def test_a_new_result_brings_the_card_back(app: Flask, client: FlaskClient, keys: Keys) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))
    newer = trt_man_prefetch()
    newer["estradiol"] = bundle(estradiol_result("e2-2", 12.0, "2026-10-25"))
    back = open_chart(app, client, keys, newer)
    assert back["estradiol-low"]["indicator"] == "warning"


def test_the_same_result_changed_in_place_brings_the_card_back(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch(e2=11.0))
    answer(client, keys, override(first["estradiol-low"]))
    corrected = trt_man_prefetch(e2=13.0)  # Observation e2-1, amended
    assert "estradiol-low" in open_chart(app, client, keys, corrected)


def test_a_server_resaving_the_result_is_not_new_evidence(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))
    resaved = trt_man_prefetch()
    observation = resaved["estradiol"]["entry"][0]["resource"]
    observation["meta"] = {"versionId": "2", "lastUpdated": "2026-11-01T12:10:00Z"}
    observation["text"] = {"status": "generated", "div": "<div>regenerated</div>"}
    assert "estradiol-low" not in open_chart(app, client, keys, resaved)


def test_a_critical_card_comes_back_after_the_short_time(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch(e2=6.0))
    assert first["estradiol-low"]["indicator"] == "critical"
    answer(client, keys, override(first["estradiol-low"]))
    assert "estradiol-low" not in open_chart(app, client, keys, trt_man_prefetch(e2=6.0))
    later(app, timedelta(hours=4, seconds=1))  # critical_suppression_seconds: 4 hours
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch(e2=6.0))


def test_a_warning_comes_back_after_the_suppression_days(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))
    later(app, timedelta(days=29))
    assert "estradiol-low" not in open_chart(app, client, keys, trt_man_prefetch())
    later(app, timedelta(days=30, seconds=1))
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch())


def test_an_answer_from_another_ehr_does_not_hide_this_ehrs_card(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]), iss=OTHER_EHR)
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch())
    other = open_chart(app, client, keys, trt_man_prefetch(), iss=OTHER_EHR)
    answer(client, keys, override(other["estradiol-low"]), iss=OTHER_EHR)
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch())
    assert "estradiol-low" not in open_chart(app, client, keys, trt_man_prefetch(), iss=OTHER_EHR)


def test_an_answer_in_one_tenant_does_not_hide_the_card_in_another(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch(), tenant="clinic-a")
    answer(client, keys, override(first["estradiol-low"]), tenant="clinic-a")
    assert "estradiol-low" not in open_chart(
        app, client, keys, trt_man_prefetch(), tenant="clinic-a"
    )
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch(), tenant="clinic-b")


def test_an_order_hook_with_a_changed_order_shows_the_card_again(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))
    prefetch = trt_man_prefetch()
    order = prefetch["medicationRequests"]["entry"][0]["resource"]
    draft = {**order, "id": "rx-ana-renewal", "status": "draft", "authoredOn": "2026-11-01"}
    body = hook_body(
        "order-sign",
        prefetch=prefetch,
        draftOrders={
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": draft}],
        },
    )
    response = call(client, keys, "anastrozole-monitor-order-sign", body)
    assert "estradiol-low" in {c["source"]["topic"]["code"] for c in response.json["cards"]}


def test_the_store_knows_the_patient_by_a_keyed_hash_only(
    app: Flask, client: FlaskClient, keys: Keys, tmp_path: Path
) -> None:
    open_chart(app, client, keys, trt_man_prefetch())
    key_file = tmp_path / "patient-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    engine = app.extensions["runtime.store"].engine
    with engine.connect() as connection:
        rows = connection.execute(select(card_evidence_table)).mappings().all()
        dump = "\n".join(connection.connection.iterdump())  # every table, every row
    assert rows and {row["patient_key"] for row in rows} == {
        patient_key(key_file.read_bytes().strip(), "p1")
    }
    assert "'p1'" not in dump and "Patient/p1" not in dump


def test_the_patient_key_setting_is_used_instead_of_the_instance_file(
    make_settings: Callable[..., ProductSettings], keys: Keys, tmp_path: Path
) -> None:
    secret = "k" * 40
    app = create_app(make_settings(cards={"patient_key": secret}))
    open_chart(app, app.test_client(), keys, trt_man_prefetch())
    assert not (tmp_path / "patient-key").exists()
    with app.extensions["runtime.store"].engine.connect() as connection:
        stored = connection.execute(select(card_evidence_table.c.patient_key)).scalars().all()
    assert set(stored) == {patient_key(secret.encode(), "p1")}


def test_cards_are_shown_when_the_answers_cannot_be_read(
    app: Flask, client: FlaskClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy.exc import OperationalError

    first = open_chart(app, client, keys, trt_man_prefetch())
    answer(client, keys, override(first["estradiol-low"]))

    def unreachable(*_args: Any, **_kwargs: Any) -> list[Any]:
        raise OperationalError("SELECT", {}, Exception("database is gone"))

    monkeypatch.setattr(app.extensions["cds_hooks"].screen.log, "acknowledgements", unreachable)
    assert "estradiol-low" in open_chart(app, client, keys, trt_man_prefetch())


def test_metrics_count_findings_by_disposition_and_answers_by_rule_and_reason(
    app: Flask, client: FlaskClient, keys: Keys
) -> None:
    from tests.cds_hooks.test_metrics import samples, value

    first = open_chart(app, client, keys, trt_man_prefetch())
    item = override(first["estradiol-low"])
    item["overrideReason"]["userComment"] = "Patient Quill says he will come on Monday"
    answer(client, keys, item)
    answer(client, keys, override(first["monitoring-due"], reason=None))
    local = {"code": "ehr-local-code", "system": "https://ehr.example.org/reasons"}
    answer(client, keys, override(first["monitoring-due"], reason=local))
    open_chart(app, client, keys, trt_man_prefetch())
    text = client.get("/metrics").get_data(as_text=True)
    found = samples(text)
    findings = "anastrozole_cds_findings_total"
    svc = {"service": PATIENT_VIEW}
    assert value(found, findings, **svc, rule="estradiol-low", disposition="card") == 1
    assert value(found, findings, **svc, rule="estradiol-low", disposition="acknowledged") == 1
    assert value(found, findings, **svc, rule="lipid-panel-due", disposition="grouped") == 1
    assert value(found, findings, **svc, rule="anastrozole-intent", disposition="policy") == 2
    answers = "anastrozole_cds_card_answers_total"
    low = {**svc, "rule": "estradiol-low", "outcome": "overridden"}
    assert value(found, answers, **low, override_reason="will-repeat-test") == 1
    lipids = {**svc, "rule": "lipid-panel-due", "outcome": "overridden"}
    assert value(found, answers, **lipids, override_reason="none") == 1
    assert value(found, answers, **lipids, override_reason="other") == 1
    comments = "anastrozole_cds_card_answer_comments_total"
    assert value(found, comments, **svc, rule="estradiol-low") == 1
    assert "Quill" not in text and "ehr-local-code" not in text
