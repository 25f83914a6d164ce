"""`python -m sandbox.sample_export`: the synthetic patients as a Bulk Data export, so that a
newcomer has something to run `anastrozole-cds population` on (docs/population.md)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.patients import all_patients
from sandbox.sample_export import main as sample_export


def _findings(csv_text: str) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        found.setdefault(row["patient_id"], {})[row["rule_id"]] = row["severity"]
    return found


@pytest.mark.parametrize(
    ("as_of", "now"),
    [([], "2026-11-01"), (["--as-of", "2027-03-01"], "2027-03-01")],
    ids=["as-written", "as-of"],
)
def test_population_over_the_sample_export_finds_each_patients_cards(
    tmp_path: Path, as_of: list[str], now: str
) -> None:
    export = tmp_path / "export"
    made = CliRunner().invoke(sample_export, [str(export), *as_of])
    assert made.exit_code == 0, made.output
    assert f"judge them with --now {now}" in made.output
    assert {path.name for path in export.iterdir()} >= {"Patient.ndjson", "Observation.ndjson"}
    result = CliRunner().invoke(main, ["population", str(export), "--now", now])
    assert result.exit_code == 0, result.stderr
    found = _findings(result.stdout)
    for patient in all_patients():
        assert found.get(patient.patient_id, {}) == patient.expected_cards, patient.key
