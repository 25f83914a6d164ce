"""`anastrozole-cds keys generate`, the served JWKS, and the SMART settings."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from ehr.keys import KeyFileError, load_signing_key
from smartapp.cli import keys
from smartapp.config import SmartSettings
from tests.smartapp.smart_helpers import FHIR_BASE, build_app


@pytest.mark.parametrize(("alg", "kty"), [("ES384", "EC"), ("RS384", "RSA")])
def test_keys_generate_writes_a_private_key_file_and_prints_the_public_jwks(
    tmp_path: Path, alg: str, kty: str
) -> None:
    out = tmp_path / "keys" / "smart.json"
    result = CliRunner().invoke(keys, ["generate", "--out", str(out), "--alg", alg])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    private = json.loads(out.read_text())["keys"][0]
    assert private["kty"] == kty and private["alg"] == alg and "d" in private
    public = json.loads(result.stdout)["keys"][0]
    assert public["kid"] == private["kid"] and "d" not in public and public["alg"] == alg
    assert load_signing_key(out).alg == alg


def test_keys_generate_does_not_overwrite_without_force_and_can_rotate(tmp_path: Path) -> None:
    out = tmp_path / "smart.json"
    runner = CliRunner()
    assert runner.invoke(keys, ["generate", "--out", str(out)]).exit_code == 0
    first = json.loads(out.read_text())["keys"][0]["kid"]
    refused = runner.invoke(keys, ["generate", "--out", str(out)])
    assert refused.exit_code != 0 and "--force" in refused.output
    assert runner.invoke(keys, ["generate", "--out", str(out), "--add"]).exit_code == 0
    kids = [key["kid"] for key in json.loads(out.read_text())["keys"]]
    assert len(kids) == 2 and kids[1] == first  # the new key signs, the old one stays published
    assert load_signing_key(out).kid == kids[0]


def test_the_app_publishes_its_public_keys_at_a_stable_url(tmp_path: Path) -> None:
    out = tmp_path / "smart.json"
    CliRunner().invoke(keys, ["generate", "--out", str(out)])
    app = build_app(tmp_path, client_auth="private_key_jwt", private_key_file=out)
    response = app.test_client().get("/smart/jwks.json")
    assert response.status_code == 200
    (key,) = response.json["keys"]
    assert "d" not in key and key["use"] == "sig" and key["alg"] == "ES384"
    assert "max-age" in response.headers["Cache-Control"]


def test_a_public_client_publishes_an_empty_key_set(tmp_path: Path) -> None:
    assert build_app(tmp_path).test_client().get("/smart/jwks.json").json == {"keys": []}


def test_a_broken_key_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}')
    with pytest.raises(KeyFileError, match="no private part"):
        load_signing_key(bad)
    with pytest.raises(KeyFileError, match="not found"):
        load_signing_key(tmp_path / "missing.json")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS", f'["{FHIR_BASE}/"]')
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_DEFAULT_ISSUER", FHIR_BASE)
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_CLIENT_ID", "site-app")
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_EXTRA_RESOURCES", '["ServiceRequest"]')
    settings = SmartSettings()
    assert settings.allowed_issuers == (FHIR_BASE,)
    assert settings.allows(FHIR_BASE + "/") and not settings.allows("https://other.example/fhir")
    assert settings.client_id == "site-app" and settings.extra_resources == ("ServiceRequest",)
    assert settings.frame_ancestor_sources() == ("'self'", "http://127.0.0.1:9999")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"default_issuer": "https://x.example/fhir"}, "default_issuer must be one of"),
        ({"client_auth": "private_key_jwt"}, "needs private_key_file"),
        ({"allowed_issuers": ["not a url"]}, "absolute http"),
    ],
)
def test_bad_settings_fail_at_start_up(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        SmartSettings(**values)


def test_frame_ancestors_can_be_set_explicitly() -> None:
    settings = SmartSettings(frame_ancestors=("https://ehr.example",))
    assert settings.frame_ancestor_sources() == ("https://ehr.example",)
    assert SmartSettings(frame_ancestors=()).frame_ancestor_sources() == ("'none'",)


def test_the_app_factory_registers_the_smart_app_from_its_blueprint_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `FACES.append(smartapp.init_app)` in anastrozole_cds/app.py gives."""
    import smartapp
    from anastrozole_cds import app as app_module
    from anastrozole_cds.settings import load_settings

    blueprints = [init for init in app_module.FACES if init is not smartapp.init_app]
    monkeypatch.setattr(app_module, "FACES", [*blueprints, smartapp.init_app])
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS", f'["{FHIR_BASE}"]')
    app = app_module.create_app(load_settings(store_url="sqlite://", instance_path=tmp_path))
    client = app.test_client()
    assert client.get("/launch.html").status_code == 200
    assert client.get("/smart/jwks.json").json == {"keys": []}
    assert client.get("/healthz").status_code == 200
    assert app.extensions["smartapp"].smart.allowed_issuers == (FHIR_BASE,)


def test_the_product_command_line_gets_keys_generate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What registering smartapp.cli.COMMANDS in anastrozole_cds/cli.py gives."""
    from anastrozole_cds.cli import main

    monkeypatch.setitem(main.commands, "keys", keys)
    out = tmp_path / "k.json"
    result = CliRunner().invoke(main, ["keys", "generate", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["keys"][0]["alg"] == "ES384"
