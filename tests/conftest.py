"""Shared helpers for the synthetic FHIR patient fixtures in tests/fixtures/.

Tests that take a `fixture_name` argument run once per fixture file, and tests that take
`scenario_name` once per entry of tests/fixtures/expected.json.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

FIXTURES_DIR = Path(__file__).parent / "fixtures"
EXPECTED_FILE = FIXTURES_DIR / "expected.json"

Resource = dict[str, Any]


def fixture_names() -> list[str]:
    """Every patient fixture file, by name (expected.json is not a patient)."""
    return sorted(p.name for p in FIXTURES_DIR.glob("*.json") if p != EXPECTED_FILE)


def read_fixture(name: str) -> Any:
    """The fixture as stored: a Bundle, or a plain JSON list of resources."""
    return json.loads((FIXTURES_DIR / name).read_text(encoding="utf-8"))


def resources_of(document: Any) -> list[Resource]:
    """The resources a fixture holds, in order: the Bundle's entries, or the list itself."""
    if isinstance(document, list):
        return document
    if document.get("resourceType") == "Bundle":
        return [entry["resource"] for entry in document.get("entry", []) if "resource" in entry]
    return [document]


@cache
def expected_scenarios() -> dict[str, dict[str, Any]]:
    """expected.json: per fixture, `now`, `intent`, `fires`, `does_not_fire`, `note`."""
    scenarios: dict[str, dict[str, Any]] = json.loads(EXPECTED_FILE.read_text(encoding="utf-8"))
    return scenarios


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fixture_name" in metafunc.fixturenames:
        metafunc.parametrize("fixture_name", fixture_names())
    if "scenario_name" in metafunc.fixturenames:
        metafunc.parametrize("scenario_name", sorted(expected_scenarios()))


@pytest.fixture(scope="session")
def all_fixture_names() -> list[str]:
    return fixture_names()


@pytest.fixture(scope="session")
def fixture_document() -> Callable[[str], Any]:
    """fixture_document(name): the stored JSON (Bundle or list)."""
    return read_fixture


@pytest.fixture(scope="session")
def fixture_resources() -> Callable[[str], list[Resource]]:
    """fixture_resources(name): the fixture's resources as plain dicts."""
    return lambda name: resources_of(read_fixture(name))


@pytest.fixture(scope="session")
def expected() -> dict[str, dict[str, Any]]:
    return expected_scenarios()
