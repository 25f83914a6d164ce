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
import hashlib
import logging
import os
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
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from runtime import schema

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
    Column("tenant", String(200), nullable=True),  # the JWT's tenant claim, if allowlisted
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
    Column("jti", String(500), primary_key=True),  # SHA-256 of the JWT id: jti_digest()
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
    """The store could not do what was asked; nothing was half-written. The message says why
    in words a caller may see (an out-of-date schema names the command that fixes it)."""


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """Whether the store can take a write now: reachable, schema current, write lock had."""

    able_to_store: bool
    schema: schema.SchemaState
    problem: str | None = None  # one line, when it cannot


def _utc_naive(moment: datetime) -> datetime:
    """UTC without tzinfo: SQLite and PostgreSQL `timestamp` then compare alike."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def jti_digest(jti: str) -> str:
    """The replay cache's key for a JWT id: fixed length whatever the id's (RFC 7519 sets
    none), so every store keeps any id alike (migration 0002 computes the same)."""
    return hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


# PostgreSQL text cannot hold U+0000 (SQLite can): a NUL in feedback text is stored as U+FFFD,
# the Unicode replacement character, which marks where the text was changed.
_NUL = "\x00"
REPLACEMENT = "\ufffd"


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace(_NUL, REPLACEMENT)
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    return value


def _holds_nul(record: FeedbackRecord) -> bool:
    texts = (
        record.card_uuid,
        record.override_reason_system,
        record.override_reason_code,
        record.override_reason_display,
        record.user_comment,
        *record.accepted_suggestions,
    )
    return any(text and _NUL in text for text in texts)


class Store:
    """The product's database. One per process; thread-safe. Creating one opens no connection
    (a worker starts while the database is down) and never touches the schema: that is
    `runtime.schema.upgrade`'s, run before the workers start."""

    _PURGE_EVERY_SECONDS = 60.0
    _ISSUED_FLUSH_SECONDS = 1.0
    # /healthz: how long the write probe may wait for a lock, and how long its answer holds
    HEALTH_TIMEOUT_SECONDS = 0.5
    HEALTH_CACHE_SECONDS = 2.0
    _SCHEMA_RECHECK_SECONDS = 5.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = engine_for(url)
        self._sqlite = self.engine.dialect.name == "sqlite"
        self.in_memory = self._sqlite and make_url(url).database in (None, "", ":memory:")
        # SQLite: a second pool to the same file whose commits do not wait for the disk
        self._relaxed_engine = (
            engine_for(url, durable=False) if self._sqlite and not self.in_memory else None
        )
        # /healthz's own pool: short timeouts, so it answers while a write lock is held
        self._probe_engine = (
            engine_for(url, timeout_seconds=self.HEALTH_TIMEOUT_SECONDS)
            if not self.in_memory
            else self.engine
        )
        # SQLite has one writer at a time; threads of one process queue here rather than in
        # SQLite's busy handler, which sleeps in steps of up to 100 ms.
        self._sqlite_writer = threading.Lock() if self._sqlite else None
        self._write_lock: AbstractContextManager[Any] = self._sqlite_writer or nullcontext()
        self._last_purge = 0.0
        self._purge_lock = threading.Lock()
        self._pending_cards: list[dict[str, Any]] = []
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._stopping = threading.Event()
        self._schema: schema.SchemaState | None = None
        self._schema_checked = 0.0
        self._health: tuple[float, StoreHealth] | None = None
        self._health_lock = threading.Lock()

    def dispose(self) -> None:
        self._stopping.set()
        self.flush_issued_cards()
        self.engine.dispose()
        if self._relaxed_engine is not None:
            self._relaxed_engine.dispose()
        if self._probe_engine is not self.engine:
            self._probe_engine.dispose()

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

    # -- the schema and health ----------------------------------------------------------------

    def schema_state(self) -> schema.SchemaState:
        """The schema's state, asked again at most every few seconds (an admin may run `db
        upgrade`, or restore an older copy, while the workers run)."""
        known, now = self._schema, time.monotonic()
        if known is not None and now - self._schema_checked < self._SCHEMA_RECHECK_SECONDS:
            return known
        found = schema.state(self._probe_engine)
        if found.status != "unreachable":  # an outage says nothing about the schema
            self._schema, self._schema_checked = found, now
        return found

    def health(self) -> StoreHealth:
        """Able to store now? The schema is current and a write lock can be had within
        HEALTH_TIMEOUT_SECONDS. Asked at most every HEALTH_CACHE_SECONDS, by one thread at a
        time: the others take the last answer, so /healthz is never slow nor a load."""
        cached = self._health
        if cached is not None and time.monotonic() - cached[0] < self.HEALTH_CACHE_SECONDS:
            return cached[1]
        if not self._health_lock.acquire(blocking=cached is None, timeout=-1):
            return cached[1] if cached else self._probe()
        try:
            cached = self._health
            if cached is not None and time.monotonic() - cached[0] < self.HEALTH_CACHE_SECONDS:
                return cached[1]
            found = self._probe()
            self._health = (time.monotonic(), found)
            return found
        finally:
            self._health_lock.release()

    def _probe(self) -> StoreHealth:
        state = self.schema_state()
        if not state.ok:
            return StoreHealth(False, state, state.problem())
        problem = self._write_probe()
        return StoreHealth(problem is None, state, problem)

    def _write_probe(self) -> str | None:
        """Take the write lock and give it back (a transaction rolled back); the reason when
        that cannot be done within the timeout."""
        if self.in_memory:  # only this process can lock it, and it is not waiting
            return None
        lock = self._sqlite_writer
        if lock is not None and not lock.acquire(timeout=self.HEALTH_TIMEOUT_SECONDS):
            return "the database is busy: a write lock is held"
        try:
            return self._try_a_write()
        finally:
            if lock is not None:
                lock.release()

    def _try_a_write(self) -> str | None:
        try:
            connection = self._probe_engine.connect()
        except SQLAlchemyError as error:
            return f"the database cannot be reached: {schema.describe_error(error)}"
        try:
            with connection:
                if self._sqlite:
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    connection.begin()
                    milliseconds = int(self.HEALTH_TIMEOUT_SECONDS * 1000)
                    connection.exec_driver_sql(f"SET LOCAL lock_timeout = {milliseconds}")
                    connection.exec_driver_sql(f"SET LOCAL statement_timeout = {milliseconds}")
                connection.exec_driver_sql(
                    f"UPDATE {schema.VERSION_TABLE} SET version_num = version_num"
                )
                connection.rollback()
        except SQLAlchemyError as error:
            return f"the database cannot take a write: {schema.describe_error(error)}"
        return None

    def _unavailable(self, what: str, error: SQLAlchemyError) -> StoreError:
        """The StoreError for a failed write: an out-of-date schema is named, with its fix."""
        state = self.schema_state()
        if state.status not in ("current", "unreachable"):
            self._health = None
            log.error("%s: %s", what, state.problem())
            return StoreError(f"{what}: {state.problem()}")
        log.error("%s: %s", what, type(error).__name__)
        return StoreError(f"{what}: the database is unavailable, try again")

    # -- feedback -----------------------------------------------------------------------------

    def record_feedback(
        self,
        records: Sequence[FeedbackRecord],
        *,
        issuer: str | None,
        tenant: str | None = None,
    ) -> int:
        """Store every item in one transaction; raise StoreError (nothing stored) otherwise.
        A NUL in any text is stored as U+FFFD (see _without_nul), on every database alike."""
        received = _utc_naive(datetime.now(UTC))
        rows = [
            {
                "service_id": record.service_id,
                "card_uuid": _without_nul(record.card_uuid),
                "outcome": record.outcome,
                "accepted_suggestions": _without_nul(list(record.accepted_suggestions)) or None,
                "override_reason_system": _without_nul(record.override_reason_system),
                "override_reason_code": _without_nul(record.override_reason_code),
                "override_reason_display": _without_nul(record.override_reason_display),
                "user_comment": _without_nul(record.user_comment),
                "outcome_timestamp": _utc_naive(record.outcome_timestamp),
                "received_at": received,
                "issuer": issuer,
                "tenant": tenant,
            }
            for record in records
        ]
        if not rows:
            return 0
        cleaned = sum(1 for record in records if _holds_nul(record))
        if cleaned:
            log.info("%d feedback items held a NUL character: stored as U+FFFD", cleaned)
        try:
            with self._durable() as connection:
                connection.execute(insert(feedback_table), rows)
        except SQLAlchemyError as error:
            raise self._unavailable("feedback could not be stored", error) from None
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
                    {
                        "issuer": issuer,
                        "jti": jti_digest(jti),
                        "expires_at": _utc_naive(expires_at),
                    },
                )
        except IntegrityError:
            return False
        except SQLAlchemyError as error:
            raise self._unavailable("replay cache unavailable", error) from None
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


# The database file holds patient ids (SMART sessions) and clinicians' free text (feedback):
# readable by its owner only. SQLite gives its -wal and -shm files the database file's mode.
PRIVATE_FILE_MODE = 0o600
PRIVATE_FOLDER_MODE = 0o700


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for another database or SQLite in memory."""
    if not url.startswith("sqlite"):
        return None
    database = make_url(url).database
    return None if not database or database == ":memory:" else Path(database)


def readable_by_others(url: str) -> str | None:
    """A warning when the SQLite file can be read by others than its owner (a file made by an
    earlier version, or copied): it holds patient ids and free text."""
    file = sqlite_file(url)
    try:
        mode = file.stat().st_mode & 0o777 if file is not None else 0
    except OSError:
        return None
    if file is None or not mode & 0o077:
        return None
    return f"{file} has mode {mode:04o}: it holds patient ids; chmod 600 it (and its -wal, -shm)"


def _create_private(path: Path) -> None:
    """The SQLite file, created empty with mode 0600 (and its folder 0700) if it is missing:
    SQLite would create it with the umask's mode, usually 0644."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=PRIVATE_FOLDER_MODE)
    try:
        descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
    except FileExistsError:
        return
    os.close(descriptor)


def engine_for(url: str, *, durable: bool = True, timeout_seconds: float = 10.0) -> Engine:
    """An engine for the store's URL: SQLite with its pragmas (WAL, synchronous, busy
    timeout), or another database with pre-ping. Opens no connection."""
    if url.startswith("sqlite"):
        file = sqlite_file(url)
        options: dict[str, Any] = {
            "connect_args": {"check_same_thread": False, "timeout": timeout_seconds}
        }
        if file is None:
            options["poolclass"] = StaticPool  # one shared in-memory database for all threads
        else:
            _create_private(file)
        engine = create_engine(url, **options)
        busy_ms = int(timeout_seconds * 1000)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={busy_ms}")  # several workers share one file
            if file is not None:
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                # FULL: a commit is on disk when it returns; NORMAL: at the next checkpoint
                cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {}
    if url.startswith("postgresql"):
        connect_args["connect_timeout"] = max(1, round(timeout_seconds))
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)
