"""The straightforward pipeline the speed goals compare against (docs/performance.md): validate every resource
with fhir.resources, dump it back to JSON-ready dicts, then evaluate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class

import clinical
from clinical.finding import Finding


def validated_bundle(data: bytes) -> dict[str, Any]:
    """The Bundle in `data` with each entry's resource validated as an R4B model and dumped
    back to plain JSON values (the shape `clinical.evaluate` reads)."""
    bundle: dict[str, Any] = orjson.loads(data)
    entries = []
    for entry in bundle.get("entry", []):
        resource = entry["resource"]
        model = get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        entries.append({**entry, "resource": model.model_dump(mode="json", exclude_none=True)})
    return {**bundle, "entry": entries}


def naive_evaluate(data: bytes, *, now: datetime) -> list[Finding]:
    return clinical.evaluate(validated_bundle(data), now=now)
