"""The JWT `aud` is checked against public_base_url, never against the Host header a caller
chooses: with trusted issuers and no public_base_url the service does not start, and `serve`
takes the URL from the address it listens on when that address names one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

import anastrozole_cds.server as app_module
from anastrozole_cds.app import create_app
from anastrozole_cds.cli import main
from runtime.settings import ConfigError, ProductSettings, served_at
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    bearer,
    hook_body,
    trt_man_prefetch,
)

OTHER = "http://other-cds.example.net"


def test_trusted_issuers_without_public_base_url_stop_start_up(
    make_settings: Callable[..., ProductSettings],
) -> None:
    with pytest.raises(ConfigError, match="public_base_url is not set"):
        create_app(make_settings(public_base_url=None))


@pytest.mark.parametrize(
    "overrides",
    [{"issuers": []}, {"insecure_skip_jwt_verification": True}],
    ids=["no issuers: every call refused", "no JWT check: development"],
)
def test_without_an_aud_check_the_service_starts_without_public_base_url(
    make_settings: Callable[..., ProductSettings], overrides: dict[str, Any]
) -> None:
    client = create_app(make_settings(public_base_url=None, **overrides)).test_client()
    assert client.get("/cds-services").status_code == 200


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "http://127.0.0.1:8080"),
        ("localhost", "http://localhost:8080"),
        ("::1", "http://[::1]:8080"),
        ("0.0.0.0", None),  # every address: names no URL
        ("::", None),
    ],
)
def test_serve_takes_the_public_url_from_the_address_it_listens_on(
    make_settings: Callable[..., ProductSettings], host: str, expected: str | None
) -> None:
    assert served_at(make_settings(public_base_url=None), host, 8080).public_base_url == expected


def test_a_configured_public_url_wins_over_the_address(
    make_settings: Callable[..., ProductSettings],
) -> None:
    settings = make_settings(public_base_url="https://cds.example.org")
    assert served_at(settings, "127.0.0.1", 8080).public_base_url == "https://cds.example.org"


def _post(client: Any, keys: Keys, aud: str, host_url: str) -> Any:
    return client.post(
        f"/cds-services/{PATIENT_VIEW}",
        data=orjson.dumps(hook_body(prefetch=trt_man_prefetch())),
        base_url=host_url,
        headers={
            **bearer(keys.sign(f"{aud}/cds-services/{PATIENT_VIEW}")),
            "Content-Type": "application/json",
        },
    )


def test_a_token_for_another_host_is_refused_whatever_the_host_header(
    make_settings: Callable[..., ProductSettings], keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    settings = served_at(make_settings(public_base_url=None), "127.0.0.1", 8080)
    client = create_app(settings).test_client()
    refused = _post(client, keys, OTHER, OTHER)
    assert refused.status_code == 401
    assert "aud" in caplog.text  # the reason is logged; the 401 says only "not accepted"

    answered = _post(client, keys, "http://127.0.0.1:8080", OTHER)
    assert answered.status_code == 200
    links = [link["url"] for card in answered.json["cards"] for link in card.get("links", [])]
    assert links and not any(OTHER in url for url in links)


def test_serve_hands_the_derived_public_url_to_its_workers(
    make_settings: Callable[..., ProductSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[ProductSettings] = []
    monkeypatch.setattr(app_module, "create_worker_app", built.append)
    monkeypatch.setattr(BaseApplication, "run", lambda server: server.load())
    settings = make_settings(public_base_url=None, metrics_enabled=False)
    app_module.serve(settings, host="127.0.0.1", port=8181)
    assert [s.public_base_url for s in built] == ["http://127.0.0.1:8181"]


def test_serve_on_every_address_without_public_base_url_stops_with_the_reason(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    def never_run(_server: Any) -> None:
        raise AssertionError("the server must not start")

    monkeypatch.setattr(BaseApplication, "run", never_run)
    monkeypatch.setenv("ANASTROZOLE_CDS_STORE_URL", "sqlite://")
    monkeypatch.setenv("ANASTROZOLE_CDS_METRICS_ENABLED", "false")
    monkeypatch.setenv(
        "ANASTROZOLE_CDS_ISSUERS",
        orjson.dumps([{"iss": ISSUER, "jwks_file": str(keys.jwks_file)}]).decode(),
    )
    monkeypatch.delenv("ANASTROZOLE_CDS_PUBLIC_BASE_URL", raising=False)
    monkeypatch.delenv("ANASTROZOLE_CDS_CONFIG", raising=False)
    result = CliRunner().invoke(main, ["serve", "--host", "0.0.0.0", "--port", "8181"])
    assert result.exit_code == 1
    assert "public_base_url is not set" in result.output
