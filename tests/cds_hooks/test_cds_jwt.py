"""The CDS client's JWT (CDS Hooks 2.0 "Trusting CDS Clients"): accepted and refused."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import responses
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OctKey

from anastrozole_cds.app import create_app
from cds_hooks.views import NOT_ACCEPTED
from runtime.settings import ProductSettings
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

URL = f"/cds-services/{PATIENT_VIEW}"


def post(client: FlaskClient, token: str | None) -> Any:
    headers = bearer(token) if token is not None else {}
    return client.post(URL, json=hook_body(prefetch=trt_man_prefetch()), headers=headers)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).rstrip(b"=").decode()


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_a_valid_jwt_is_accepted(client: FlaskClient, keys: Keys, alg: str) -> None:
    response = post(client, keys.sign(service_url(PATIENT_VIEW), alg=alg))
    assert response.status_code == 200, response.json
    assert response.json["cards"]


def test_aud_may_be_a_list_and_may_end_with_a_slash(client: FlaskClient, keys: Keys) -> None:
    token = keys.sign(["https://other.example/x", service_url(PATIENT_VIEW) + "/"])
    assert post(client, token).status_code == 200


def _now() -> int:
    return int(time.time())


REFUSED: dict[str, Callable[[Keys], str]] = {
    "alg none": lambda keys: (
        _b64({"alg": "none", "typ": "JWT", "kid": "ehr-es384"})
        + "."
        + _b64(
            {
                "iss": ISSUER,
                "aud": service_url(PATIENT_VIEW),
                "exp": _now() + 60,
                "iat": _now(),
                "jti": "n1",
            }
        )
        + "."
    ),
    "HS256": lambda keys: jwt.encode(
        {"alg": "HS256", "typ": "JWT", "kid": "ehr-es384"},
        {
            "iss": ISSUER,
            "aud": service_url(PATIENT_VIEW),
            "exp": _now() + 60,
            "iat": _now(),
            "jti": "h1",
        },
        OctKey.generate_key(256),
        algorithms=["HS256"],
    ),
    "ES256": lambda keys: jwt.encode(
        {"alg": "ES256", "typ": "JWT", "kid": "other"},
        {
            "iss": ISSUER,
            "aud": service_url(PATIENT_VIEW),
            "exp": _now() + 60,
            "iat": _now(),
            "jti": "e1",
        },
        ECKey.generate_key("P-256", parameters={"kid": "other"}),
        algorithms=["ES256"],
    ),
    "wrong aud": lambda keys: keys.sign(f"{BASE}/cds-services/anastrozole-monitor-order-sign"),
    "aud of another host": lambda keys: keys.sign(
        f"https://evil.example/cds-services/{PATIENT_VIEW}"
    ),
    "expired": lambda keys: keys.sign(
        service_url(PATIENT_VIEW), exp=_now() - 600, iat=_now() - 900
    ),
    "iat in the future": lambda keys: keys.sign(
        service_url(PATIENT_VIEW), iat=_now() + 600, exp=_now() + 900
    ),
    "lifetime too long": lambda keys: keys.sign(service_url(PATIENT_VIEW), exp=_now() + 86_400),
    "unknown iss": lambda keys: keys.sign(
        service_url(PATIENT_VIEW), iss="https://stranger.example"
    ),
    "no iss": lambda keys: keys.sign(service_url(PATIENT_VIEW), iss=None),
    "no jti": lambda keys: keys.sign(service_url(PATIENT_VIEW), jti=None),
    "no exp": lambda keys: keys.sign(service_url(PATIENT_VIEW), exp=None),
    "unlisted jku": lambda keys: keys.sign(
        service_url(PATIENT_VIEW), header={"jku": "https://evil.example/jwks"}
    ),
    "unknown kid": lambda keys: keys.sign(service_url(PATIENT_VIEW), kid="not-in-the-set"),
    "no kid": lambda keys: jwt.encode(
        {"alg": "ES384", "typ": "JWT"},
        {
            "iss": ISSUER,
            "aud": service_url(PATIENT_VIEW),
            "exp": _now() + 60,
            "iat": _now(),
            "jti": "k1",
        },
        keys.es384,
        algorithms=["ES384"],
    ),
    "bad signature": lambda keys: keys.sign(
        service_url(PATIENT_VIEW), key=ECKey.generate_key("P-384", parameters={"kid": "ehr-es384"})
    ),
    "tampered payload": lambda keys: _tamper(keys.sign(service_url(PATIENT_VIEW))),
    "typ not JWT": lambda keys: keys.sign(service_url(PATIENT_VIEW), header={"typ": "JWE"}),
    "garbage": lambda keys: "not-a-jwt",
}


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["iss"] = ISSUER
    claims["jti"] = "tampered"
    return ".".join([header, _b64(claims), signature])


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_bad_jwt_is_refused_with_a_json_reason(
    client: FlaskClient, keys: Keys, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    response = post(client, REFUSED[case](keys))
    assert response.status_code == 401, (case, response.json)
    assert response.json["error"] == "unauthorized"
    assert response.json["message"] == NOT_ACCEPTED  # the reason is the log's only
    assert "CDS call refused (401" in caplog.text and ": JWT" in caplog.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_replayed_jti_is_refused(
    client: FlaskClient, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    token = keys.sign(service_url(PATIENT_VIEW))
    assert post(client, token).status_code == 200
    replay = post(client, token)
    assert replay.status_code == 401
    assert "replay" in caplog.text


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_call_without_a_bearer_jwt_is_refused(
    client: FlaskClient, header: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client.post(URL, json=hook_body(prefetch=trt_man_prefetch()), headers=headers)
    assert response.status_code == 401
    assert "Bearer" in caplog.text


def test_keys_from_a_jwks_url_are_fetched_and_cached(
    keys: Keys, make_settings: Callable[..., ProductSettings]
) -> None:
    jwks_url = "https://ehr.example.org/.well-known/jwks.json"
    settings = make_settings(issuers=[{"iss": ISSUER, "jwks_url": jwks_url}])
    client = create_app(settings).test_client()
    with responses.RequestsMock() as mock:
        mock.get(jwks_url, json=KeySet([keys.es384, keys.rs384]).as_dict(private=False))
        for alg in ("ES384", "RS384", "ES384"):
            assert post(client, keys.sign(service_url(PATIENT_VIEW), alg=alg)).status_code == 200
        assert len(mock.calls) == 1


def test_a_listed_jku_is_used_and_an_unlisted_one_never_fetched(
    keys: Keys, make_settings: Callable[..., ProductSettings], caplog: pytest.LogCaptureFixture
) -> None:
    pinned = "https://ehr.example.org/jwks"
    listed = "https://keys.ehr.example.org/jwks"
    settings = make_settings(issuers=[{"iss": ISSUER, "jwks_url": pinned, "allowed_jku": [listed]}])
    client = create_app(settings).test_client()
    with responses.RequestsMock() as mock:  # any other URL fetched would fail the test
        mock.get(listed, json=KeySet([keys.es384]).as_dict(private=False))
        ok = post(client, keys.sign(service_url(PATIENT_VIEW), header={"jku": listed}))
        refused = post(
            client,
            keys.sign(service_url(PATIENT_VIEW), header={"jku": "https://evil.example/jwks"}),
        )
    assert ok.status_code == 200
    assert refused.status_code == 401
    assert "jku" in caplog.text


def test_an_unreachable_jwks_url_refuses_without_leaking(
    keys: Keys, make_settings: Callable[..., ProductSettings], caplog: pytest.LogCaptureFixture
) -> None:
    jwks_url = "https://ehr.example.org/jwks"
    client = create_app(
        make_settings(issuers=[{"iss": ISSUER, "jwks_url": jwks_url}])
    ).test_client()
    with responses.RequestsMock() as mock:
        mock.get(jwks_url, status=500)
        response = post(client, keys.sign(service_url(PATIENT_VIEW)))
    assert response.status_code == 401
    assert response.json["message"] == NOT_ACCEPTED
    assert "issuer key set unavailable" in caplog.text


def test_the_development_switch_skips_verification(
    make_settings: Callable[..., ProductSettings], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(insecure_skip_jwt_verification=True)
    with caplog.at_level("WARNING"):
        client = create_app(settings).test_client()
    assert any("INSECURE" in r.getMessage() for r in caplog.records)
    response = client.post(URL, json=hook_body(prefetch=trt_man_prefetch()))
    assert response.status_code == 200


def test_verification_is_on_by_default() -> None:
    assert ProductSettings().insecure_skip_jwt_verification is False


def test_discovery_is_open_unless_configured(
    client: FlaskClient, keys: Keys, make_settings: Callable[..., ProductSettings]
) -> None:
    assert client.get("/cds-services").status_code == 200
    strict = create_app(make_settings(discovery_requires_jwt=True)).test_client()
    assert strict.get("/cds-services").status_code == 401
    token = keys.sign(f"{BASE}/cds-services")
    assert strict.get("/cds-services", headers=bearer(token)).status_code == 200
