"""What one hook call shows: the `[cards]` policy (cds_hooks/policy.py), then suppression by
feedback, then several monitoring reminders as one card; and what it remembers, so that a
card a clinician answered with a reason is not shown again until its evidence changes.

A finding is kept away when an answer to a card of the same patient, rule and evidence
(the content of its evidence resources, runtime/acknowledgements.py) came from the same EHR
and tenant within `[cards] suppression_days`, and the finding is no more severe than the card
was; a critical one at most `critical_suppression_seconds`. An answer is an override with a
reason (any reason code: the rule's own, or a Coding the EHR sends), or an accepted
suggestion. A plain dismiss (no reason) acknowledges nothing: the card comes back.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError

from cds_hooks.cards import CardContext, card_for
from cds_hooks.metrics import BurdenMetrics
from cds_hooks.monitoring_card import monitoring_card
from cds_hooks.policy import MONITORING_TOPIC, CardItem, MonitoringGroup, group_monitoring, select
from clinical.finding import Finding
from clinical.rules import RULES
from runtime.acknowledgements import (
    Acknowledgement,
    CardEvidence,
    CardEvidenceLog,
    evidence_fingerprint,
    resources_by_reference,
)
from runtime.card_settings import CardSettings
from runtime.store import FeedbackRecord

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
# Every code a rule offers: an answer's reason is a label of /metrics only when it is one.
KNOWN_REASONS = frozenset(
    reason.code for rule in RULES.values() for reason in rule.override_reasons
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Rendered:
    """A card, and for each rule on it the uuids of that rule's suggestions."""

    card: dict[str, Any]
    rules: dict[str, tuple[str, ...]]
    findings: tuple[Finding, ...]

    @property
    def topic(self) -> str:
        return str(self.card["source"]["topic"]["code"])


@dataclass
class CallScreen:
    """The screen of one hook call: who it is for, and (after `cards`) what became of each
    finding, for `CardScreen.remember`."""

    service_id: str
    hook: str
    patient: str  # the keyed hash, never the id
    issuer: str | None
    tenant: str | None
    screen: CardScreen
    rendered: list[Rendered] = field(default_factory=list)
    not_shown: list[Finding] = field(default_factory=list)
    acknowledged: list[tuple[Finding, Acknowledgement]] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)  # rule id -> fingerprint

    def cards(
        self, findings: Sequence[Finding], resources: Any, ctx: CardContext
    ) -> list[Rendered]:
        """The cards of this call, in the clinical core's order."""
        hook = self.screen.cards.for_hook(self.hook)
        selection = select(findings, hook)
        self.not_shown = selection.not_shown
        kept = self._not_acknowledged(selection.shown, resources)
        self.rendered = [
            _render(item, ctx, selection.line) for item in group_monitoring(kept, hook)
        ]
        return self.rendered

    def _not_acknowledged(self, findings: list[Finding], resources: Any) -> list[Finding]:
        if not findings:
            return []
        wanted = {reference for f in findings for reference in f.evidence}
        by_reference = resources_by_reference(resources, wanted)
        self.evidence = {
            f.rule_id: evidence_fingerprint(f.evidence, by_reference) for f in findings
        }
        now = self.screen.clock()
        try:
            answers = self.screen.log.acknowledgements(
                self.patient, issuer=self.issuer, tenant=self.tenant, now=now
            )
        except DBAPIError as error:  # shown rather than hidden when we cannot tell
            log.warning("acknowledgements unavailable, every card shown: %s", type(error).__name__)
            answers = []
        kept = []
        for finding in findings:
            evidence = self.evidence[finding.rule_id]
            answer = next(
                (
                    a
                    for a in sorted(answers, key=lambda a: a.at, reverse=True)
                    if a.keeps_away(
                        finding.rule_id, finding.severity, evidence, now, self.screen.cards
                    )
                ),
                None,
            )
            if answer is None:
                kept.append(finding)
            else:
                self.acknowledged.append((finding, answer))
        return kept


def _render(item: CardItem, ctx: CardContext, intent_line: str | None) -> Rendered:
    if isinstance(item, MonitoringGroup):
        card, own = monitoring_card(item, ctx, intent_line)
        return Rendered(card, own, item.findings)
    card = card_for(item, ctx)
    suggestions = tuple(s["uuid"] for s in card.get("suggestions", ()))
    return Rendered(card, {item.rule_id: suggestions}, (item,))


class CardScreen:
    """The policy and the acknowledgements, for the hook calls of one app."""

    def __init__(
        self,
        log: CardEvidenceLog,
        cards: CardSettings,
        metrics: BurdenMetrics,
        clock: Clock = _utc_now,
    ) -> None:
        self.log = log
        self.cards = cards
        self.metrics = metrics
        # Suppression runs on the wall clock, never on `evaluation_time`: an answer's time is
        # the moment the service received it.
        self.clock = clock

    def for_call(
        self, service_id: str, hook: str, patient_id: str, issuer: str | None, tenant: str | None
    ) -> CallScreen:
        return CallScreen(service_id, hook, self.log.patient(patient_id), issuer, tenant, self)

    def remember(self, call: CallScreen) -> None:
        """Keep what the call showed and kept away (written within a second), and count it."""
        rows = []
        for rendered in call.rendered:
            for finding in rendered.findings:
                rows.append(
                    self._row(call, rendered.card["uuid"], finding, shown=True, rendered=rendered)
                )
                disposition = "grouped" if rendered.topic == MONITORING_TOPIC else "card"
                self.metrics.count_finding(call.service_id, finding.rule_id, disposition)
        for finding, _answer in call.acknowledged:
            rows.append(self._row(call, str(uuid.uuid4()), finding, shown=False))
            self.metrics.count_finding(call.service_id, finding.rule_id, "acknowledged")
        for finding in call.not_shown:
            self.metrics.count_finding(call.service_id, finding.rule_id, "policy")
        self.log.remember(rows)

    @staticmethod
    def _row(
        call: CallScreen,
        card_uuid: str,
        finding: Finding,
        *,
        shown: bool,
        rendered: Rendered | None = None,
    ) -> CardEvidence:
        return CardEvidence(
            card_uuid=card_uuid,
            rule_id=finding.rule_id,
            service_id=call.service_id,
            indicator=finding.severity.value,
            patient_key=call.patient,
            evidence=call.evidence[finding.rule_id],
            shown=shown,
            issuer=call.issuer,
            tenant=call.tenant,
            suggestions=rendered.rules.get(finding.rule_id, ()) if rendered else (),
        )

    def count_answers(self, service_id: str, records: Sequence[FeedbackRecord]) -> None:
        """Count feedback by the rules of the cards it answers, for /metrics. A card this
        service never recorded (another's, or one issued within the last second by another
        worker) is counted as rule `unknown`."""
        try:
            rules = self.log.rules_of_cards([record.card_uuid for record in records])
        except DBAPIError as error:
            log.warning("rules of the answered cards unavailable: %s", type(error).__name__)
            rules = {}
        for record in records:
            reason = _reason_label(record.override_reason_code)
            commented = bool((record.user_comment or "").strip())
            for rule_id in rules.get(record.card_uuid, ["unknown"]):
                self.metrics.count_answer(
                    service_id, rule_id, record.outcome, reason, commented=commented
                )


def _reason_label(code: str | None) -> str:
    if not code:
        return "none"
    return code if code in KNOWN_REASONS else "other"
