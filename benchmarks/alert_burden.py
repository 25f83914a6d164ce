"""Interruptive cards per 100 chart opens over the synthetic patients, before and after the
`[cards]` policy and suppression by feedback (docs/alert-burden.md).

    .venv/bin/python benchmarks/alert_burden.py

"Interruptive": a card the EHR shows in patient-view or an order hook. Each of the 16 demo
patients (sandbox/patients) opens its chart once (patient-view), and, when it has an
anastrozole order, renews it (order-select, then order-sign, with the renewal draft the
sandbox EHR sends). "Before" is every finding its own card, as the service answered before
this policy; "after" the default `[cards]` table. The second open comes after a clinician
answered every card of the first with a reason (the first reason the card offers).
The calls run in process through the service's own pipeline (cds_hooks.hook.answer).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cds_hooks.cards import CardContext
from cds_hooks.hook import answer
from cds_hooks.metrics import BurdenMetrics
from cds_hooks.models import OrderSelectContext, OrderSignContext, PatientViewContext
from cds_hooks.policy import EXTENSION_RULES
from cds_hooks.prefetch import Chart
from cds_hooks.services import SERVICES
from cds_hooks.suppression import CallScreen, CardScreen
from clinical.settings import Settings
from runtime import schema
from runtime.acknowledgements import CardEvidenceLog
from runtime.card_settings import CardSettings, read_card_settings
from runtime.store import FeedbackRecord, Store
from sandbox.ehr_client import SandboxError, draft_orders_bundle, renewal_draft
from sandbox.patients import REFERENCE_NOW, SyntheticPatient, all_patients, bundle_resources

ISSUER = "https://ehr.example.org"
EVERY_CARD = {  # every finding its own card: what the service answered before the policy
    hook: {"show": "info", "anastrozole-intent": "info", "group_monitoring": False}
    for hook in ("patient-view", "order-select", "order-sign")
}
SERVICE_OF = {service.hook: service for service in SERVICES.values()}


@dataclass
class Opened:
    """One hook call: the cards shown (topic -> indicator) and the rules behind them."""

    patient: str
    hook: str
    cards: list[dict[str, Any]]
    kept_away: list[str]  # rules an acknowledgement kept away

    @property
    def rules(self) -> set[str]:
        """Every rule a card shows, the rules of a monitoring-due card included."""
        found = set()
        for card in self.cards:
            found.update(card.get("extension", {}).get(EXTENSION_RULES, ()))
            found.add(card["source"]["topic"]["code"])
        return found


@dataclass
class Run:
    calls: Counter[str] = field(default_factory=Counter)  # hook -> calls
    cards: Counter[str] = field(default_factory=Counter)  # hook -> cards
    by_indicator: Counter[tuple[str, str]] = field(default_factory=Counter)
    opened: list[Opened] = field(default_factory=list)

    def add(self, opened: Opened) -> None:
        self.calls[opened.hook] += 1
        self.cards[opened.hook] += len(opened.cards)
        for card in opened.cards:
            self.by_indicator[(opened.hook, card["indicator"])] += 1
        self.opened.append(opened)

    def per_100(self, hook: str) -> float:
        return 100 * self.cards[hook] / self.calls[hook] if self.calls[hook] else 0.0


class Service:
    """The service's pipeline in process, with its own store (SQLite in memory)."""

    def __init__(self, cards: CardSettings) -> None:
        self.store = Store("sqlite://")
        schema.upgrade(self.store.engine)  # an in-memory database: migrated here, as the app does
        self.log = CardEvidenceLog(self.store, b"m" * 32, cards)
        self.screen = CardScreen(self.log, cards, BurdenMetrics.create(None))

    def call(self, patient: SyntheticPatient, hook: str, drafts: list[dict[str, Any]]) -> Opened:
        service = SERVICE_OF[hook]
        context = _context(hook, patient.patient_id, drafts)
        screen: CallScreen = self.screen.for_call(
            service.id, hook, patient.patient_id, ISSUER, None
        )
        result = answer(
            service,
            str(uuid.uuid4()),
            context,
            Chart(tuple(bundle_resources(patient.bundle))),
            now=REFERENCE_NOW,
            settings=Settings(),
            card_context=CardContext("https://cds.example.org", patient.patient_id, REFERENCE_NOW),
            screen=screen,
        )
        self.screen.remember(screen)
        self.log.flush()
        return Opened(patient.key, hook, result.cards, [f.rule_id for f, _ in screen.acknowledged])

    def answer_every_card(self, opened: Opened) -> None:
        """A clinician answers each card with the first reason it offers."""
        records = [
            FeedbackRecord(
                service_id=SERVICE_OF[opened.hook].id,
                card_uuid=card["uuid"],
                outcome="overridden",
                outcome_timestamp=datetime.now(UTC),
                override_reason_system=card["overrideReasons"][0]["system"],
                override_reason_code=card["overrideReasons"][0]["code"],
            )
            for card in opened.cards
            if card.get("overrideReasons")
        ]
        self.store.record_feedback(records, issuer=ISSUER)


def _context(hook: str, patient_id: str, drafts: list[dict[str, Any]]) -> PatientViewContext:
    user = "Practitioner/dr-1"
    if hook == "patient-view":
        return PatientViewContext(userId=user, patientId=patient_id)
    bundle = draft_orders_bundle(drafts)
    if hook == "order-sign":
        return OrderSignContext(userId=user, patientId=patient_id, draftOrders=bundle)
    selections = [f"{d['resourceType']}/{d['id']}" for d in drafts]
    return OrderSelectContext(
        userId=user, patientId=patient_id, draftOrders=bundle, selections=selections
    )


def renewal_of(patient: SyntheticPatient) -> list[dict[str, Any]]:
    try:
        return [renewal_draft(bundle_resources(patient.bundle), REFERENCE_NOW.date())]
    except SandboxError:  # nothing to renew
        return []


def run(cards: CardSettings, *, reopen_after: tuple[timedelta, ...] = ()) -> list[Run]:
    """Every patient's chart opened (and its order renewed); then, for each of `reopen_after`,
    the chart opened again that long after every card of the first open was answered with a
    reason."""
    service = Service(cards)
    runs = [Run() for _ in range(1 + len(reopen_after))]
    for patient in all_patients():
        opened = service.call(patient, "patient-view", [])
        runs[0].add(opened)
        drafts = renewal_of(patient)
        if drafts:
            runs[0].add(service.call(patient, "order-select", drafts))
            runs[0].add(service.call(patient, "order-sign", drafts))
        if reopen_after:
            service.answer_every_card(opened)
        for later, delay in zip(runs[1:], reopen_after, strict=True):
            service.screen.clock = _clock(delay)
            later.add(service.call(patient, "patient-view", []))
        service.screen.clock = _clock(timedelta(0))
    return runs


def _clock(delay: timedelta) -> Callable[[], datetime]:
    """The wall clock, `delay` ahead: when the chart is opened again."""
    return lambda: datetime.now(UTC) + delay


def measure() -> dict[str, Run]:
    before, *_ = run(read_card_settings(EVERY_CARD))
    after, hour, day = run(CardSettings(), reopen_after=(timedelta(hours=1), timedelta(days=1)))
    return {
        "before": before,
        "after": after,
        "after: reopened an hour after every card was answered with a reason": hour,
        "after: reopened the next day": day,
    }


def table(runs: dict[str, Run]) -> str:
    lines = [
        "| | patient-view cards per 100 chart opens | order-select per 100 calls "
        "| order-sign per 100 calls | info / warning / critical cards (all hooks) |",
        "|---|---|---|---|---|",
    ]
    for name, one in runs.items():
        severities = " / ".join(
            str(sum(n for (_, indicator), n in one.by_indicator.items() if indicator == level))
            for level in ("info", "warning", "critical")
        )
        lines.append(
            f"| {name} | {one.per_100('patient-view'):.0f} ({one.cards['patient-view']} cards, "
            f"{one.calls['patient-view']} opens) | {_hook(one, 'order-select')} "
            f"| {_hook(one, 'order-sign')} | {severities} |"
        )
    return "\n".join(lines)


def _hook(one: Run, hook: str) -> str:
    if not one.calls[hook]:
        return "-"
    return f"{one.per_100(hook):.0f} ({one.cards[hook]} cards, {one.calls[hook]} calls)"


if __name__ == "__main__":
    print(table(measure()))
