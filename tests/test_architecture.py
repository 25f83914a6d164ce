"""The layers of docs/architecture.md hold: import-linter's contracts in pyproject.toml, run by
`make lint` and here, so that `make test` fails on an import that crosses them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_imports_keep_the_layers_and_the_pure_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_architecture_document_draws_the_layers_the_contract_checks() -> None:
    """docs/architecture.md names each layer of the contract, top to bottom, in its picture."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    picture = (ROOT / "docs" / "architecture.md").read_text().split("```")[1]
    positions = []
    for layer in layers:
        for package in layer.split("|"):
            assert f"{package.strip()}/" in picture, f"{package.strip()} is not in the picture"
        positions.append(min(picture.index(f"{p.strip()}/") for p in layer.split("|")))
    assert positions == sorted(positions), "the picture lists the layers out of order"
