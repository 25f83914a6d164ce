"""clinical.evaluate runs the catalogue: one finding per rule, most severe first, rules switchable."""

from __future__ import annotations

import sys
from dataclasses import replace
from datetime import datetime

import pytest

from clinical import evaluate
from clinical.finding import Finding, Severity
from clinical.record import PatientRecord
from clinical.rules import CATALOGUE
from clinical.settings import Settings
from tests.clinical.rules.builders import (
    NOW,
    TAMOXIFEN,
    alt,
    anastrozole_daily,
    bilirubin,
    drug,
    estradiol,
    oncology_woman,
    t_score,
    trt_man,
)

# A busy patient: several rules fire, some of them (estradiol-low) could say more than once.
BUSY_MAN = trt_man(
    estradiol(6, rid="e2-low", days_ago=10),
    estradiol(15, rid="e2-older", days_ago=40),
    alt(200),
    bilirubin(3.0),
    ana=anastrozole_daily(),
)
BUSY_WOMAN = oncology_woman(drug(TAMOXIFEN, "tamoxifen", status="draft"), t_score(-2.8), age=50)


def test_evaluate_returns_at_most_one_finding_per_rule_most_severe_first() -> None:
    for resources in (BUSY_MAN, BUSY_WOMAN):
        findings = evaluate(resources, now=NOW)
        rule_ids = [finding.rule_id for finding in findings]
        assert len(rule_ids) == len(set(rule_ids))
        ranks = [finding.severity.rank for finding in findings]
        assert ranks == sorted(ranks, reverse=True)
        assert len({finding.severity for finding in findings}) == 3  # the ordering is tested


def test_a_disabled_rule_gives_no_finding_and_the_others_are_untouched() -> None:
    every = {finding.rule_id for finding in evaluate(BUSY_MAN, now=NOW)}
    assert {"liver-injury-on-ai", "estradiol-low"} <= every
    settings = Settings(disabled_rules=frozenset({"liver-injury-on-ai"}))
    remaining = {finding.rule_id for finding in evaluate(BUSY_MAN, now=NOW, settings=settings)}
    assert remaining == every - {"liver-injury-on-ai"}


def test_a_rule_saying_several_things_keeps_only_its_most_severe_finding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def talkative(record: PatientRecord, settings: Settings, now: datetime) -> list[Finding]:
        return [
            Finding("sex-undetermined", severity, f"{severity} finding", "", "source")
            for severity in (Severity.INFO, Severity.CRITICAL, Severity.WARNING)
        ]

    catalogue = tuple(
        replace(rule, check=talkative) if rule.id == "sex-undetermined" else rule
        for rule in CATALOGUE
    )
    monkeypatch.setattr(sys.modules["clinical.evaluate"], "CATALOGUE", catalogue)
    findings = [f for f in evaluate(BUSY_WOMAN, now=NOW) if f.rule_id == "sex-undetermined"]
    assert [f.summary for f in findings] == ["critical finding"]
