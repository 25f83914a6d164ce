"""The schema is Alembic's: a database made by the code before versioning, with data in it, is
adopted and upgraded losing nothing, on SQLite and PostgreSQL; `db upgrade` and `db current`
say where it stands; an upgrade run twice at once is done once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    insert,
    select,
    text,
)

from anastrozole_cds.cli import main
from runtime import schema
from runtime.store import FeedbackRecord, Store, StoreError, feedback_table
from smartapp.tokens import launch_table, session_table
from tests.app.postgres_server import fresh_database, postgres_server

# The tables exactly as the code before migrations created them (metadata.create_all in
# runtime/store.py and smartapp/tokens.py at commit fbac9ff).
LEGACY = MetaData()
Table(
    "cds_feedback", LEGACY,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("service_id", String(200), nullable=False),
    Column("card_uuid", String(200), nullable=False, index=True),
    Column("outcome", String(20), nullable=False),
    Column("accepted_suggestions", JSON, nullable=True),
    Column("override_reason_system", String(500), nullable=True),
    Column("override_reason_code", String(200), nullable=True),
    Column("override_reason_display", String(500), nullable=True),
    Column("user_comment", Text, nullable=True),
    Column("outcome_timestamp", DateTime, nullable=False),
    Column("received_at", DateTime, nullable=False),
    Column("issuer", String(500), nullable=True),
)  # fmt: skip
Table(
    "cds_issued_card", LEGACY,
    Column("card_uuid", String(64), primary_key=True),
    Column("service_id", String(200), nullable=False),
    Column("rule_id", String(100), nullable=False, index=True),
    Column("indicator", String(20), nullable=False),
    Column("hook_instance", String(200), nullable=False),
    Column("issued_at", DateTime, nullable=False),
)  # fmt: skip
Table(
    "cds_jwt_replay", LEGACY,
    Column("issuer", String(500), primary_key=True),
    Column("jti", String(500), primary_key=True),
    Column("expires_at", DateTime, nullable=False, index=True),
)  # fmt: skip
Table(
    "smart_launch", LEGACY,
    Column("state", String(128), primary_key=True),
    Column("browser", String(64), nullable=False),
    Column("iss", String(1000), nullable=False),
    Column("launch", Text, nullable=True),
    Column("code_verifier", String(128), nullable=True),
    Column("nonce", String(128), nullable=False),
    Column("redirect_uri", String(1000), nullable=False),
    Column("token_endpoint", String(1000), nullable=False),
    Column("issuer", String(1000), nullable=True),
    Column("jwks_uri", String(1000), nullable=True),
    Column("framed", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
)  # fmt: skip
Table(
    "smart_session", LEGACY,
    Column("handle", String(64), primary_key=True),
    Column("browser", String(64), nullable=False),
    Column("iss", String(1000), nullable=False),
    Column("token_endpoint", String(1000), nullable=False),
    Column("access_token", Text, nullable=False),
    Column("refresh_token", Text, nullable=True),
    Column("access_expires_at", DateTime, nullable=True),
    Column("scope", Text, nullable=False),
    Column("patient", String(200), nullable=False),
    Column("encounter", String(200), nullable=True),
    Column("need_patient_banner", Boolean, nullable=False),
    Column("smart_style_url", String(1000), nullable=True),
    Column("fhir_context", JSON, nullable=True),
    Column("app_context", Text, nullable=True),
    Column("fhir_user", String(1000), nullable=True),
    Column("framed", Boolean, nullable=False),
    Column("expires_at", DateTime, nullable=False, index=True),
)  # fmt: skip

LATER = datetime(2030, 1, 1)
ROWS = {
    "cds_feedback": [
        {"service_id": "svc", "card_uuid": f"card-{n}", "outcome": "overridden",
         "accepted_suggestions": None, "override_reason_system": "urn:r",
         "override_reason_code": "not-relevant", "override_reason_display": "Not relevant",
         "user_comment": f"comment {n}", "outcome_timestamp": datetime(2026, 11, 1),
         "received_at": datetime(2026, 11, 1), "issuer": "https://ehr.example.org"}
        for n in range(3)
    ],
    "cds_issued_card": [
        {"card_uuid": "card-0", "service_id": "svc", "rule_id": "dexa-due",
         "indicator": "warning", "hook_instance": "h1", "issued_at": datetime(2026, 11, 1)}
    ],
    "cds_jwt_replay": [
        {"issuer": "https://ehr.example.org", "jti": "jti-seen-before-upgrade",
         "expires_at": LATER}
    ],
    "smart_launch": [
        {"state": "s1", "browser": "b" * 64, "iss": "https://ehr.example.org/fhir",
         "launch": "l1", "code_verifier": "v" * 43, "nonce": "n1",
         "redirect_uri": "https://cds.example.org/smart/callback",
         "token_endpoint": "https://ehr.example.org/token", "issuer": None, "jwks_uri": None,
         "framed": False, "expires_at": LATER}
    ],
    "smart_session": [
        {"handle": "h1", "browser": "b" * 64, "iss": "https://ehr.example.org/fhir",
         "token_endpoint": "https://ehr.example.org/token", "access_token": "sealed-a",
         "refresh_token": "sealed-r", "access_expires_at": LATER, "scope": "launch",
         "patient": "p1", "encounter": None, "need_patient_banner": True,
         "smart_style_url": None, "fhir_context": [{"reference": "Encounter/e1"}],
         "app_context": None, "fhir_user": None, "framed": False, "expires_at": LATER}
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database: a SQLite file, or a new database on a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.sqlite3'}"
    name = f"t_{request.node.name.split('[')[0][-40:]}".lower()
    return fresh_database(request.getfixturevalue("postgres_url"), name)


def made_by_the_code_before_migrations(url: str) -> None:
    """The tables as that code made them, with rows in each, and no alembic_version."""
    engine = create_engine(url)
    LEGACY.create_all(engine)
    with engine.begin() as connection:
        for name, rows in ROWS.items():
            connection.execute(insert(LEGACY.tables[name]), rows)
    engine.dispose()


def test_a_database_made_before_migrations_is_upgraded_losing_nothing(empty_database: str) -> None:
    made_by_the_code_before_migrations(empty_database)
    assert schema.state(empty_database).status == "unversioned"

    assert schema.upgrade(empty_database) == schema.head()

    assert schema.state(empty_database).ok
    store = Store(empty_database)
    try:
        feedback = store.feedback()
        assert [row["card_uuid"] for row in feedback] == ["card-0", "card-1", "card-2"]
        assert [row["user_comment"] for row in feedback] == [f"comment {n}" for n in range(3)]
        assert {row["tenant"] for row in feedback} == {None}
        assert [row["rule_id"] for row in store.issued_cards()] == ["dexa-due"]
        # the id seen before the upgrade is still a replay after it
        assert not store.remember_jti("https://ehr.example.org", "jti-seen-before-upgrade", LATER)
        with store.engine.connect() as connection:
            launches = connection.execute(select(launch_table)).mappings().all()
            sessions = connection.execute(select(session_table)).mappings().all()
        assert [dict(row) for row in launches] == ROWS["smart_launch"]
        assert [dict(row) for row in sessions] == ROWS["smart_session"]
        # and the new column takes new rows
        record = FeedbackRecord("svc", "card-9", "accepted", datetime.now(UTC), ("s1",))
        store.record_feedback([record], issuer="https://ehr.example.org", tenant="clinic-a")
        assert store.feedback()[-1]["tenant"] == "clinic-a"
    finally:
        store.dispose()


def test_an_upgrade_run_twice_at_once_is_done_once(empty_database: str) -> None:
    results: list[object] = []

    def upgrade() -> None:
        try:
            results.append(schema.upgrade(empty_database))
        except Exception as error:  # collected: the assertion below shows it
            results.append(error)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [schema.head()] * 4
    engine = create_engine(empty_database)
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert versions == [(schema.head(),)]


def _db(*arguments: str, url: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["db", *arguments], env={"ANASTROZOLE_CDS_STORE_URL": url})
    return result.exit_code, result.output


def test_db_current_and_db_upgrade_say_where_the_schema_stands(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    code, said = _db("current", url=url)
    assert code == 1 and "no tables yet: run `anastrozole-cds db upgrade`" in said

    code, said = _db("upgrade", url=url)
    assert code == 0 and f"upgraded from empty to revision {schema.head()}" in said
    code, said = _db("current", url=url)
    assert code == 0 and f"revision {schema.head()} (current)" in said
    code, said = _db("upgrade", url=url)
    assert code == 0 and f"already at revision {schema.head()}" in said


def _recorded_as(url: str, revision: str) -> None:
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
    engine.dispose()


def test_db_current_names_an_older_and_a_newer_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    schema.upgrade(url)
    _recorded_as(url, "0001")
    code, said = _db("current", url=url)
    assert code == 1
    assert f"at revision 0001, this version needs {schema.head()}: run" in said
    _recorded_as(url, "9999")
    code, said = _db("current", url=url)
    assert code == 1 and "at revision 9999, which this version" in said
    code, said = _db("upgrade", url=url)
    assert code == 1 and "a newer anastrozole-cds upgraded it" in said


def test_the_store_names_an_out_of_date_schema_when_a_write_fails(tmp_path: Path) -> None:
    """Finding 3: feedback against an older table said only "could not be stored"."""
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"
    made_by_the_code_before_migrations(url)
    store = Store(url)
    try:
        record = FeedbackRecord("svc", "c1", "accepted", datetime.now(UTC), ("s1",))
        with pytest.raises(
            StoreError, match="predates versioning: run `anastrozole-cds db upgrade`"
        ):
            store.record_feedback([record], issuer=None)
        health = store.health()
        assert not health.able_to_store and "predates versioning" in (health.problem or "")
    finally:
        store.dispose()
    assert feedback_table.name == "cds_feedback"


def test_the_sqlite_file_and_its_journal_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    """Finding 16: it holds patient ids (SMART sessions) and clinicians' free text."""
    url = f"sqlite:///{tmp_path / 'instance' / 'store.sqlite3'}"
    schema.upgrade(url)
    store = Store(url)
    store.remember_jti("iss", "j1", datetime.now(UTC) + timedelta(minutes=5))
    files = sorted((tmp_path / "instance").iterdir())
    assert [file.name for file in files] == [
        "store.sqlite3", "store.sqlite3-shm", "store.sqlite3-wal"
    ]  # fmt: skip
    assert {oct(file.stat().st_mode & 0o777) for file in files} == {"0o600"}
    assert oct((tmp_path / "instance").stat().st_mode & 0o777) == "0o700"
    store.dispose()
