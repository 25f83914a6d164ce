"""What the service counts for the EHR admin's Prometheus: calls, latency, cards, data gaps,
refused JWTs and feedback, served at GET /metrics (docs/cds-hooks.md, "Monitoring").

Every label value comes from a fixed set: service ids, hooks, HTTP status codes, rule ids of
the catalogue, card indicators, prefetch keys and the reason classes below. No patient id,
token, URL or free text is ever a label.

Under `anastrozole-cds serve` the workers are separate processes: `serve()` calls
`share_between_workers(folder)` before they start, each worker writes its values to files
there, and /metrics adds them up (prometheus-client's multiprocess mode). One server per
folder: a lock keeps a second one from emptying a live server's counts. Without it (tests,
`flask run`) the values live in the process.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

if TYPE_CHECKING:
    from cds_hooks.auth import Refusal

EXTENSION = "anastrozole_cds.metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
UNKNOWN = "unknown"
LOCK_FILE = "server.lock"  # held by the server whose workers count in the folder

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
    # The registry /metrics reads in a single process; None when the workers share files.
    registry: CollectorRegistry | None
    # Each metric's children by label values: a dict lookup instead of prometheus-client's
    # locked, validating `labels()` on every call. Bounded: label values come from fixed sets.
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict, repr=False)

    @classmethod
    def create(cls) -> Metrics:
        shared = MULTIPROCESS_ENV in os.environ
        registry = None if shared else CollectorRegistry()
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
            registry=registry,
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

    def _child(self, metric: Counter | Histogram, *label_values: str) -> Any:
        key = (id(metric), *label_values)
        child = self._children.get(key)
        if child is None:  # two threads may both get here: labels() gives both the same child
            child = self._children[key] = metric.labels(*label_values)
        return child

    # -- exposition ------------------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The Prometheus text format: this process's values, or every worker's added up."""
        if self.registry is not None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)


def metrics_for(app: Flask) -> Metrics:
    """The app's metrics, created with the first use."""
    metrics: Metrics | None = app.extensions.get(EXTENSION)
    if metrics is None:
        metrics = app.extensions[EXTENSION] = Metrics.create()
    return metrics


# -- several worker processes --------------------------------------------------------------------


class MetricsFolderInUse(RuntimeError):
    """Another live server counts in this folder."""


# Held open for the server's life: the lock is released when it (and its workers) end.
_folder_lock: list[IO[str]] = []


def share_between_workers(folder: Path) -> None:
    """Multiprocess mode for the workers about to start: each writes its values to files in
    `folder`, and /metrics adds them up. Call before any worker is forked.

    The folder is emptied only once this server holds its lock; MetricsFolderInUse, and
    nothing touched, when another live server holds it (its counts would be wiped)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise MetricsFolderInUse(f"{folder} is in use by another running server") from None
    _folder_lock.append(lock)
    for values_file in folder.glob("*.db"):  # the counts of a server that has ended
        values_file.unlink()
    os.environ[MULTIPROCESS_ENV] = str(folder)
    # prometheus-client chooses how values are kept when it is imported, which this module did
    # before the variable was set; choose again, before any metric exists (they are created in
    # the workers).
    values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: the worker's counts stay in the totals, its live files go."""
    if MULTIPROCESS_ENV in os.environ:
        multiprocess.mark_process_dead(pid)
