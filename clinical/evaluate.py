"""The entry point: FHIR JSON in, findings out."""

from __future__ import annotations

import gc
from dataclasses import replace
from datetime import datetime
from typing import Any

import orjson

from clinical.fhirdates import as_aware
from clinical.finding import Finding
from clinical.lazy_bundle import read_lazily
from clinical.reader import build_record
from clinical.record import PatientRecord
from clinical.rules import CATALOGUE
from clinical.settings import DEFAULT_SETTINGS, Settings
from clinical.valuesets import load


def evaluate(resources: Any, *, now: datetime, settings: Settings | None = None) -> list[Finding]:
    """Findings for one patient's resources (a Bundle, a list of resources or Bundles, or CDS
    Hooks prefetch values): one per rule, most severe first. Never raises on bad data."""
    now = as_aware(now)
    return evaluate_record(build_record(resources, now), now=now, settings=settings)


def evaluate_json(
    data: bytes | str, *, now: datetime, settings: Settings | None = None
) -> list[Finding]:
    """`evaluate` from JSON text. Raises ValueError when it is not JSON.

    A Bundle is decoded lazily (clinical/lazy_bundle.py): Observations the reader would pass
    over are never decoded. Other shapes are decoded whole with orjson; the findings are the
    same either way (tests/clinical/test_lazy_bundle.py).

    The cyclic garbage collector is paused while the JSON is parsed and read: a parsed JSON
    tree has no reference cycles, and collections triggered by its many new containers
    otherwise cost more than the parse itself on a large patient (benchmarks/)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        try:
            resources: Any = read_lazily(data, load()) if isinstance(data, bytes) else None
            if resources is None:
                resources = orjson.loads(data)
        except orjson.JSONDecodeError as error:
            raise ValueError(f"not JSON: {error}") from error
        return evaluate(resources, now=now, settings=settings)
    finally:
        if was_enabled:
            gc.enable()


_ORDER = {rule.id: index for index, rule in enumerate(CATALOGUE)}


def evaluate_record(
    record: PatientRecord, *, now: datetime, settings: Settings | None = None
) -> list[Finding]:
    """Findings for a record; none for a patient who has died (no cards, no worklist rows)."""
    if record.deceased:
        return []
    settings = settings or DEFAULT_SETTINGS
    findings: list[Finding] = []
    for rule in CATALOGUE:
        if not settings.enabled(rule.id):
            continue
        produced = [f for f in rule.check(record, settings, now) if f.rule_id == rule.id]
        if produced:  # one finding per rule: the most severe
            findings.append(max(produced, key=lambda f: f.severity.rank))
    findings.sort(key=lambda f: (-f.severity.rank, _ORDER[f.rule_id]))
    if record.unread_medications:  # every rule reads the medications: each finding says it
        findings = [with_gaps(f, record.unread_medications) for f in findings]
    return findings


def with_gaps(finding: Finding, gaps: list[str]) -> Finding:
    """The finding with more data said left out, in its gaps and its detail."""
    new = [gap for gap in gaps if gap not in finding.data_gaps]
    if not new:
        return finding
    body, marker, source = finding.detail.rpartition("\n\n*Source:")
    if not marker:
        body, source = finding.detail, ""
    lines = "\n".join(f"- {gap}" for gap in new)
    body = f"{body}\n{lines}" if "**Left out:**" in body else f"{body}\n\n**Left out:**\n{lines}"
    return replace(
        finding,
        detail=body + (marker + source if marker else ""),
        data_gaps=(*finding.data_gaps, *new),
    )
