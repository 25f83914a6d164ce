"""The `anastrozole-cds` command: --version and evaluate FILE."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from anastrozole_cds import __version__
from anastrozole_cds.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "man_trt_anastrozole_low_e2.json"
NOW = "2026-11-01T12:00:00Z"


def test_version_is_printed() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert __version__ in result.output


def test_evaluate_prints_one_line_per_finding_most_severe_first() -> None:
    result = CliRunner().invoke(main, ["evaluate", str(FIXTURE), "--now", NOW])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("[WARNING ] estradiol-low: Estradiol 11 pg/mL")
    assert any("anastrozole-intent" in line for line in lines)


def test_evaluate_json_output_carries_the_findings() -> None:
    result = CliRunner().invoke(main, ["evaluate", str(FIXTURE), "--now", NOW, "--json"])
    assert result.exit_code == 0, result.output
    findings = json.loads(result.output)
    assert {f["rule_id"] for f in findings} >= {"estradiol-low", "anastrozole-intent"}
    low = next(f for f in findings if f["rule_id"] == "estradiol-low")
    assert low["suggested_orders"][0]["codings"][0]["code"] == "2243-4"


def test_evaluate_refuses_a_file_that_is_not_json(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = CliRunner().invoke(main, ["evaluate", str(bad)])
    assert result.exit_code != 0
    assert "not JSON" in result.output


def test_evaluate_refuses_a_bad_date() -> None:
    result = CliRunner().invoke(main, ["evaluate", str(FIXTURE), "--now", "yesterday"])
    assert result.exit_code == 2
    assert "not an ISO date" in result.output
