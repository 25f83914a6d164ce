"""The cards shown and the answers to them, on SQLite and on a real PostgreSQL, through the same
code, with two stores on one database standing for two workers (or two instances)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import delete

from clinical.finding import Severity
from runtime import schema
from runtime.acknowledgements import (
    Acknowledgement,
    CardEvidence,
    CardEvidenceLog,
    answers,
    card_counts,
    card_evidence_table,
)
from runtime.card_settings import CardSettings
from runtime.store import FeedbackRecord, Store, feedback_table, issued_card_table
from tests.app.postgres_server import postgres_server

KEY = b"k" * 32
NOW = datetime.now(UTC)


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL two stores can share: a SQLite file, or a PostgreSQL server."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared.sqlite3'}"
        schema.upgrade(url)  # as `serve` does before its workers start
        yield url
        return
    url = request.getfixturevalue("postgres_url")
    schema.upgrade(url)
    store = Store(url)
    CardEvidenceLog(store, KEY, CardSettings())
    with store.engine.begin() as connection:  # each test starts from empty tables
        for table in (card_evidence_table, feedback_table, issued_card_table):
            connection.execute(delete(table))
    store.dispose()
    yield url


def worker(url: str) -> CardEvidenceLog:
    return CardEvidenceLog(Store(url), KEY, CardSettings())


def shown(log: CardEvidenceLog, card: str, rule: str = "estradiol-low", **extra: object) -> None:
    values: dict[str, object] = {
        "card_uuid": card,
        "rule_id": rule,
        "service_id": "anastrozole-monitor-patient-view",
        "indicator": "warning",
        "patient_key": log.patient("p1"),
        "evidence": "e" * 64,
        "shown": True,
        "issuer": "https://ehr.example.org",
        "tenant": None,
        "suggestions": ("s-1",),
    }
    values.update(extra)
    log.remember([CardEvidence(**values)])  # type: ignore[arg-type]


def overridden(card: str, code: str | None = "will-repeat-test", **extra: object) -> FeedbackRecord:
    values: dict[str, object] = {
        "service_id": "anastrozole-monitor-patient-view",
        "card_uuid": card,
        "outcome": "overridden",
        "outcome_timestamp": NOW,
        "override_reason_code": code,
    }
    values.update(extra)
    return FeedbackRecord(**values)  # type: ignore[arg-type]


def test_an_answer_that_reaches_another_worker_first_counts_once_the_card_is_written(
    database: str,
) -> None:
    issuing, answering = worker(database), worker(database)
    shown(issuing, "card-1")  # kept for the batch, not yet written
    answering.store.record_feedback([overridden("card-1")], issuer="https://ehr.example.org")
    read = {"issuer": "https://ehr.example.org", "tenant": None, "now": NOW}
    assert answering.acknowledgements(answering.patient("p1"), **read) == []
    issuing.flush()  # the issuing worker's background thread, within a second
    found = answering.acknowledgements(answering.patient("p1"), **read)
    assert [(a.rule_id, a.outcome, a.reason_code) for a in found] == [
        ("estradiol-low", "overridden", "will-repeat-test")
    ]


def test_only_answers_with_a_reason_or_an_accepted_own_suggestion_count(database: str) -> None:
    log = worker(database)
    for card in ("dismissed", "reasoned", "accepted", "accepted-other"):
        shown(log, card)
    log.flush()
    log.store.record_feedback(
        [
            overridden("dismissed", code=None),
            overridden("reasoned"),
            overridden("accepted", code=None, outcome="accepted", accepted_suggestions=("s-1",)),
            overridden(
                "accepted-other", code=None, outcome="accepted", accepted_suggestions=("s-9",)
            ),
        ],
        issuer="https://ehr.example.org",
    )
    found = log.acknowledgements(
        log.patient("p1"), issuer="https://ehr.example.org", tenant=None, now=NOW
    )
    assert sorted(a.outcome for a in found) == ["accepted", "overridden"]


def test_the_app_reads_the_answers_of_the_ehrs_that_list_its_server(database: str) -> None:
    log = worker(database)
    shown(log, "here")
    shown(log, "elsewhere", issuer="https://other.example.org", evidence="f" * 64)
    log.flush()
    log.store.record_feedback([overridden("here")], issuer="https://ehr.example.org")
    log.store.record_feedback([overridden("elsewhere")], issuer="https://other.example.org")
    mine = log.acknowledgements_in_app(
        log.patient("p1"), issuers=frozenset({"https://ehr.example.org"}), now=NOW
    )
    everyone = log.acknowledgements_in_app(log.patient("p1"), issuers=frozenset(), now=NOW)
    assert [a.evidence for a in mine] == ["e" * 64]
    assert len(everyone) == 2


def test_the_report_counts_by_day_issuer_tenant_and_rule_on_both_databases(
    database: str,
) -> None:
    log = worker(database)
    shown(log, "c1", tenant="clinic-a")
    shown(log, "c2", tenant="clinic-a")
    shown(log, "c3", tenant="clinic-a", shown=False)
    log.flush()
    log.store.record_feedback(
        [overridden("c1", user_comment="booked at the county hospital")],
        issuer="https://ehr.example.org",
        tenant="clinic-a",  # the answer comes from the tenant that was shown the card
    )
    since = NOW - timedelta(days=1)
    counts = {(c.rule_id, c.tenant, c.shown): c.cards for c in card_counts(log.engine, since)}
    assert counts == {
        ("estradiol-low", "clinic-a", True): 2,
        ("estradiol-low", "clinic-a", False): 1,
    }
    assert {c.day for c in card_counts(log.engine, since)} == {NOW.date()}
    found = answers(log.engine, since)
    assert [(a.card_uuid, a.reason_code, a.commented, a.day) for a in found] == [
        ("c1", "will-repeat-test", True, NOW.date())
    ]


def test_a_finding_more_severe_than_the_card_that_was_answered_is_shown_again() -> None:
    answered = Acknowledgement(
        "estradiol-low", "e" * 64, "warning", "overridden", "will-repeat-test", None, NOW
    )
    cards = CardSettings()
    assert answered.keeps_away("estradiol-low", Severity.WARNING, "e" * 64, NOW, cards)
    assert not answered.keeps_away("estradiol-low", Severity.CRITICAL, "e" * 64, NOW, cards)
    assert not answered.keeps_away("estradiol-low", Severity.WARNING, "f" * 64, NOW, cards)
    assert not answered.keeps_away("dexa-due", Severity.WARNING, "e" * 64, NOW, cards)


def test_migration_0003_creates_the_table_as_the_code_defines_it() -> None:
    """Read without Alembic: the column and index names the migration writes."""
    import ast

    migration = (
        Path(__file__).resolve().parents[2] / "runtime/migrations/versions/0003_alert_burden.py"
    )
    tree = ast.parse(migration.read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    columns = [
        node.args[0].value
        for node in calls
        if getattr(node.func, "attr", "") == "Column" and isinstance(node.args[0], ast.Constant)
    ]
    indexes = {
        node.args[0].value for node in calls if getattr(node.func, "attr", "") == "create_index"
    }
    assert columns == [column.name for column in card_evidence_table.columns]
    assert indexes == {index.name for index in card_evidence_table.indexes}


@pytest.mark.integration
def test_instances_sharing_postgresql_are_told_to_share_the_patient_key(
    postgres_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from anastrozole_cds.app import create_app
    from anastrozole_cds.settings import load_settings

    schema.upgrade(postgres_url)
    create_app(load_settings(store_url=postgres_url, instance_path=tmp_path))
    assert "instances sharing this database must set the same patient_key" in caplog.text
    caplog.clear()
    create_app(
        load_settings(
            store_url=postgres_url, instance_path=tmp_path, cards={"patient_key": "p" * 40}
        )
    )
    assert "patient_key" not in caplog.text
