"""The newcomer's documents can be followed as written: the commands run from the project
folder through .venv/bin, the files they name exist, and the Makefile's targets are listed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCS = ["README.md", "docs/integrators.md", "docs/population.md"]


def _code_lines(text: str) -> list[str]:
    """The lines of the fenced shell blocks (``` or ```sh)."""
    blocks = re.findall(r"^```(?:sh)?\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines()]


@pytest.mark.parametrize("doc", DOCS)
def test_commands_are_written_through_the_venv(doc: str) -> None:
    text = (ROOT / doc).read_text()
    bare = [
        line
        for line in _code_lines(text)
        if re.match(r"(anastrozole-cds|python3?|sekmet|gunicorn|pip) ", line)
    ]
    assert bare == []
    # Headings name a subcommand (`anastrozole-cds load`); prose gives commands to run.
    prose = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    assert re.findall(r"`((?:anastrozole-cds|python) [^`]*)`", prose) == []


@pytest.mark.parametrize("doc", DOCS)
def test_the_files_a_document_names_exist(doc: str) -> None:
    text = (ROOT / doc).read_text()
    linked = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    named = re.findall(r"\b((?:docs|sandbox|tests)/[\w./-]+\.(?:md|json|toml|py))\b", text)
    base = (ROOT / doc).parent
    missing = [p for p in linked if not (base / p).exists()]
    missing += [p for p in named if not (ROOT / p).exists()]
    assert "DESIGN.md" not in text
    assert missing == []


def test_the_readme_lists_every_make_target_and_what_make_test_installs() -> None:
    makefile = (ROOT / "Makefile").read_text()
    [phony] = re.findall(r"^\.PHONY: (.*)$", makefile, flags=re.MULTILINE)
    readme = (ROOT / "README.md").read_text()
    helpers = {"clean", "browser", "postgres"}  # steps of make test, or housekeeping
    assert [t for t in phony.split() if t not in helpers and f"make {t}" not in readme] == []
    # the recipes of make test's `browser` and `postgres` steps
    assert re.findall(r"apt-get install -y (\w+); }", makefile) == ["chromium", "postgresql"]
    assert "`chromium`" in readme and "`postgresql`" in readme
