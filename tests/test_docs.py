"""The docs and the code say the same: the rule ids (a contract EHR admins configure
against), their titles, and the sources cited are ones a reader can find."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinical.rules import CATALOGUE

ROOT = Path(__file__).resolve().parents[1]
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]


def _rule_table() -> list[tuple[str, str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("### Rule ids", 1)[1].split("###", 1)[0]
    return re.findall(r"^\| `([a-z-]+)` \| ([^|]+?) \|$", table, re.M)


def test_the_architecture_documents_every_rule_id_with_its_title_in_catalogue_order() -> None:
    assert _rule_table() == [(rule.id, rule.title) for rule in CATALOGUE]


def test_the_rules_page_describes_every_rule() -> None:
    text = (ROOT / "docs" / "rules.md").read_text()
    missing = [rule.id for rule in CATALOGUE if f"`{rule.id}`" not in text]
    assert missing == []


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_no_document_cites_a_file_outside_the_repository(path: Path) -> None:
    text = path.read_text()
    assert "DESIGN.md" not in text and "../shared" not in text and "seed 00" not in text
