"""The app factory: JSON errors, CORS, health, logging without secrets, extension points."""

from __future__ import annotations

import gc
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from anastrozole_cds import app as app_module
from anastrozole_cds.app import create_app
from anastrozole_cds.server import create_worker_app
from anastrozole_cds.settings import load_settings
from runtime.logs import RedactSecrets
from runtime.store import Store


def make_app(tmp_path: Path, **overrides: Any) -> Flask:
    values: dict[str, Any] = {"store_url": "sqlite://", "instance_path": tmp_path}
    values.update(overrides)
    return create_app(load_settings(**values))


def test_healthz_reports_the_store(tmp_path: Path) -> None:
    response = make_app(tmp_path).test_client().get("/healthz")
    assert response.status_code == 200
    assert response.json["status"] == "ok" and response.json["store"] is True
    assert response.json["version"]
    assert response.json["jwtVerification"] is True
    insecure = make_app(tmp_path, insecure_skip_jwt_verification=True).test_client().get("/healthz")
    assert insecure.json["jwtVerification"] is False


def test_building_the_app_creates_no_table(tmp_path: Path) -> None:
    """Finding 1: every worker built its tables as it booted, and they raced; the one that
    lost exited 3, and gunicorn stopped the whole service. The schema is the migrations',
    run once before the workers (and healthz says what to run until then)."""
    database = tmp_path / "store.sqlite3"
    app = make_app(tmp_path, store_url=f"sqlite:///{database}")
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
    health = app.test_client().get("/healthz")
    assert health.status_code == 503
    assert "no tables yet: run `anastrozole-cds db upgrade`" in health.json["storeProblem"]


def test_the_app_is_built_while_the_database_is_down_and_healthz_says_so(
    tmp_path: Path,
) -> None:
    """A worker boots with the database down (nothing connects at build time) and /healthz
    tells "up" from "able to store"."""
    app = make_app(tmp_path, store_url="postgresql+psycopg://cds@127.0.0.1:1/cds")
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.json["status"] == "degraded"
    assert response.json["up"] is True and response.json["store"] is False
    assert "cannot be reached" in response.json["storeProblem"]


def test_an_unknown_path_is_404_json(tmp_path: Path) -> None:
    response = make_app(tmp_path).test_client().get("/nothing-here")
    assert response.status_code == 404
    assert response.json["error"] == "not_found"
    assert response.headers["X-Request-Id"]


def test_an_unexpected_error_is_a_json_500_without_a_stack_trace(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(tmp_path)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("internal detail that must not leak")

    with caplog.at_level(logging.ERROR):
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert response.json["error"] == "internal_error"
    assert response.json["requestId"] == response.headers["X-Request-Id"]
    text = response.get_data(as_text=True)
    assert "Traceback" not in text and "internal detail" not in text
    assert any("RuntimeError" in record.getMessage() for record in caplog.records)


def test_a_cors_preflight_is_answered_without_a_jwt(tmp_path: Path) -> None:
    response = (
        make_app(tmp_path)
        .test_client()
        .options(
            "/cds-services/anastrozole-monitor-patient-view",
            headers={
                "Origin": "https://ehr.example.org",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    assert int(response.headers["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize(
    "path", ["/cds-services", "/cds-services/anastrozole-monitor-order-sign/feedback"]
)
def test_preflights_work_for_discovery_and_feedback(tmp_path: Path, path: str) -> None:
    response = (
        make_app(tmp_path)
        .test_client()
        .options(
            path,
            headers={"Origin": "https://ehr.example.org", "Access-Control-Request-Method": "POST"},
        )
    )
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_cors_headers_are_on_errors_too(tmp_path: Path) -> None:
    response = (
        make_app(tmp_path)
        .test_client()
        .post(
            "/cds-services/anastrozole-monitor-patient-view",
            json={},
            headers={"Origin": "https://ehr.example.org"},
        )
    )
    assert response.status_code == 401
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_an_origin_allowlist_is_echoed_and_others_get_no_cors(tmp_path: Path) -> None:
    client = make_app(tmp_path, cors_allowed_origins=["https://ehr.example.org"]).test_client()
    allowed = client.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://ehr.example.org"
    assert "Origin" in allowed.headers["Vary"]
    other = client.get("/cds-services", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_the_rule_pages_the_cards_link_to_exist(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    index = client.get("/about/rules")
    assert index.status_code == 200 and "dexa-due" in index.get_data(as_text=True)
    page = client.get("/about/rules/dexa-due")
    assert page.status_code == 200 and "Already scheduled elsewhere" in page.get_data(as_text=True)
    assert client.get("/about/rules/<script>").status_code == 404


def test_blueprints_are_composed_from_one_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def init_app(app: Flask, settings: Any, store: Store) -> None:
        seen.append(type(store).__name__)

        @app.get("/extra")
        def extra() -> str:
            return "ok"

    monkeypatch.setattr(app_module, "FACES", [*app_module.FACES, init_app])
    app = make_app(tmp_path)
    assert seen == ["Store"]
    assert app.test_client().get("/extra").get_data(as_text=True) == "ok"
    assert app.test_client().get("/cds-services").status_code == 200


@pytest.mark.parametrize(
    "message",
    [
        "Authorization: Bearer abc.def-ghi_jkl",
        "token eyJhbGciOiJFUzM4NCJ9.eyJpc3MiOiJ4In0.c2ln in a message",
        '{"access_token": "s3cr3t-value", "token_type": "Bearer"}',
    ],
)
def test_secrets_are_redacted_from_log_lines(message: str) -> None:
    record = logging.LogRecord("cds_hooks", logging.INFO, __file__, 1, "%s", (message,), None)
    assert RedactSecrets().filter(record)
    text = record.getMessage()
    assert "abc.def" not in text and "eyJhbGci" not in text and "s3cr3t" not in text
    assert "redacted" in text


def test_start_up_warns_about_missing_issuers_and_base_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        make_app(tmp_path)
    messages = " ".join(record.getMessage() for record in caplog.records)
    assert "no trusted issuers" in messages
    assert "public_base_url is not set" in messages


def test_aud_uses_the_request_host_when_no_base_url_is_set(tmp_path: Path) -> None:
    # The discovery document is open; a service URL built from the Host header is what the
    # JWT aud must then name (documented: set public_base_url in production).
    client = make_app(tmp_path).test_client()
    assert client.get("/cds-services", base_url="https://cds.internal.example").status_code == 200


def test_a_server_worker_freezes_what_start_up_built(tmp_path: Path) -> None:
    """The long-lived start-up objects are out of the GC's sight, so full collections during
    calls do not walk them (the p99 pauses measured in docs/performance.md)."""
    gc.unfreeze()
    try:
        app = create_worker_app(load_settings(store_url="sqlite://", instance_path=tmp_path))
        assert isinstance(app, Flask)
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_a_chunked_body_over_the_limit_is_413_under_any_wsgi_server(tmp_path: Path) -> None:
    """Finding 12: under gunicorn's own workers a chunked body over the limit was cut and
    answered 200 (tests/security/test_sec_slow_clients.py). `serve` refuses it before the
    app; the app also reads such a body whole itself, up to the limit, under any server."""
    import io

    app = make_app(tmp_path, max_request_bytes=1024)
    app.add_url_rule("/echo", "echo", lambda: str(len(request_data())), methods=["POST"])

    def post(body: bytes) -> Any:
        return app.test_client().post(
            "/echo",
            input_stream=io.BytesIO(body),
            environ_overrides={"wsgi.input_terminated": True},
        )

    assert post(b"x" * 1024).get_data(as_text=True) == "1024"
    refused = post(b"x" * 1025)
    assert refused.status_code == 413
    assert refused.json["error"] == "request_entity_too_large"


def request_data() -> bytes:
    from flask import request

    return request.get_data(cache=False)
