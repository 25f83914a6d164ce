"""Product settings (TOML file and environment) and the store (feedback, replay cache)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main
from anastrozole_cds.settings import load_settings
from runtime import schema
from runtime.settings import ConfigError, ProductSettings
from runtime.store import (
    FeedbackRecord,
    IssuedCard,
    Store,
    StoreError,
    feedback_table,
    issued_card_table,
    jti_digest,
    jwt_replay_table,
)
from tests.app.postgres_server import postgres_server

TOML = """
public_base_url = "https://cds.example.org/"
allowed_fhir_servers = ["https://sandbox.example.org/fhir/"]
fhir_deadline_seconds = 2.0

[[issuers]]
iss = "https://ehr.example.org"
jwks_url = "https://ehr.example.org/jwks"
fhir_servers = ["https://ehr.example.org/fhir"]

[clinical]
dexa_interval = 365
disabled_rules = ["glycemic-monitoring-due"]
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "anastrozole-cds.toml"
    path.write_text(TOML)
    return path


def test_defaults_are_safe() -> None:
    settings = ProductSettings()
    assert settings.insecure_skip_jwt_verification is False
    assert settings.issuers == ()
    assert settings.fhir_deadline_seconds == 2.5
    assert settings.store_location().startswith("sqlite:///")
    assert settings.store_location().endswith("instance/anastrozole-cds.sqlite3")


def test_the_toml_file_is_read(config_file: Path) -> None:
    settings = load_settings(config_file)
    assert settings.public_base_url == "https://cds.example.org"
    assert settings.issuer("https://ehr.example.org") is not None
    assert settings.fhir_servers_for("https://ehr.example.org") == {
        "https://ehr.example.org/fhir",
        "https://sandbox.example.org/fhir",
    }
    assert settings.fhir_servers_for("https://other.example") == {
        "https://sandbox.example.org/fhir"
    }
    clinical = settings.clinical_settings()
    assert clinical.dexa_interval == timedelta(days=365)
    assert not clinical.enabled("glycemic-monitoring-due")


def test_the_environment_wins_over_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANASTROZOLE_CDS_CONFIG", str(config_file))
    monkeypatch.setenv("ANASTROZOLE_CDS_FHIR_DEADLINE_SECONDS", "1.5")
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__ESTRADIOL_FLOOR_PG_ML", "25")
    monkeypatch.setenv("ANASTROZOLE_CDS_CORS_ALLOWED_ORIGINS", '["https://ehr.example.org"]')
    settings = load_settings()
    assert settings.fhir_deadline_seconds == 1.5
    assert settings.cors_allowed_origins == ("https://ehr.example.org",)
    clinical = settings.clinical_settings()
    assert clinical.estradiol_floor_pg_ml == 25.0
    assert clinical.dexa_interval == timedelta(days=365)  # still from the file


def test_issuers_and_rules_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "ANASTROZOLE_CDS_ISSUERS", '[{"iss": "https://e.example", "jwks_file": "/etc/e.json"}]'
    )
    monkeypatch.setenv("ANASTROZOLE_CDS_CLINICAL__DISABLED_RULES", "dexa-due, lipid-panel-due")
    monkeypatch.setenv("ANASTROZOLE_CDS_INSECURE_SKIP_JWT_VERIFICATION", "false")
    settings = load_settings()
    assert settings.issuers[0].jwks_file == Path("/etc/e.json")
    assert settings.clinical_settings().disabled_rules == {"dexa-due", "lipid-panel-due"}


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        ({"clinical": {"no_such_threshold": 1}}, "unknown clinical setting"),
        ({"fhir_deadline_seconds": 0}, "fhir_deadline_seconds"),
        ({"public_base_url": "cds.example.org"}, "absolute http(s) URL"),
        ({"issuers": [{"iss": "https://e.example"}]}, "exactly one of jwks_url and jwks_file"),
        ({"issuers": [{"iss": "x", "jwks_file": "/a", "jwks_url": "https://x/j"}]}, "exactly one"),
        ({"unknown_setting": 1}, "unknown_setting"),
        ({"suggestion_intent": "plan"}, "suggestion_intent"),
    ],
)
def test_bad_settings_fail_at_start_up_with_a_reason(
    overrides: dict[str, object], says: str
) -> None:
    with pytest.raises(ConfigError, match="invalid configuration") as error:
        load_settings(**overrides)
    assert says in str(error.value)


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("public_base_url = ")
    with pytest.raises(ConfigError):
        load_settings(broken)


def test_the_cli_prints_the_discovery_document_and_reports_bad_config(
    config_file: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["discovery", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    services = orjson.loads(result.output)["services"]
    assert len(services) == 3
    bad = tmp_path / "bad.toml"
    bad.write_text("fhir_deadline_seconds = -1\n")
    failed = runner.invoke(main, ["discovery", "--config", str(bad)])
    assert failed.exit_code != 0
    assert "fhir_deadline_seconds" in failed.output
    assert "--workers" in runner.invoke(main, ["serve", "--help"]).output


# -- store -------------------------------------------------------------------------------------------


def migrated(url: str) -> Store:
    """A store on a database with this version's schema (what `serve` does first)."""
    store = Store(url)
    schema.upgrade(store.engine)
    return store


def record(card: str = "c1", **changes: object) -> FeedbackRecord:
    values: dict[str, object] = {
        "service_id": "svc",
        "card_uuid": card,
        "outcome": "accepted",
        "outcome_timestamp": datetime(2026, 11, 1, 12, tzinfo=UTC),
        "accepted_suggestions": ("s1",),
    }
    values.update(changes)
    return FeedbackRecord(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The same store code on SQLite (the default) and on a real PostgreSQL server."""
    if request.param == "sqlite":
        store = migrated("sqlite://")
    else:
        store = migrated(request.getfixturevalue("postgres_url"))
        with store.engine.begin() as connection:  # each test starts from empty tables
            for table in (feedback_table, jwt_replay_table, issued_card_table):
                connection.execute(table.delete())
    yield store
    store.dispose()


def test_a_jti_is_accepted_once(store: Store) -> None:
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss-a", "j1", expires) is True
    assert store.remember_jti("iss-a", "j1", expires) is False
    assert store.remember_jti("iss-b", "j1", expires) is True  # per issuer


def test_expired_jtis_are_purged(store: Store) -> None:
    store.remember_jti("iss", "old", datetime.now(UTC) - timedelta(minutes=1))
    store._last_purge = -1e9  # force the next purge
    store.remember_jti("iss", "new", datetime.now(UTC) + timedelta(minutes=1))
    with store.engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT jti FROM cds_jwt_replay").fetchall()
    assert [row[0] for row in rows] == [jti_digest("new")]


def test_feedback_is_written_in_one_transaction(store: Store) -> None:
    assert store.record_feedback([record("a"), record("b")], issuer="iss") == 2
    with pytest.raises(StoreError):
        store.record_feedback([record("c"), record("d", outcome=None)], issuer="iss")
    assert [row["card_uuid"] for row in store.feedback()] == ["a", "b"]


def test_a_sqlite_file_store_creates_its_folder(tmp_path: Path) -> None:
    store = migrated(f"sqlite:///{tmp_path / 'deep' / 'folder' / 'db.sqlite3'}")
    assert store.ping()
    assert (tmp_path / "deep" / "folder" / "db.sqlite3").exists()


def test_feedback_waits_for_the_disk_and_the_per_call_writes_do_not(tmp_path: Path) -> None:
    """SQLite: feedback commits with synchronous=FULL, the replay cache and the cards-issued
    log with NORMAL (WAL: durable across a process crash, not a power cut)."""
    store = migrated(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    with store._durable() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    with store._relaxed() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    expires = datetime.now(UTC) + timedelta(minutes=5)
    assert store.remember_jti("iss", "j1", expires) is True
    store.dispose()
    reopened = Store(f"sqlite:///{tmp_path / 'db.sqlite3'}")  # both pools write one file
    assert reopened.remember_jti("iss", "j1", expires) is False
    reopened.dispose()


@pytest.mark.integration
def test_postgresql_commits_the_per_call_writes_asynchronously(postgres_url: str) -> None:
    store = migrated(postgres_url)
    with store._relaxed() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "off"
    with store._durable() as connection:
        assert connection.exec_driver_sql("SHOW synchronous_commit").scalar() == "on"
    store.dispose()


def _issued_rows(store: Store) -> list[str]:
    """Straight from the table, without the flush that `issued_cards()` does first."""
    with store.engine.connect() as connection:
        return [
            row[0] for row in connection.exec_driver_sql("SELECT card_uuid FROM cds_issued_card")
        ]


def issued(card_uuid: str) -> IssuedCard:
    return IssuedCard(card_uuid, "svc", "dexa-due", "warning", "hook-1")


def test_cards_issued_are_written_in_the_background_within_a_second_or_two(store: Store) -> None:
    store.record_issued_cards([issued("c1"), issued("c2")])
    store.record_issued_cards([issued("c3")])
    deadline = time.monotonic() + 10
    while len(_issued_rows(store)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(_issued_rows(store)) == ["c1", "c2", "c3"]


def test_cards_issued_but_not_yet_written_are_written_when_the_store_closes(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    store = migrated(url)
    store._ISSUED_FLUSH_SECONDS = 3600.0  # the background thread would not get to it
    store.record_issued_cards([issued("last")])
    assert _issued_rows(store) == []
    store.dispose()
    reopened = Store(url)
    assert _issued_rows(reopened) == ["last"]
    reopened.dispose()
