"""Cards the clinicians answered: which patient, rule and evidence each card was, and which of
them an answer acknowledges, so that an answered card is not shown again until its evidence
changes (docs/cds-hooks.md, "Alert burden").

One table, `cds_card_evidence`: a row per rule of every card a hook call showed (a card that
holds several monitoring reminders has a row per rule), and per finding that an
acknowledgement kept from being shown (`shown` false, for the report). Rows are written in
batches by a background thread, as the store writes `cds_issued_card`, so a hook call never
waits for the disk. The feedback itself stays in `cds_feedback` (runtime/store.py): an
acknowledgement is a feedback row joined to these rows by card uuid when it is read, so it
does not matter which arrives first, or at which worker or instance.

No PHI: the patient is a keyed hash (HMAC-SHA256) of the patient id, the evidence a SHA-256
of the evidence resources' content. The key is `[cards] patient_key`, else one made on first
use in the instance folder (`patient-key`, mode 0600), shared by the workers of an instance;
several instances sharing one database must share the setting.
"""

from __future__ import annotations

import atexit
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Engine,
    Select,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
)
from sqlalchemy.exc import SQLAlchemyError

from clinical.finding import Severity
from clinical.reader import iter_resources
from runtime.card_settings import CardSettings
from runtime.key_files import read_or_create_key_file
from runtime.store import Store, feedback_table, metadata

log = logging.getLogger(__name__)

KEY_FILE_NAME = "patient-key"
ACCEPTED = "accepted"
OVERRIDDEN = "overridden"

card_evidence_table = Table(
    "cds_card_evidence",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("rule_id", String(100), primary_key=True),
    Column("service_id", String(200), nullable=False),
    Column("indicator", String(20), nullable=False),
    Column("patient_key", String(64), nullable=False, index=True),  # HMAC-SHA256, hex
    Column("evidence", String(64), nullable=False),  # SHA-256 of the evidence, hex
    Column("suggestions", JSON, nullable=True),  # this rule's suggestion uuids on the card
    Column("shown", Boolean, nullable=False),  # false: kept away by an acknowledgement
    Column("issuer", String(500), nullable=True),
    Column("tenant", String(200), nullable=True),
    Column("issued_at", DateTime, nullable=False, index=True),  # UTC
)


# -- who and what, without PHI ----------------------------------------------------------------


def patient_key(key: bytes, patient_id: str) -> str:
    """The patient as the store knows them: HMAC-SHA256 of the FHIR id, never the id."""
    return hmac.new(key, b"patient\x00" + patient_id.encode(), hashlib.sha256).hexdigest()


def resources_by_reference(
    resources: Any, wanted: Iterable[str] | None = None
) -> dict[str, dict[str, Any]]:
    """`Type/id` -> resource, for what a finding's evidence names (the first of a pair wins:
    a draft order over the chart's); only the `wanted` references, when given."""
    ids = None if wanted is None else {ref.rpartition("/")[2] for ref in wanted}
    found: dict[str, dict[str, Any]] = {}
    for resource in iter_resources(resources):
        resource_id = resource.get("id")
        if isinstance(resource_id, str) and resource_id and (ids is None or resource_id in ids):
            found.setdefault(f"{resource.get('resourceType')}/{resource_id}", resource)
    return found


def evidence_fingerprint(references: Iterable[str], resources: Mapping[str, Any]) -> str:
    """What the finding was judged on: each evidence resource's content, hashed. A new result
    or a changed order changes it; a summary's "N months ago" does not (it is never read).
    `meta` and the narrative are left out: a server re-saving a resource or rewriting its
    narrative is not new evidence."""
    digest = hashlib.sha256()
    for reference in sorted(set(references)):
        digest.update(reference.encode() + b"\x00")
        resource = resources.get(reference)
        if isinstance(resource, dict):
            content = {k: v for k, v in resource.items() if k not in ("meta", "text")}
            digest.update(hashlib.sha256(orjson.dumps(content, option=_SORTED)).digest())
        else:
            digest.update(b"absent")
        digest.update(b"\x00")
    return digest.hexdigest()


_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def patient_key_secret(configured: str | None, instance_path: Path) -> bytes:
    """The HMAC key: the setting, else the instance folder's file (made on first use)."""
    if configured:
        return configured.encode()
    return _patient_key_file(instance_path.resolve() / KEY_FILE_NAME)


def _patient_key_file(path: Path) -> bytes:
    key = read_or_create_key_file(
        path, lambda: secrets.token_hex(32).encode(), what="patient key for the card store"
    )
    if len(key) < 32:
        raise ValueError(f"the patient key in {path} is shorter than 32 characters")
    return key


# -- rows ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardEvidence:
    """One rule of one card a hook call showed, or of a finding an acknowledgement kept away."""

    card_uuid: str
    rule_id: str
    service_id: str
    indicator: str
    patient_key: str
    evidence: str
    shown: bool
    issuer: str | None = None
    tenant: str | None = None
    suggestions: tuple[str, ...] = ()  # the uuids of this rule's suggestions on the card


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """A clinician's answer to a card: overridden with a reason, or a suggestion accepted."""

    rule_id: str
    evidence: str
    indicator: str  # the card's, when it was answered
    outcome: str  # accepted | overridden
    reason_code: str | None
    reason_system: str | None
    at: datetime  # when the service received it (UTC): the client's clock is not trusted

    def keeps_away(
        self, rule_id: str, severity: Severity, evidence: str, now: datetime, cards: CardSettings
    ) -> bool:
        """Whether this answer still keeps the finding from being shown: the same rule on the
        same evidence, no more severe than it was, within the time (short for a critical)."""
        if (rule_id, evidence) != (self.rule_id, self.evidence):
            return False
        if severity.rank > _rank(self.indicator):
            return False
        return now < self.at + lockout(severity, cards)


def lockout(severity: Severity, cards: CardSettings) -> timedelta:
    """How long an acknowledgement keeps a finding of this severity away."""
    days = timedelta(days=cards.suppression_days)
    if severity is Severity.CRITICAL:
        return min(days, timedelta(seconds=cards.critical_suppression_seconds))
    return days


def _rank(indicator: str) -> int:
    try:
        return Severity(indicator).rank
    except ValueError:
        return Severity.CRITICAL.rank + 1  # a card of a kind we do not know: never lower


def _utc_naive(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# -- the log -----------------------------------------------------------------------------------


class CardEvidenceLog:
    """The cards shown and kept away, and the acknowledgements that apply. Thread-safe."""

    FLUSH_SECONDS = 1.0

    def __init__(self, store: Store, key: bytes, cards: CardSettings) -> None:
        self.store = store
        self.engine: Engine = store.engine
        self.cards = cards
        self._key = key
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()  # the table is migration 0003's (runtime/schema.py)

    def patient(self, patient_id: str) -> str:
        return patient_key(self._key, patient_id)

    # -- writing, in batches --------------------------------------------------------------

    def remember(self, rows: Iterable[CardEvidence]) -> None:
        """Keep the rows for the next batch (at most FLUSH_SECONDS later, and at exit)."""
        now = _utc_naive(datetime.now(UTC))
        values = [
            {
                "card_uuid": row.card_uuid,
                "rule_id": row.rule_id,
                "service_id": row.service_id,
                "indicator": row.indicator,
                "patient_key": row.patient_key,
                "evidence": row.evidence,
                "shown": row.shown,
                "suggestions": list(row.suggestions) or None,
                "issuer": row.issuer,
                "tenant": row.tenant,
                "issued_at": now,
            }
            for row in rows
        ]
        if not values:
            return
        with self._lock:
            self._pending.extend(values)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="card-evidence", daemon=True
                )
                self._flusher.start()
                atexit.register(self.flush)

    def flush(self) -> None:
        """Write the rows kept so far (the background thread does it every second)."""
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            with self.store._relaxed() as connection:  # the store's batched-write transaction
                connection.execute(insert(card_evidence_table), rows)
        except SQLAlchemyError as error:
            log.warning("%d card evidence rows not recorded: %s", len(rows), type(error).__name__)

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self.FLUSH_SECONDS):
            self.flush()

    def close(self) -> None:
        self._stopping.set()
        self.flush()

    # -- reading ---------------------------------------------------------------------------

    def acknowledgements(
        self, patient: str, *, issuer: str | None, tenant: str | None, now: datetime
    ) -> list[Acknowledgement]:
        """The answers that may still keep a finding of this patient away from a hook call of
        this issuer and tenant. On the hot path: one indexed query, built once."""
        return self._read(
            _HOOK_QUERY, patient=patient, oldest=self._oldest(now), issuer=issuer or "",
            tenant=tenant or "",
        )  # fmt: skip

    def acknowledgements_in_app(
        self, patient: str, *, issuers: frozenset[str], now: datetime
    ) -> list[Acknowledgement]:
        """The same for the SMART app: the answers given in the EHRs (issuers) that list its
        FHIR server, or in any EHR when none does (the evidence must match all the same)."""
        m = card_evidence_table.c
        query = _PATIENT_QUERY
        if issuers:
            query = query.where(m.issuer.in_(sorted(issuers)))
        return self._read(query, patient=patient, oldest=self._oldest(now))

    def _oldest(self, now: datetime) -> datetime:
        return _utc_naive(now) - timedelta(days=self.cards.suppression_days)

    def _read(self, query: Select[Any], **parameters: Any) -> list[Acknowledgement]:
        with self.engine.connect() as connection:
            rows = connection.execute(query, parameters).all()
        return [
            Acknowledgement(
                row.rule_id,
                row.evidence,
                row.indicator,
                row.outcome,
                row.reason_code,
                row.reason_system,
                _aware(row.received_at),
            )
            for row in rows
            if _acknowledges(row)
        ]

    def rules_of_cards(self, card_uuids: Sequence[str]) -> dict[str, list[str]]:
        """card uuid -> the rules it showed (this worker's unwritten rows first written)."""
        self.flush()
        if not card_uuids:
            return {}
        m = card_evidence_table.c
        query = select(m.card_uuid, m.rule_id).where(m.card_uuid.in_(sorted(set(card_uuids))))
        found: dict[str, list[str]] = {}
        with self.engine.connect() as connection:
            for card_uuid, rule_id in connection.execute(query):
                found.setdefault(card_uuid, []).append(rule_id)
        return found


def _answers() -> Select[Any]:
    """Answers joined to the rules of the cards they answer: only from the EHR (issuer and
    tenant) that was shown the card. The comment's text is never read, only whether there
    was one."""
    m, f = card_evidence_table.c, feedback_table.c
    return (
        select(
            m.card_uuid,
            m.rule_id,
            m.evidence,
            m.indicator,
            m.suggestions,
            m.issued_at,
            m.issuer,
            m.tenant,
            f.outcome,
            func.nullif(func.coalesce(f.override_reason_code, ""), "").label("reason_code"),
            func.nullif(func.coalesce(f.override_reason_system, ""), "").label("reason_system"),
            (func.length(func.coalesce(f.user_comment, "")) > 0).label("commented"),
            f.accepted_suggestions,
            f.received_at,
        )
        .join(feedback_table, f.card_uuid == m.card_uuid)
        .where(
            m.shown.is_(True),
            func.coalesce(f.issuer, "") == func.coalesce(m.issuer, ""),
            func.coalesce(f.tenant, "") == func.coalesce(m.tenant, ""),
        )
    )


_PATIENT_QUERY = _answers().where(
    card_evidence_table.c.patient_key == bindparam("patient"),
    feedback_table.c.received_at >= bindparam("oldest"),
)
_HOOK_QUERY = _PATIENT_QUERY.where(
    func.coalesce(card_evidence_table.c.issuer, "") == bindparam("issuer"),
    func.coalesce(card_evidence_table.c.tenant, "") == bindparam("tenant"),
)


def _acknowledges(row: Any) -> bool:
    """An override with a reason acknowledges every rule of the card; an accepted suggestion
    the rule it was that rule's (a card of several reminders: only the one ordered)."""
    if row.outcome == OVERRIDDEN:
        return row.reason_code is not None
    if row.outcome == ACCEPTED:
        return _accepted_own_suggestion(row)
    return False


def _accepted_own_suggestion(row: Any) -> bool:
    accepted = row.accepted_suggestions if isinstance(row.accepted_suggestions, list) else []
    own = row.suggestions if isinstance(row.suggestions, list) else []
    return bool(set(map(str, accepted)) & set(map(str, own)))


# -- what the report reads ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardCount:
    day: date
    issuer: str | None
    tenant: str | None
    rule_id: str
    shown: bool
    cards: int


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to one rule of a card shown (a card of several reminders: one per rule)."""

    card_uuid: str
    day: date  # the card's, not the answer's
    issuer: str | None
    tenant: str | None
    rule_id: str
    outcome: str  # accepted | overridden
    reason_code: str | None
    commented: bool  # a user comment came with it (counted, never read out)


def card_counts(engine: Engine, since: datetime) -> list[CardCount]:
    """Cards shown and findings kept away, per day, issuer, tenant and rule."""
    m = card_evidence_table.c
    day = func.date(m.issued_at)
    query = (
        select(day, m.issuer, m.tenant, m.rule_id, m.shown, func.count())
        .where(m.issued_at >= _utc_naive(since))
        .group_by(day, m.issuer, m.tenant, m.rule_id, m.shown)
    )
    with engine.connect() as connection:
        return [
            CardCount(_day(row[0]), row[1], row[2], row[3], bool(row[4]), int(row[5]))
            for row in connection.execute(query)
        ]


def answers(engine: Engine, since: datetime) -> list[Answer]:
    """The answers to the cards shown since `since`. An accepted answer to a card of several
    reminders counts for the rules whose suggestions were accepted."""
    query = _answers().where(card_evidence_table.c.issued_at >= _utc_naive(since))
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        Answer(
            row.card_uuid,
            _day(row.issued_at),
            row.issuer,
            row.tenant,
            row.rule_id,
            row.outcome,
            row.reason_code,
            bool(row.commented),
        )
        for row in rows
        if row.outcome != ACCEPTED or _accepted_own_suggestion(row) or not row.suggestions
    ]


def _day(value: Any) -> date:
    """SQLite's date() is text, PostgreSQL's a date."""
    if isinstance(value, datetime):
        return value.date()
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
