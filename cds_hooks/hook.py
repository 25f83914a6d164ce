"""From a validated hook call and its chart to the cards: evaluate, scope, render.

No clinical decision is made here: `clinical.evaluate` decides; this module only chooses
which of its findings belong to this moment (the order hooks show what the draft orders
are about) and which cannot be trusted because their data is missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from cds_hooks.cards import CardContext, data_incomplete_card
from cds_hooks.models import (
    OrderSelectContext,
    OrderSignContext,
    PatientViewContext,
    RequestProblem,
)
from cds_hooks.prefetch import Chart, merge
from cds_hooks.services import CdsService
from cds_hooks.suppression import CallScreen
from clinical import MixedPatientsError, build_record, evaluate, evaluate_record
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
    screen: CallScreen,
) -> HookAnswer:
    drafts = context.draft_resources()
    resources = merge(drafts, chart.resources)
    try:
        record = build_record(resources, now)
    except MixedPatientsError as error:  # draft orders about another patient: a 400
        raise RequestProblem(
            "the draft orders and the chart are about more than one patient",
            [{"field": "context.draftOrders", "problem": str(error)}],
        ) from None
    findings = evaluate_record(record, now=now, settings=settings)
    if isinstance(context, OrderSignContext):  # order-select too: it extends order-sign
        findings = _about_the_orders(findings, context, drafts, chart, now=now, settings=settings)
        concerned = bool(findings)  # the orders are about what this service watches
    else:  # a drug the rules read (clinical/record.py), in a living patient's chart
        concerned = bool(record.medications) and not record.deceased
    skipped = [rule for rule in chart.skipped_rules() if settings.enabled(rule)]
    shown = [_with_notes(f, chart) for f in findings if f.rule_id not in skipped]

    # the [cards] policy, suppression by feedback, monitoring reminders together
    rendered = screen.cards(shown, resources, card_context)
    cards = [r.card for r in rendered]
    issued = [
        IssuedCard(r.card["uuid"], service.id, r.topic, r.card["indicator"], hook_instance)
        for r in rendered
    ]
    # A check skipped for want of data is said whether or not it spoke on what did arrive:
    # the missing part may hold what it would have spoken of (a Hy's law result on page two).
    withheld = tuple(skipped) if skipped and (concerned or len(shown) < len(findings)) else ()
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
    if _orders_aromatase_inhibitor(selected, [*drafts, *chart.resources], now):
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
    selected: Sequence[dict[str, Any]], around: Sequence[dict[str, Any]], now: datetime
) -> bool:
    """Whether a selected draft is an aromatase inhibitor, as the clinical record reads drugs
    (its Medication from the drafts or the chart, when it names one by reference)."""
    orders = [
        r for r in selected if r.get("resourceType") in ("MedicationRequest", "MedicationStatement")
    ]
    if not orders:
        return False
    medications = [r for r in around if r.get("resourceType") == "Medication"]
    return bool(build_record([*orders, *medications], now).courses(AI_GROUP))


def _with_notes(finding: Finding, chart: Chart) -> Finding:
    """The finding, saying which optional data it was judged without (the card shows them)."""
    notes = tuple(n for n in chart.notes_for(finding.rule_id) if n not in finding.data_gaps)
    return replace(finding, data_gaps=finding.data_gaps + notes) if notes else finding
