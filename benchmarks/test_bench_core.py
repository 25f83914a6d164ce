"""Bytes to findings for one patient of 10 to 10,000 resources, against orjson alone and
against validating with fhir.resources first (docs/performance.md).

Each benchmark records its stage and size in `extra_info`; conftest.py reads them back to
print the goals table at the end of `make bench`.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from benchmarks.naive import naive_evaluate
from clinical import evaluate, evaluate_json
from clinical.finding import Finding
from sandbox.synthetic import bundle_bytes

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
SIZES = (10, 100, 1_000, 10_000)
NAIVE_SIZES = (10, 100, 1_000)  # 10,000 would take about ten seconds a round
SEED = 0


@pytest.fixture(scope="module")
def patient_bytes() -> dict[int, bytes]:
    """One synthetic patient per size, serialised once, outside the timed part."""
    return {n: bundle_bytes(n, SEED, NOW) for n in SIZES}


def _label(benchmark: BenchmarkFixture, stage: str, n: int) -> None:
    benchmark.group = f"{n:>6} resources"
    benchmark.extra_info.update(stage=stage, n=n)


def _rule_ids(findings: list[Finding]) -> set[str]:
    return {finding.rule_id for finding in findings}


@pytest.mark.parametrize("n", SIZES)
def test_orjson_parse(benchmark, patient_bytes, n):
    _label(benchmark, "parse", n)
    bundle = benchmark(orjson.loads, patient_bytes[n])
    assert len(bundle["entry"]) == n


@pytest.mark.parametrize("n", SIZES)
def test_evaluate_from_bytes(benchmark, patient_bytes, n):
    """The product's path: clinical.evaluate_json (a lazy parse of the Bundle, GC paused)."""
    _label(benchmark, "evaluate", n)
    findings = benchmark(evaluate_json, patient_bytes[n], now=NOW)
    assert "anastrozole-intent" in _rule_ids(findings)


@pytest.mark.parametrize("n", SIZES)
def test_evaluate_parsed_only(benchmark, patient_bytes, n):
    """The core's own share: already-parsed dicts to findings."""
    _label(benchmark, "core-only", n)
    resources = orjson.loads(patient_bytes[n])
    findings = benchmark(evaluate, resources, now=NOW)
    assert "anastrozole-intent" in _rule_ids(findings)


@pytest.mark.parametrize("n", NAIVE_SIZES)
def test_naive_pipeline(benchmark, patient_bytes, n):
    _label(benchmark, "naive", n)
    data = patient_bytes[n]
    ours = _rule_ids(evaluate(orjson.loads(data), now=NOW))
    naive_evaluate(data, now=NOW)  # untimed: imports the model classes on first use
    if n >= 1_000:
        findings = benchmark.pedantic(
            naive_evaluate, args=(data,), kwargs={"now": NOW}, rounds=3, iterations=1
        )
    else:
        findings = benchmark(naive_evaluate, data, now=NOW)
    assert "anastrozole-intent" in ours
    assert _rule_ids(findings) == ours
