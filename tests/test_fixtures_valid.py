"""Every synthetic patient fixture is valid FHIR R4 (checked with the fhir.resources R4B models)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.bundle import Bundle

Resources = Callable[[str], list[dict[str, Any]]]


def test_fixture_is_valid_fhir(fixture_name: str, fixture_document: Callable[[str], Any]) -> None:
    document = fixture_document(fixture_name)
    if isinstance(document, list):
        for resource in document:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
    else:
        bundle = Bundle.model_validate(document)
        assert bundle.type in {"collection", "searchset"}


def test_fixture_resource_ids_are_unique(fixture_name: str, fixture_resources: Resources) -> None:
    keys = Counter(f"{r['resourceType']}/{r['id']}" for r in fixture_resources(fixture_name))
    assert [key for key, count in keys.items() if count > 1] == []


def test_fixture_references_resolve_within_the_fixture(
    fixture_name: str, fixture_resources: Resources
) -> None:
    """Every literal reference ("Type/id") names a resource of the same file."""
    resources = fixture_resources(fixture_name)
    present = {f"{r['resourceType']}/{r['id']}" for r in resources}
    dangling = {
        reference
        for resource in resources
        for reference in _references(resource)
        if not reference.startswith("#") and reference not in present
    }
    assert dangling == set()


def test_searchset_entries_say_their_search_mode(
    fixture_name: str, fixture_document: Callable[[str], Any]
) -> None:
    document = fixture_document(fixture_name)
    if isinstance(document, dict) and document.get("type") == "searchset":
        assert all(entry.get("search", {}).get("mode") for entry in document["entry"])


def test_every_fixture_has_an_expectation_and_back(
    all_fixture_names: list[str], expected: dict[str, Any]
) -> None:
    assert sorted(expected) == all_fixture_names


def _references(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["reference"]] if isinstance(node.get("reference"), str) else []
        return found + [ref for value in node.values() for ref in _references(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _references(item)]
    return []
