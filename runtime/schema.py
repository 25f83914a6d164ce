"""The database's schema, versioned by Alembic: every table of the product is created and
changed by the revisions in runtime/migrations/versions, never by the code that uses it.

Who migrates (docs/operations.md, "The schema"):
- `anastrozole-cds db upgrade`, or `serve`, once, in its master process before any worker
  starts (unless `store_upgrade_on_start` is off); workers never create or alter a table.
- `create_app` migrates only an in-memory SQLite database (`sqlite://`): it lives in that
  process, so nobody else can. Tests with a file or PostgreSQL call `upgrade(url)` first.

Two processes upgrading at once (two servers starting on one PostgreSQL) take turns: the
upgrade holds a lock (PostgreSQL: an advisory lock; SQLite: the write lock, BEGIN
IMMEDIATE), reads the version under it, and commits the whole upgrade in one transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"  # package data
# The tables of the schema before versioning: a database holding any of them and no
# alembic_version was made by that code (revision 0001 adopts it).
BASELINE_TABLES = frozenset(
    {"cds_feedback", "cds_issued_card", "cds_jwt_replay", "smart_launch", "smart_session"}
)
VERSION_TABLE = "alembic_version"
# pg_advisory_xact_lock key: "anastrozole-cds schema" in a bigint (any constant would do).
_PG_LOCK_KEY = 0x616E6173_63647321
UPGRADE_COMMAND = "anastrozole-cds db upgrade"

Status = Literal["current", "empty", "unversioned", "older", "newer", "unreachable"]


@dataclass(frozen=True, slots=True)
class SchemaState:
    """Where a database's schema stands against what this code needs."""

    status: Status
    head: str
    current: str | None = None
    reason: str | None = None  # for "unreachable": the database's error, one line

    @property
    def ok(self) -> bool:
        return self.status == "current"

    def problem(self, config_hint: str = "") -> str | None:
        """One line naming what is wrong and what to run; None when the schema is current."""
        run = f"run `{UPGRADE_COMMAND}{config_hint}`"
        return {
            "current": None,
            "empty": f"the database has no tables yet: {run}",
            "unversioned": f"the database schema predates versioning: {run}",
            "older": (
                f"the database schema is at revision {self.current}, this version needs "
                f"{self.head}: {run}"
            ),
            "newer": (
                f"the database schema is at revision {self.current}, which this version "
                f"(needs {self.head}) does not know: a newer anastrozole-cds upgraded it; run "
                "that version"
            ),
            "unreachable": f"the database cannot be reached: {self.reason}",
        }[self.status]


# -- the revisions ----------------------------------------------------------------------------------


def _config() -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and every revision this code knows."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(_config())
    heads = scripts.get_heads()
    if len(heads) != 1:  # two revisions with one down_revision: a merge is missing
        raise RuntimeError(f"the migrations have {len(heads)} heads: {', '.join(heads)}")
    return heads[0], frozenset(script.revision for script in scripts.walk_revisions())


def head() -> str:
    """The revision this code needs."""
    return _revisions()[0]


# -- reading and upgrading ------------------------------------------------------------------------


def state(target: str | Engine | Connection) -> SchemaState:
    """Where the database's schema stands; "unreachable" when it cannot be asked."""
    try:
        with _connected(target) as connection:
            return _state_of(connection)
    except SQLAlchemyError as error:
        return SchemaState("unreachable", head(), reason=describe_error(error))


def current(target: str | Engine | Connection) -> str | None:
    """The revision recorded in the database; None when it has none."""
    with _connected(target) as connection:
        return _recorded(connection)


def upgrade(target: str | Engine | Connection) -> str:
    """Bring the database to this code's head revision (a no-op when it is there) and return
    it. The whole upgrade is one transaction, under the migration lock. SQLAlchemyError when
    the database cannot be reached or refuses; SchemaTooNew when it is ahead of this code."""
    from alembic import command

    with _connected(target, migrating=True) as connection:
        with connection.begin():
            _take_migration_lock(connection)
            found = _state_of(connection)
            if found.status == "newer":
                raise SchemaTooNew(found)
            if found.status != "current":
                config = _config()
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
                log.info(
                    "database schema upgraded from %s to %s", found.current or found.status, head()
                )
        return head()


class SchemaTooNew(RuntimeError):
    """The database was upgraded by a newer version of the product."""

    def __init__(self, found: SchemaState) -> None:
        super().__init__(found.problem())
        self.state = found


def _state_of(connection: Connection) -> SchemaState:
    newest, known = _revisions()
    recorded = _recorded(connection)
    if recorded is None:
        tables = set(inspect(connection).get_table_names())
        return SchemaState("unversioned" if tables & BASELINE_TABLES else "empty", newest)
    if recorded == newest:
        return SchemaState("current", newest, recorded)
    return SchemaState("older" if recorded in known else "newer", newest, recorded)


def _recorded(connection: Connection) -> str | None:
    if not inspect(connection).has_table(VERSION_TABLE):
        return None
    versions = [
        row[0] for row in connection.execute(text(f"SELECT version_num FROM {VERSION_TABLE}"))
    ]
    return versions[0] if len(versions) == 1 else (",".join(sorted(versions)) or None)


def _take_migration_lock(connection: Connection) -> None:
    """One upgrade at a time: the second waits, then finds the schema current."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif connection.dialect.name == "sqlite":
        # The write lock now, before the version is read (a deferred transaction would read
        # it, then find another upgrade holding the lock). DDL joins the transaction.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def _connected(
    target: str | Engine | Connection, *, migrating: bool = False
) -> Iterator[Connection]:
    if isinstance(target, Connection):
        yield target
        return
    from runtime.store import engine_for

    engine = engine_for(target) if isinstance(target, str) else target
    try:
        with engine.connect() as connection:
            if not (migrating and connection.dialect.name == "sqlite"):
                yield connection
                return
            # The driver's own transaction handling would commit each CREATE at once: the
            # transaction is ours (BEGIN IMMEDIATE), so the driver leaves it alone meanwhile.
            driver = connection.connection.driver_connection
            before = driver.isolation_level  # type: ignore[union-attr]
            driver.isolation_level = None  # type: ignore[union-attr]
            try:
                yield connection
            finally:
                driver.isolation_level = before  # type: ignore[union-attr]
    finally:
        if isinstance(target, str):
            engine.dispose()


def describe_error(error: BaseException) -> str:
    """A database error in one line, without the SQL or parameters."""
    cause = getattr(error, "orig", None) or error
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def shown_url(url: str) -> str:
    """A database URL fit for a message: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except SQLAlchemyError:
        return "(not a database URL)"
