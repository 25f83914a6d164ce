"""Settings as an EHR admin writes them: lists from the environment are JSON, the TOML file
may hold the SMART app's `[smart]` table, and a mistake stops start-up with one line that
names the setting and where it was set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

import smartapp
from anastrozole_cds.app import create_app
from anastrozole_cds.cli import main
from anastrozole_cds.settings import load_settings
from clinical.rules import RULE_IDS
from runtime.settings import ConfigError
from smartapp.views import EXTENSION as SMART_EXTENSION


@pytest.fixture(autouse=True)
def _no_settings_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("ANASTROZOLE_CDS_"):
            monkeypatch.delenv(name)


def _discovery(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["discovery", *args])
    return result.exit_code, result.output


# -- disabled_rules (and other lists) from the environment ---------------------------------------


@pytest.mark.parametrize(
    "written",
    ['["dexa-due", "lipid-panel-due"]', "dexa-due, lipid-panel-due"],
    ids=["json", "commas"],
)
def test_disabled_rules_from_the_environment_switch_the_rules_off(
    monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__DISABLED_RULES", written)
    clinical = load_settings().clinical_settings()
    assert clinical.disabled_rules == {"dexa-due", "lipid-panel-due"}


def test_a_target_band_from_the_environment_is_read_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__ESTRADIOL_TARGET_BAND_PG_ML", "[15, 25]")
    assert load_settings().clinical_settings().estradiol_target_band_pg_ml == (15.0, 25.0)


def test_a_misspelt_rule_in_the_environment_is_refused_with_the_rule_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__DISABLED_RULES", '["dexa-dew"]')
    code, output = _discovery()
    assert code == 1
    assert "clinical.disabled_rules" in output
    assert "ANASTROZOLE_CDS_CLINICAL__DISABLED_RULES" in output
    assert "'dexa-dew'" in output
    assert all(rule in output for rule in RULE_IDS)


def test_a_misspelt_rule_in_the_toml_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text('[clinical]\ndisabled_rules = ["dexa-dew"]\n')
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    message = str(error.value)
    assert f"clinical.disabled_rules (in {config})" in message
    assert "'dexa-dew'" in message and "dexa-due" in message


# -- each mistake named ---------------------------------------------------------------------------


def test_a_clinical_value_that_is_not_a_number_names_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__DEXA_INTERVAL", "abc")
    code, output = _discovery()
    assert code == 1
    assert (
        "clinical.dexa_interval (environment variable ANASTROZOLE_CDS_CLINICAL__DEXA_INTERVAL)"
        in output
    )
    assert "'abc'" in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("toml", "says"),
    [
        ('pubic_base_url = "https://cds.example.org"\n', "pubic_base_url (in {config}): unknown setting (did you mean public_base_url?)"),
        ('disabled_rules = ["dexa-due"]\n', "disabled_rules (in {config}): unknown setting: it belongs in the [clinical] table"),
        ("[clinical]\ndexa_intervall = 365\n", "clinical.dexa_intervall (in {config}): unknown clinical setting (did you mean dexa_interval?)"),
        ('[smart]\nallowed_issuer = ["https://ehr.example.org/fhir"]\n', "[smart] allowed_issuer: unknown setting (did you mean allowed_issuers?)"),
    ],
    ids=["typo", "clinical-key-at-the-top", "clinical-typo", "smart-typo"],
)  # fmt: skip
def test_an_unknown_key_says_which_and_where(tmp_path: Path, toml: str, says: str) -> None:
    config = tmp_path / "cds.toml"
    config.write_text(toml)
    code, output = _discovery("--config", str(config))
    assert code == 1
    assert says.format(config=config) in " ".join(output.split())


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text('public_base_url = "https://cds.example.org\n')
    code, output = _discovery("--config", str(config))
    assert code == 1
    assert f"{config} is not valid TOML" in " ".join(output.split())


# -- an issuer's key file --------------------------------------------------------------------------


def _issuer_toml(tmp_path: Path, jwks_file: Path) -> Path:
    config = tmp_path / "cds.toml"
    config.write_text(
        'public_base_url = "http://127.0.0.1:19001"\n[[issuers]]\n'
        f'iss = "https://ehr.example.org"\njwks_file = "{jwks_file}"\n'
    )
    return config


def test_an_issuer_whose_jwks_file_does_not_exist_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "jwks.json"
    code, output = _discovery("--config", str(_issuer_toml(tmp_path, missing)))
    assert code == 1
    flat = " ".join(output.split())
    assert "'https://ehr.example.org'" in flat and f"{missing} does not exist" in flat
    with pytest.raises(ConfigError, match="does not exist"):
        create_app(load_settings(_issuer_toml(tmp_path, missing)))


def test_an_issuer_whose_jwks_file_is_not_a_key_set_stops_the_start(tmp_path: Path) -> None:
    not_a_jwks = tmp_path / "jwks.json"
    not_a_jwks.write_text('{"kty": "EC"}')
    code, output = _discovery("--config", str(_issuer_toml(tmp_path, not_a_jwks)))
    assert code == 1
    assert f"{not_a_jwks} is not a JWKS" in " ".join(output.split())


# -- the SMART app's settings in the TOML file --------------------------------------------------------

SMART_TOML = """
instance_path = "{instance}"
store_url = "sqlite://"

[smart]
allowed_issuers = ["https://ehr.example.org/fhir/"]
client_id = "site-app"
"""


def test_the_smart_table_of_the_toml_file_configures_the_app(tmp_path: Path) -> None:
    config = tmp_path / "cds.toml"
    config.write_text(SMART_TOML.format(instance=tmp_path))
    app = create_app(load_settings(config))
    smart = app.extensions[SMART_EXTENSION].smart
    assert smart.allowed_issuers == ("https://ehr.example.org/fhir",)
    assert smart.client_id == "site-app"


def test_a_smart_environment_variable_wins_over_the_smart_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "cds.toml"
    config.write_text(SMART_TOML.format(instance=tmp_path))
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_CLIENT_ID", "from-the-environment")
    smart = smartapp.load_settings(load_settings(config))
    assert smart.client_id == "from-the-environment"
    assert smart.allowed_issuers == ("https://ehr.example.org/fhir",)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS", "https://ehr.example.org/fhir", "ANASTROZOLE_CDS_SMART_ALLOWED_ISSUERS: not a JSON list"),
        ("ANASTROZOLE_CDS_SMART_CLIENT_AUTH", "private_key_jwt", "needs private_key_file ([smart] private_key_file"),
        ("ANASTROZOLE_CDS_SMART_SESSION_HOURS", "forty", "ANASTROZOLE_CDS_SMART_SESSION_HOURS: Input should be a valid number"),
    ],
    ids=["not-json", "no-key-file", "not-a-number"],
)  # fmt: skip
def test_a_smart_setting_mistake_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    monkeypatch.setenv(variable, value)
    code, output = _discovery()
    assert code == 1
    assert says in " ".join(output.split())
    assert "Traceback" not in output and "pydantic" not in output
