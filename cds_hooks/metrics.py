"""What the CDS Hooks service counts for the EHR admin's Prometheus: calls, latency, cards,
data gaps, refused JWTs and feedback, served at GET /metrics (docs/cds-hooks.md, "Monitoring").

Every label value comes from a fixed set: service ids, hooks, HTTP status codes, rule ids of
the catalogue, card indicators, prefetch keys and the reason classes below. No patient id,
token, URL or free text is ever a label. The metrics live in the app's registry, or in the
workers' shared files under `serve` (runtime/metrics.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Histogram

from runtime.metrics import registry_for

if TYPE_CHECKING:
    from cds_hooks.auth import Refusal

log = logging.getLogger(__name__)

EXTENSION = "cds_hooks.metrics"
UNKNOWN = "unknown"
# A prefetched call answers in a few ms; one that queries the FHIR server is bounded by
# fhir_deadline_seconds (2.5 by default).
CALL_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class Metrics:
    """The service's counters and histogram, for one process."""

    calls: Counter
    call_seconds: Histogram
    cards: Counter
    data_gaps: Counter
    jwt_refusals: Counter
    feedback: Counter
    tenant_requests: Counter
    tenant_feedback: Counter
    # Each metric's children by label values: a dict lookup instead of prometheus-client's
    # locked, validating `labels()` on every call. Bounded: label values come from fixed sets.
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> Metrics:
        prefix = "anastrozole_cds"
        return cls(
            calls=Counter(
                f"{prefix}_calls",
                "CDS service calls, by service, hook and HTTP status.",
                ("service", "hook", "status"),
                registry=registry,
            ),
            call_seconds=Histogram(
                f"{prefix}_call_duration_seconds",
                "Time to answer a CDS service call, FHIR queries included.",
                ("service",),
                buckets=CALL_SECONDS_BUCKETS,
                registry=registry,
            ),
            cards=Counter(
                f"{prefix}_cards",
                "Cards returned, by service, rule id (card source.topic.code) and indicator.",
                ("service", "rule", "indicator"),
                registry=registry,
            ),
            data_gaps=Counter(
                f"{prefix}_data_gaps",
                "Prefetch keys the service could not fetch from the FHIR server, by reason class.",
                ("service", "key", "reason"),
                registry=registry,
            ),
            jwt_refusals=Counter(
                f"{prefix}_jwt_refusals",
                "Calls refused because of their JWT, by reason class.",
                ("reason",),
                registry=registry,
            ),
            feedback=Counter(
                f"{prefix}_feedback",
                "Feedback items received, by service and outcome.",
                ("service", "outcome"),
                registry=registry,
            ),
            tenant_requests=Counter(
                f"{prefix}_tenant_requests",
                "Calls and feedback with a verified JWT, by its tenant (a listed one; "
                '"unlisted" when its issuer lists none; "none" without the claim).',
                ("tenant",),
                registry=registry,
            ),
            tenant_feedback=Counter(
                f"{prefix}_tenant_feedback",
                "Feedback items received, by service and tenant (named as in tenant_requests).",
                ("service", "tenant"),
                registry=registry,
            ),
        )

    # -- recording (on the hot path: a dict lookup and an increment each) ----------------------

    def count_call(self, service_id: str, hook: str, status: int, seconds: float) -> None:
        self._child(self.calls, service_id, hook, str(status)).inc()
        self._child(self.call_seconds, service_id).observe(seconds)

    def count_card(self, service_id: str, rule_id: str, indicator: str) -> None:
        self._child(self.cards, service_id, rule_id, indicator).inc()

    def count_data_gap(self, service_id: str, key: str, fault: str) -> None:
        """`fault`: the failed query's class (ehr/client.py's Fault), or "no_data"."""
        self._child(self.data_gaps, service_id, key, fault).inc()

    def count_jwt_refusal(self, refusal: Refusal) -> None:
        self._child(self.jwt_refusals, refusal).inc()

    def count_feedback(self, service_id: str, outcome: str) -> None:
        self._child(self.feedback, service_id, outcome).inc()

    def count_tenant_request(self, tenant: str) -> None:
        """`tenant`: Caller.tenant_label, a listed tenant or "unlisted" or "none"."""
        self._child(self.tenant_requests, tenant).inc()

    def count_tenant_feedback(self, service_id: str, tenant: str) -> None:
        self._child(self.tenant_feedback, service_id, tenant).inc()

    def _child(self, metric: Counter | Histogram, *label_values: str) -> Any:
        return _labelled(self._children, metric, label_values)


def _labelled(
    children: dict[tuple[Any, ...], Any], metric: Counter | Histogram, label_values: tuple[str, ...]
) -> Any:
    """The metric's child for these label values, made once (a dict lookup after that);
    one that cannot be made (its values file, on a full disk) counts nothing."""
    key = (id(metric), *label_values)
    child = children.get(key)
    if child is None:  # two threads may both get here: labels() gives both the same child
        try:
            child = metric.labels(*label_values)
        except OSError as error:
            log.error("a metric is not counted: %s", error.strerror or error)
            return _NOT_COUNTED
        children[key] = child
    return child


class _NotCounted:
    """A metric that could not be made: counting it does nothing (the call is answered)."""

    def inc(self, amount: float = 1) -> None:
        return None

    def observe(self, amount: float) -> None:
        return None


_NOT_COUNTED = _NotCounted()


def metrics_for(app: Flask) -> Metrics:
    """The app's CDS Hooks metrics, created with the first use."""
    metrics: Metrics | None = app.extensions.get(EXTENSION)
    if metrics is None:
        metrics = app.extensions[EXTENSION] = Metrics.create(registry_for(app))
    return metrics


# -- alert burden (docs/cds-hooks.md, "Alert burden"): kept apart from the counters above ------

BURDEN_EXTENSION = "cds_hooks.burden_metrics"
# Why a finding was or was not a card of its own: its own card, in a card of monitoring
# reminders, left out by the hook's [cards] policy, or kept away by an acknowledgement.
DISPOSITIONS = ("card", "grouped", "policy", "acknowledged")


@dataclass(frozen=True)
class BurdenMetrics:
    """Findings by what became of them, and the answers to the cards by rule and reason."""

    findings: Counter
    answers: Counter
    comments: Counter
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls, registry: CollectorRegistry | None) -> BurdenMetrics:
        prefix = "anastrozole_cds"
        return cls(
            findings=Counter(
                f"{prefix}_findings",
                "Findings of the hook calls by disposition: card, grouped (in a monitoring-due "
                "card), policy (not shown at this hook), acknowledged (kept away by feedback).",
                ("service", "rule", "disposition"),
                registry=registry,
            ),
            answers=Counter(
                f"{prefix}_card_answers",
                "Feedback items by the rule of the card (each rule of a monitoring-due card), "
                "outcome and override reason code (none, or other for a code no rule offers).",
                ("service", "rule", "outcome", "override_reason"),
                registry=registry,
            ),
            comments=Counter(
                f"{prefix}_card_answer_comments",
                "Feedback items that came with a user comment, by rule (counted, never stored "
                "in a label).",
                ("service", "rule"),
                registry=registry,
            ),
        )

    def count_finding(self, service_id: str, rule_id: str, disposition: str) -> None:
        self._child(self.findings, service_id, rule_id, disposition).inc()

    def count_answer(
        self, service_id: str, rule_id: str, outcome: str, reason: str, *, commented: bool
    ) -> None:
        self._child(self.answers, service_id, rule_id, outcome, reason).inc()
        if commented:
            self._child(self.comments, service_id, rule_id).inc()

    def _child(self, metric: Counter, *label_values: str) -> Any:
        return _labelled(self._children, metric, label_values)


def burden_metrics_for(app: Flask) -> BurdenMetrics:
    """The app's alert-burden metrics, created with the first use."""
    metrics: BurdenMetrics | None = app.extensions.get(BURDEN_EXTENSION)
    if metrics is None:
        metrics = app.extensions[BURDEN_EXTENSION] = BurdenMetrics.create(registry_for(app))
    return metrics
