"""From a validated hook call and its chart to the cards: evaluate, scope, render.

No clinical decision is made here: `clinical.evaluate` decides; this module only chooses
which of its findings belong to this moment (the order hooks show what the draft orders
are about) and which cannot be trusted because their data is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cds_hooks.cards import CardContext, card_for, data_incomplete_card
from cds_hooks.models import (
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    RequestProblem,
)
from cds_hooks.prefetch import Chart, merge
from cds_hooks.services import CdsService
from clinical import MixedPatientsError, build_record, evaluate
from clinical.finding import Finding
from clinical.settings import Settings
from runtime.store import IssuedCard

AI_GROUP = "aromatase-inhibitors"


@dataclass(frozen=True, slots=True)
class HookAnswer:
    cards: list[dict[str, Any]]
    issued: list[IssuedCard]
    withheld: tuple[str, ...]  # rules left out because their data was incomplete


def answer(
    service: CdsService,
    hook_instance: str,
    context: PatientViewContext,
    chart: Chart,
    *,
    now: datetime,
    settings: Settings,
    card_context: CardContext,
) -> HookAnswer:
    drafts = context.draft_resources()
    try:
        findings = evaluate(merge(drafts, chart.resources), now=now, settings=settings)
    except MixedPatientsError as error:  # draft orders about another patient: a 400
        raise RequestProblem(
            "the draft orders and the chart are about more than one patient",
            [{"field": "context.draftOrders", "problem": str(error)}],
        ) from None
    if isinstance(context, OrderSignContext):  # order-select too: it extends order-sign
        findings = _about_the_orders(findings, context, drafts, chart, now=now, settings=settings)
    shown = [f for f in findings if not chart.withheld(f.rule_id)]
    withheld = tuple(f.rule_id for f in findings if chart.withheld(f.rule_id))

    cards = [card_for(finding, card_context) for finding in shown]
    issued = [
        IssuedCard(card["uuid"], service.id, finding.rule_id, finding.severity.value, hook_instance)
        for card, finding in zip(cards, shown, strict=True)
    ]
    if withheld:
        missing = [(gap.label, gap.reason) for gap in chart.gaps]
        cards.append(data_incomplete_card(missing, withheld, card_context))
    return HookAnswer(cards, issued, withheld)


def _about_the_orders(
    findings: list[Finding],
    context: PatientViewContext,
    drafts: Sequence[dict[str, Any]],
    chart: Chart,
    *,
    now: datetime,
    settings: Settings,
) -> list[Finding]:
    """The findings an order hook shows.

    A selected draft of an aromatase inhibitor brings every finding (its intent, dose,
    interactions and the monitoring that should come with it). Other drafts bring only the
    findings they create or make more severe (a tamoxifen or estrogen draft next to an
    anastrozole course), or that cite them; an unrelated draft, or none at all, brings none.
    """
    if not drafts:
        return []
    selected, others = _split_selected(context, drafts)
    if _orders_aromatase_inhibitor(selected, drafts, now):
        return findings
    before = {
        f.rule_id: f for f in evaluate(merge(others, chart.resources), now=now, settings=settings)
    }
    selected_refs = {f"{r.get('resourceType')}/{r.get('id')}" for r in selected}
    kept = []
    for finding in findings:
        previous = before.get(finding.rule_id)
        new_or_worse = previous is None or finding.severity.rank > previous.severity.rank
        if new_or_worse or selected_refs.intersection(finding.evidence):
            kept.append(finding)
    return kept


def _split_selected(
    context: PatientViewContext, drafts: Sequence[dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """order-select: the drafts just selected, and the rest; order-sign: all are selected."""
    if not isinstance(context, OrderSelectContext):
        return list(drafts), []
    wanted = set(context.selections)
    selected = [r for r in drafts if f"{r.get('resourceType')}/{r.get('id')}" in wanted]
    if not selected:  # selections that name no draft: judge them all rather than none
        return list(drafts), []
    others = [r for r in drafts if r not in selected]
    return selected, others


def _orders_aromatase_inhibitor(
    selected: Sequence[dict[str, Any]], drafts: Sequence[dict[str, Any]], now: datetime
) -> bool:
    """Whether a selected draft is an aromatase inhibitor, as the clinical record reads drugs."""
    orders = [
        r for r in selected if r.get("resourceType") in ("MedicationRequest", "MedicationStatement")
    ]
    if not orders:
        return False
    medications = [r for r in drafts if r.get("resourceType") == "Medication"]
    return bool(build_record([*orders, *medications], now).courses(AI_GROUP))
