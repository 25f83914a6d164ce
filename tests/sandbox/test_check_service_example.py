"""docs/integrators.md's `check --service` and order-select examples, as files that can be
followed: the EHR key pair from `python -m sandbox.ehr_keys`, the service settings in
docs/examples/check-service.toml, and the draft order in docs/examples/draft-tamoxifen.json."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner
from fhir.resources.R4B.medicationrequest import MedicationRequest

from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from clinical.valuesets import load as load_valuesets
from sandbox.ehr_client import hook_context, hook_request, load_signing_key, service_url, sign_jwt
from sandbox.ehr_keys import main as ehr_keys
from tests.cds_hooks.cds_helpers import trt_man_prefetch

ROOT = Path(__file__).parents[2]
EXAMPLES = ROOT / "docs" / "examples"
GUIDE = ROOT / "docs" / "integrators.md"


def test_ehr_keys_writes_a_private_jwk_for_check_and_its_public_key_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(ehr_keys, [])
    assert result.exit_code == 0, result.output
    private_file = tmp_path / "instance" / "ehr-private.jwk.json"
    jwks = orjson.loads((tmp_path / "instance" / "ehr-jwks.json").read_bytes())
    assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    key = load_signing_key(orjson.loads(private_file.read_bytes()))  # what `check --key` reads
    assert [public["kid"] for public in jwks["keys"]] == [key.kid]
    assert "d" not in jwks["keys"][0]

    again = CliRunner().invoke(ehr_keys, [])  # the guide run twice keeps the key
    assert again.exit_code == 0, again.output
    assert "kept" in again.output
    assert orjson.loads(private_file.read_bytes()) == key.as_dict(private=True)


def test_the_example_settings_trust_the_key_ehr_keys_makes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call signed as `check --service ... --key ... --issuer ...` signs it is accepted."""
    monkeypatch.chdir(tmp_path)  # serve starts in the project folder: paths are relative
    assert CliRunner().invoke(ehr_keys, []).exit_code == 0
    settings = load_settings(
        EXAMPLES / "check-service.toml", store_url="sqlite://", evaluation_time="2026-11-01T12:00Z"
    )
    [issuer] = settings.issuers
    key = load_signing_key(orjson.loads(Path("instance/ehr-private.jwk.json").read_bytes()))
    url = service_url(str(settings.public_base_url), "patient-view")
    body = hook_request(
        "patient-view",
        issuer.fhir_servers[0],
        hook_context("patient-view", "p1"),
        prefetch=trt_man_prefetch(),
    )
    with create_app(settings).test_client() as client:
        response = client.post(
            url.removeprefix(str(settings.public_base_url).rstrip("/")),
            data=orjson.dumps(body),
            headers={
                "Authorization": f"Bearer {sign_jwt(key, issuer=issuer.iss, audience=url)}",
                "Content-Type": "application/json",
            },
        )
    assert response.status_code == 200, response.get_data(as_text=True)
    rules = {card["source"]["topic"]["code"] for card in response.get_json()["cards"]}
    assert "estradiol-low" in rules


def test_the_example_draft_is_a_valid_tamoxifen_order_the_guide_selects() -> None:
    draft = orjson.loads((EXAMPLES / "draft-tamoxifen.json").read_bytes())
    MedicationRequest.model_validate(draft)
    assert "tamoxifen" in load_valuesets().names_for_codeable(draft["medicationCodeableConcept"])
    guide = GUIDE.read_text()
    assert "--draft-order docs/examples/draft-tamoxifen.json" in guide
    assert f"--select MedicationRequest/{draft['id']}" in guide


def test_the_files_the_guide_names_exist() -> None:
    named = set(re.findall(r"docs/examples/[\w.-]+", GUIDE.read_text()))
    assert named >= {"docs/examples/check-service.toml", "docs/examples/draft-tamoxifen.json"}
    assert [name for name in named if not (ROOT / name).is_file()] == []


def test_the_guides_commands_run_from_the_venv() -> None:
    guide = GUIDE.read_text()
    assert re.findall(r"^(?:python|anastrozole-cds) ", guide, flags=re.MULTILINE) == []
    assert "ehr-private.jwk.json" not in guide.replace("instance/ehr-private.jwk.json", "")
