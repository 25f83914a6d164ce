"""Durable state: CDS Hooks feedback, cards issued, and the JWT replay cache.

SQLAlchemy Core; SQLite by default (a file in the instance folder, or `sqlite://` in memory
for tests), PostgreSQL by URL (`postgresql+psycopg://...`) when several instances share it.
Every write is one transaction: all of it is stored, or none of it. No PHI is stored: card
and suggestion ids, rule ids, outcomes, override reasons and times.

Feedback is committed durably (SQLite `synchronous=FULL`, PostgreSQL's default). The two
writes of every hook call, the JWT replay cache and the cards-issued log, are committed without
waiting for the disk (SQLite `synchronous=NORMAL` in WAL mode, PostgreSQL
`synchronous_commit=off`): they survive a crash of the process but a power cut may take the
last moment of them, never half a row. That costs a replay window of at most one token's
lifetime after a power cut, and it takes an fsync (about 1.5 ms, under the database's write
lock) off every call, which otherwise caps one SQLite file at a few hundred calls a second.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

metadata = MetaData()

feedback_table = Table(
    "cds_feedback",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False),
    Column("card_uuid", String(200), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", JSON, nullable=True),  # list of suggestion uuids
    Column("override_reason_system", String(500), nullable=True),
    Column("override_reason_code", String(200), nullable=True),
    Column("override_reason_display", String(500), nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", DateTime, nullable=False),  # UTC
    Column("received_at", DateTime, nullable=False),  # UTC
    Column("issuer", String(500), nullable=True),
)

issued_card_table = Table(
    "cds_issued_card",
    metadata,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(200), nullable=False),
    Column("rule_id", String(100), nullable=False, index=True),
    Column("indicator", String(20), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("issued_at", DateTime, nullable=False),  # UTC
)

jwt_replay_table = Table(
    "cds_jwt_replay",
    metadata,
    Column("issuer", String(500), primary_key=True),
    Column("jti", String(500), primary_key=True),
    Column("expires_at", DateTime, nullable=False, index=True),  # UTC
)


@dataclass(frozen=True, slots=True)
class FeedbackRecord:
    """One CDS Hooks feedback item, validated, as stored."""

    service_id: str
    card_uuid: str
    outcome: str  # "accepted" | "overridden"
    outcome_timestamp: datetime
    accepted_suggestions: tuple[str, ...] = ()
    override_reason_system: str | None = None
    override_reason_code: str | None = None
    override_reason_display: str | None = None
    user_comment: str | None = None


@dataclass(frozen=True, slots=True)
class IssuedCard:
    card_uuid: str
    service_id: str
    rule_id: str
    indicator: str
    hook_instance: str


class StoreError(RuntimeError):
    """The store could not do what was asked; nothing was half-written."""


def _utc_naive(moment: datetime) -> datetime:
    """UTC without tzinfo: SQLite and PostgreSQL `timestamp` then compare alike."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


class Store:
    """The product's database. One per process; thread-safe."""

    _PURGE_EVERY_SECONDS = 60.0
    _ISSUED_FLUSH_SECONDS = 1.0

    def __init__(self, url: str, *, create_schema: bool = True) -> None:
        self.url = url
        self.engine = _engine(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        in_memory = self._sqlite and make_url(url).database in (None, "", ":memory:")
        # SQLite: a second pool to the same file whose commits do not wait for the disk
        self._relaxed_engine = (
            _engine(url, durable=False) if self._sqlite and not in_memory else None
        )
        # SQLite has one writer at a time; threads of one process queue here rather than in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if self._sqlite else nullcontext()
        )
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()
        self._pending_cards: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        if create_schema:
            self.create_schema()

    def create_schema(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (IntegrityError, OperationalError):  # another worker created it at the same moment
            metadata.create_all(self.engine)

    def dispose(self) -> None:
        self._stopping.set()
        self.flush_issued_cards()
        self.engine.dispose()
        if self._relaxed_engine is not None:
            self._relaxed_engine.dispose()

    @contextmanager
    def _durable(self) -> Iterator[Connection]:
        """A write transaction committed to disk before it returns (feedback)."""
        with self._write_lock, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _relaxed(self) -> Iterator[Connection]:
        """A write transaction whose commit does not wait for the disk (module docstring)."""
        with self._write_lock:
            if self._relaxed_engine is not None:
                with self._relaxed_engine.begin() as connection:
                    yield connection
                return
            with self.engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.execute(text("SET LOCAL synchronous_commit TO OFF"))
                yield connection

    def ping(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError:
            return False
        return True

    # -- feedback -----------------------------------------------------------------------------

    def record_feedback(self, records: Sequence[FeedbackRecord], *, issuer: str | None) -> int:
        """Store every item in one transaction; raise StoreError (nothing stored) otherwise."""
        received = _utc_naive(datetime.now(UTC))
        rows = [
            {
                "service_id": record.service_id,
                "card_uuid": record.card_uuid,
                "outcome": record.outcome,
                "accepted_suggestions": list(record.accepted_suggestions) or None,
                "override_reason_system": record.override_reason_system,
                "override_reason_code": record.override_reason_code,
                "override_reason_display": record.override_reason_display,
                "user_comment": record.user_comment,
                "outcome_timestamp": _utc_naive(record.outcome_timestamp),
                "received_at": received,
                "issuer": issuer,
            }
            for record in records
        ]
        if not rows:
            return 0
        try:
            with self._durable() as connection:
                connection.execute(insert(feedback_table), rows)
        except SQLAlchemyError as error:
            log.error("feedback not stored: %s", type(error).__name__)
            raise StoreError("feedback could not be stored") from None
        return len(rows)

    def feedback(self, service_id: str | None = None) -> list[dict[str, Any]]:
        """Stored feedback, oldest first (for admins and tests)."""
        query = select(feedback_table).order_by(feedback_table.c.id)
        if service_id is not None:
            query = query.where(feedback_table.c.service_id == service_id)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(query)]

    # -- cards issued ---------------------------------------------------------------------------

    def record_issued_cards(self, cards: Iterable[IssuedCard]) -> None:
        """Remember which rule each card uuid was, so feedback can be read by rule. Best effort:
        written in batches by a background thread (at most `_ISSUED_FLUSH_SECONDS` later, and
        at exit), not inside the hook call; a worker killed outright loses its last batch."""
        now = _utc_naive(datetime.now(UTC))
        rows = [
            {
                "card_uuid": card.card_uuid,
                "service_id": card.service_id,
                "rule_id": card.rule_id,
                "indicator": card.indicator,
                "hook_instance": card.hook_instance,
                "issued_at": now,
            }
            for card in cards
        ]
        if not rows:
            return
        with self._pending_lock:
            self._pending_cards.extend(rows)
            if self._flusher is None:
                self._flusher = threading.Thread(
                    target=self._flush_periodically, name="issued-cards", daemon=True
                )
                self._flusher.start()
                atexit.register(self.flush_issued_cards)

    def flush_issued_cards(self) -> None:
        """Write the cards issued so far (the background thread does it every second)."""
        with self._pending_lock:
            rows, self._pending_cards = self._pending_cards, []
        if not rows:
            return
        try:
            with self._relaxed() as connection:
                connection.execute(insert(issued_card_table), rows)
        except SQLAlchemyError as error:
            log.warning("%d issued cards not recorded: %s", len(rows), type(error).__name__)

    def _flush_periodically(self) -> None:
        while not self._stopping.wait(self._ISSUED_FLUSH_SECONDS):
            self.flush_issued_cards()

    def issued_cards(self) -> list[dict[str, Any]]:
        self.flush_issued_cards()
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(select(issued_card_table))]

    # -- JWT replay cache -----------------------------------------------------------------------

    def remember_jti(self, issuer: str, jti: str, expires_at: datetime) -> bool:
        """Record a JWT id until it expires; False when it was seen before (a replay)."""
        self._purge_expired_jtis()
        try:
            with self._relaxed() as connection:
                connection.execute(
                    insert(jwt_replay_table),
                    {"issuer": issuer, "jti": jti, "expires_at": _utc_naive(expires_at)},
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as error:
            log.error("replay cache unavailable: %s", type(error).__name__)
            raise StoreError("replay cache unavailable") from None
        return True

    def _purge_expired_jtis(self) -> None:
        now = time.monotonic()
        with self._purge_lock:
            if now - self._last_purge < self._PURGE_EVERY_SECONDS:
                return
            self._last_purge = now
        try:
            with self._relaxed() as connection:
                connection.execute(
                    delete(jwt_replay_table).where(
                        jwt_replay_table.c.expires_at < _utc_naive(datetime.now(UTC))
                    )
                )
        except SQLAlchemyError as error:
            log.warning("replay cache purge failed: %s", type(error).__name__)


def _engine(url: str, *, durable: bool = True) -> Engine:
    if url.startswith("sqlite"):
        database = make_url(url).database
        in_memory = not database or database == ":memory:"
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 10}}
        if not database or database == ":memory:":
            options["poolclass"] = StaticPool  # one shared in-memory database for all threads
        else:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **options)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            if not in_memory:
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                # FULL: a commit is on disk when it returns; NORMAL: at the next checkpoint
                cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cursor.execute("PRAGMA busy_timeout=10000")  # several workers share one file
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)
