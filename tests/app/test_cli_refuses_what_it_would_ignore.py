"""The command line says so when its input or options would be silently ignored: `evaluate` on
JSON that is not FHIR, `check --service` with options that apply only in process."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main


@pytest.mark.parametrize(
    "document",
    ['{"foo": 1}', '"hello"', "42", '[{"resourceType": "Patient"}, {"foo": 1}]', "[1, 2]"],
    ids=["object", "string", "number", "list-with-a-non-resource", "list-of-numbers"],
)
def test_evaluate_refuses_json_that_is_not_fhir(tmp_path: Path, document: str) -> None:
    file = tmp_path / "input.json"
    file.write_text(document)
    result = CliRunner().invoke(main, ["evaluate", str(file)])
    assert result.exit_code == 1
    assert f"{file} is not a FHIR Bundle, a resource or a JSON list of resources" in " ".join(
        result.output.split()
    )
    assert "No findings" not in result.output


def test_evaluate_still_reads_a_single_resource(tmp_path: Path) -> None:
    file = tmp_path / "patient.json"
    file.write_text('{"resourceType": "Patient", "id": "p1", "gender": "male"}')
    result = CliRunner().invoke(main, ["evaluate", str(file)])
    assert result.exit_code == 0, result.output
    assert "No findings." in result.output


@pytest.mark.parametrize(
    ("option", "value"), [("--now", "2026-11-01"), ("--config", "cds.toml")], ids=["now", "config"]
)
def test_check_refuses_in_process_options_with_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, option: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cds.toml").write_text("")
    result = CliRunner().invoke(
        main,
        ["check", "--fhir-server", "http://127.0.0.1:19042/fhir", "--patient", "p1",
         "--service", "http://127.0.0.1:19043", option, value],
    )  # fmt: skip
    assert result.exit_code == 2
    assert f"{option} applies only in process" in " ".join(result.output.split())
