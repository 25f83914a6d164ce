"""Trust at the edges (issue 17, item 7; issue 18, findings 9 and 16): a 401 says only that
the token was not accepted; absurd token times are refused; a tenant allowlist per issuer,
with feedback and metrics by tenant; no plain http to an EHR but on loopback unless allowed;
what one database stores the other stores too."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
import responses
from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from anastrozole_cds.app import create_app
from anastrozole_cds.cli import main
from anastrozole_cds.settings import load_settings
from cds_hooks.views import NOT_ACCEPTED
from runtime.settings import ConfigError, ProductSettings
from tests.app.postgres_server import fresh_database, postgres_server
from tests.cds_hooks.cds_helpers import (
    BASE,
    ISSUER,
    PATIENT_VIEW,
    Keys,
    bearer,
    hook_body,
    service_url,
    trt_man_prefetch,
)
from tests.security.sec_live_server import LiveService, live_service
from tests.smartapp.smart_helpers import build_app, open_launch_html

FEEDBACK = f"/cds-services/{PATIENT_VIEW}/feedback"


def feedback_body(card: str, comment: str = "no") -> dict[str, Any]:
    return {
        "feedback": [
            {
                "card": card,
                "outcome": "overridden",
                "overrideReason": {"userComment": comment},
                "outcomeTimestamp": "2026-11-01T12:05:00Z",
            }
        ]
    }


# -- a 401 says only "not accepted" -------------------------------------------------------------


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[LiveService]:
    with live_service(tmp_path_factory.mktemp("trust"), keys, workers=1) as running:
        yield running


BAD_TOKENS: dict[str, Callable[[Keys, str], str]] = {
    "expired": lambda keys, aud: keys.sign(aud, exp=1_000_000_000, iat=999_999_000),
    "another audience": lambda keys, aud: keys.sign(f"{aud}/other"),
    "untrusted issuer": lambda keys, aud: keys.sign(aud, iss="https://evil.example"),
    "iat=-1e30": lambda keys, aud: keys.sign(aud, iat=-1e30),
    "iat=1e30": lambda keys, aud: keys.sign(aud, iat=1e30),
    "exp=1e300": lambda keys, aud: keys.sign(aud, exp=1e300),
    "nbf=-1e30": lambda keys, aud: keys.sign(aud, nbf=-1e30),
    "iat a day before a short exp": lambda keys, aud: keys.sign(aud, iat=1_700_000_000),
}


@pytest.mark.integration
def test_every_refused_token_gets_the_same_401_and_the_reason_goes_to_the_log(
    service: LiveService, keys: Keys
) -> None:
    aud = f"{service.base}/cds-services/{PATIENT_VIEW}"
    bodies = set()
    for case, make in BAD_TOKENS.items():
        answer = requests.post(
            aud,
            json=hook_body(prefetch=trt_man_prefetch()),
            headers={"Authorization": f"Bearer {make(keys, aud)}"},
            timeout=10,
        )
        assert answer.status_code == 401, case
        bodies.add(answer.content)
    assert [orjson.loads(body) for body in bodies] == [
        {"error": "unauthorized", "message": NOT_ACCEPTED}
    ]
    log = service.log.read_text()
    for said in ("JWT has expired", "JWT aud", "JWT issuer is not trusted", "not a plausible time"):
        assert said in log
    scraped = requests.get(f"{service.base}/metrics", timeout=5).text
    assert 'anastrozole_cds_jwt_refusals_total{reason="claim_invalid"} 4.0' in scraped
    assert 'anastrozole_cds_jwt_refusals_total{reason="lifetime_too_long"} 1.0' in scraped


# -- tenants ---------------------------------------------------------------------------------------


@pytest.fixture
def tenant_client(make_settings: Callable[..., ProductSettings], keys: Keys) -> FlaskClient:
    issuer = {"iss": ISSUER, "jwks_file": str(keys.jwks_file), "tenants": ["clinic-a", "clinic-b"]}
    return create_app(make_settings(issuers=[issuer])).test_client()


def _post(client: FlaskClient, path: str, body: Any, token: str) -> Any:
    return client.post(
        path, data=orjson.dumps(body), headers=bearer(token), content_type="application/json"
    )


def test_a_tenant_not_listed_for_its_issuer_is_refused(
    tenant_client: FlaskClient, keys: Keys
) -> None:
    path = f"/cds-services/{PATIENT_VIEW}"
    body = hook_body(prefetch=trt_man_prefetch())
    assert (
        _post(
            tenant_client, path, body, keys.sign(service_url(PATIENT_VIEW), tenant="clinic-a")
        ).status_code
        == 200
    )
    for tenant in ("clinic-z", None):
        refused = _post(
            tenant_client, path, body, keys.sign(service_url(PATIENT_VIEW), tenant=tenant)
        )
        assert refused.status_code == 401
    scraped = tenant_client.get("/metrics").get_data(as_text=True)
    assert 'anastrozole_cds_jwt_refusals_total{reason="tenant_not_allowed"} 2.0' in scraped
    assert 'anastrozole_cds_tenant_requests_total{tenant="clinic-a"} 1.0' in scraped


def test_feedback_is_stored_and_counted_by_tenant(tenant_client: FlaskClient, keys: Keys) -> None:
    token = keys.sign(f"{BASE}{FEEDBACK}", tenant="clinic-b")
    assert _post(tenant_client, FEEDBACK, feedback_body("card-1"), token).status_code == 200
    store = tenant_client.application.extensions["runtime.store"]
    assert [row["tenant"] for row in store.feedback()] == ["clinic-b"]
    scraped = tenant_client.get("/metrics").get_data(as_text=True)
    assert (
        f'anastrozole_cds_tenant_feedback_total{{service="{PATIENT_VIEW}",tenant="clinic-b"}} 1.0'
        in scraped
    )


# -- plain http ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"allowed_fhir_servers": ["http://ehr.example.org/fhir"]},
        {"issuers": [{"iss": ISSUER, "jwks_url": "http://ehr.example.org/jwks"}]},
        {
            "issuers": [
                {
                    "iss": ISSUER,
                    "jwks_file": "/k.json",
                    "fhir_servers": ["HTTP://ehr.example.org/fhir"],
                }
            ]
        },
        {"smart": {"allowed_issuers": ["http://ehr.example.org/fhir"]}},
    ],
    ids=["fhir-server", "jwks-url", "issuer-fhir-server", "smart-issuer"],
)
def test_an_ehr_on_plain_http_is_refused_at_start_up_unless_its_host_is_allowed(
    overrides: dict[str, Any],
) -> None:
    with pytest.raises(ConfigError, match=r"plain http: use https, or add ehr\.example\.org"):
        load_settings(**overrides)
    allowed = load_settings(plain_http_hosts=["ehr.example.org"], **overrides)
    assert allowed.plain_http_hosts == ("ehr.example.org",)


def test_loopback_needs_no_setting_and_serve_names_the_setting_in_one_line(tmp_path: Path) -> None:
    load_settings(allowed_fhir_servers=["http://127.0.0.1:8081/fhir"])  # development as before
    result = CliRunner().invoke(
        main,
        ["serve"],
        env={
            "ANASTROZOLE_CDS_INSTANCE_PATH": str(tmp_path),
            "ANASTROZOLE_CDS_ALLOWED_FHIR_SERVERS": '["http://ehr.example.org/fhir"]',
        },
    )
    assert result.exit_code == 1
    assert "allowed_fhir_servers" in result.output and "plain http" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_launch_whose_sign_in_service_is_on_plain_http_elsewhere_is_refused(
    tmp_path: Path,
) -> None:
    """A loopback issuer (allowed over http) whose token endpoint is plain http on another
    host: the EHR's token would cross the network in clear. (For an https issuer, discovery
    already refused an http endpoint.)"""
    iss = "http://127.0.0.1:9999/fhir"
    app = build_app(tmp_path, allowed_issuers=(iss,))
    with responses.RequestsMock() as ehr, app.test_client() as browser:
        ehr.get(
            f"{iss}/.well-known/smart-configuration",
            json={
                "issuer": "http://127.0.0.1:9999",
                "authorization_endpoint": "http://127.0.0.1:9999/authorize",
                "token_endpoint": "http://auth.example.org/token",
                "code_challenge_methods_supported": ["S256"],
                "capabilities": ["launch-ehr"],
            },
        )
        answer = open_launch_html(browser, query_string={"iss": iss, "launch": "l1"})
    assert answer.status_code == 502
    assert 'data-problem="ehr-unsuitable"' in answer.get_data(as_text=True)
    assert "not on https" in answer.get_data(as_text=True)


# -- the same on both databases (finding 9) ------------------------------------------------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.mark.integration
@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_a_nul_in_feedback_and_a_long_jti_are_stored_alike_on_both_databases(
    tmp_path: Path, keys: Keys, database: str, request: pytest.FixtureRequest
) -> None:
    """PostgreSQL refused both (503 for ever, the batch lost) where SQLite stored them."""
    url = (
        f"sqlite:///{tmp_path / 'store.sqlite3'}"
        if database == "sqlite"
        else fresh_database(request.getfixturevalue("postgres_url"), "nul_and_jti")
    )
    with live_service(tmp_path, keys, workers=1, store_url=url) as service:
        token = keys.sign(f"{service.base}{FEEDBACK}", jti="j" * 600)
        headers = {"Authorization": f"Bearer {token}"}
        first = requests.post(
            f"{service.base}{FEEDBACK}",
            json=feedback_body("card-nul", "before\x00after"),
            headers=headers,
            timeout=10,
        )
        assert first.status_code == 200 and first.json() == {"received": 1}
        replayed = requests.post(
            f"{service.base}{FEEDBACK}",
            json=feedback_body(str(uuid.uuid4())),
            headers=headers,
            timeout=10,
        )
        assert replayed.status_code == 401  # the 600-character jti was remembered
    engine = create_engine(url)
    with engine.connect() as connection:
        stored = connection.execute(text("SELECT user_comment FROM cds_feedback")).scalars().all()
    engine.dispose()
    assert stored == ["before\ufffdafter"]
