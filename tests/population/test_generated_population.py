"""The generated population the measurements use (sample_export --patients N): the mix it
states, every line a resource, the same export for the same seed."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.patients import REFERENCE_NOW
from sandbox.sample_export import main as sample_export
from sandbox.synthetic import PopulationMix


def test_a_generated_population_has_the_mix_it_states_and_reads_clean(tmp_path: Path) -> None:
    written = CliRunner().invoke(sample_export, [str(tmp_path / "a"), "--patients", "1000"])
    assert written.exit_code == 0, written.output
    result = CliRunner().invoke(
        main, ["population", str(tmp_path / "a"), "--now", REFERENCE_NOW.isoformat()]
    )
    assert result.exit_code == 0, result.stderr
    mix = PopulationMix()
    judged = mix.anastrozole_oncology + mix.letrozole + mix.testosterone
    judged += mix.testosterone_with_anastrozole
    assert f"evaluated {judged} of 1000 patients" in result.stderr
    assert "0 bad lines" in result.stderr and "0 without a patient" in result.stderr


def test_the_same_seed_writes_the_same_export(tmp_path: Path) -> None:
    for name in ("a", "b"):
        CliRunner().invoke(sample_export, [str(tmp_path / name), "--patients", "50", "--seed", "3"])
    assert [p.read_bytes() for p in sorted((tmp_path / "a").iterdir())] == [
        p.read_bytes() for p in sorted((tmp_path / "b").iterdir())
    ]
