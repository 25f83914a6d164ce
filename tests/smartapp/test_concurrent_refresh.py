"""Two requests of one session refreshing at once (two tabs, a reload while the page loads),
against an EHR that rotates refresh tokens (each is accepted once): the session survives, in
one worker (a lock, then the stored tokens) and across workers (compare-and-swap on the
refresh token, and on invalid_grant the tokens another worker stored)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine

from runtime import schema
from smartapp.errors import AppError, Problem
from smartapp.flow import SmartRuntime, refresh_session
from smartapp.oauth import GrantedTokens, OAuthFailure
from smartapp.token_cipher import TokenCipher
from smartapp.tokens import SmartSession, TokenStore, browser_hash, session_table, utc_now
from tests.app.postgres_server import postgres_server
from tests.smartapp.smart_helpers import Sandbox, launch_and_sign_in


@pytest.fixture
def signed_in(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> Iterator[str]:
    """The dashboard URL of a session whose access token has expired at the EHR."""
    target = launch_and_sign_in(client, sandbox)
    sandbox.ehr.expire_access_tokens()
    yield target


def stale_copy(app: Flask, client: FlaskClient, target: str) -> SmartSession:
    """The session as one request read it, before any refresh."""
    cookie = client.get_cookie("anastrozole_smart", path="/smart")
    assert cookie is not None
    session = runtime_of(app).tokens.session(
        target.rsplit("/", 1)[-1], browser_hash(cookie.value), utc_now()
    )
    assert session is not None
    return session


def runtime_of(app: Flask) -> SmartRuntime:
    runtime: SmartRuntime = app.extensions["smartapp"]
    return runtime


def refresh_count(ehr: responses.RequestsMock) -> int:
    return sum("grant_type=refresh_token" in str(call.request.body) for call in ehr.calls)


def test_a_request_with_the_tokens_another_request_refreshed_uses_the_new_ones(
    app: Flask, client: FlaskClient, ehr: responses.RequestsMock, signed_in: str
) -> None:
    runtime = runtime_of(app)
    first, second = stale_copy(app, client, signed_in), stale_copy(app, client, signed_in)
    refreshed = refresh_session(runtime, first)
    assert refresh_session(runtime, second).access_token == refreshed.access_token
    assert refresh_count(ehr) == 1  # the spent refresh token is not sent again
    assert client.get(signed_in).status_code == 200


def test_invalid_grant_after_another_worker_refreshed_keeps_that_workers_tokens(
    app: Flask,
    client: FlaskClient,
    ehr: responses.RequestsMock,
    signed_in: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = runtime_of(app)
    stale = stale_copy(app, client, signed_in)
    other_worker: dict[str, str] = {}
    real_refresh = runtime.oauth.refresh

    def other_worker_wins(*, token_endpoint: str, refresh_token: str) -> GrantedTokens:
        # Another worker spends the same refresh token first and stores what it got ...
        won = real_refresh(token_endpoint=token_endpoint, refresh_token=refresh_token)
        runtime.tokens.update_tokens(
            stale,
            access_token=won.access_token,
            refresh_token=won.refresh_token,
            access_expires_at=won.access_expires_at,
        )
        other_worker["access_token"] = won.access_token
        # ... so the EHR answers this one invalid_grant.
        return real_refresh(token_endpoint=token_endpoint, refresh_token=refresh_token)

    monkeypatch.setattr(runtime.oauth, "refresh", other_worker_wins)
    session = refresh_session(runtime, stale)
    assert session.access_token == other_worker["access_token"]
    monkeypatch.undo()
    assert client.get(signed_in).status_code == 200  # the session did not end


def test_tokens_stored_by_another_worker_first_are_kept_not_overwritten(
    app: Flask,
    client: FlaskClient,
    ehr: responses.RequestsMock,
    signed_in: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runtime = runtime_of(app)
    stale = stale_copy(app, client, signed_in)
    real_refresh = runtime.oauth.refresh

    def other_worker_stores_first(*, token_endpoint: str, refresh_token: str) -> GrantedTokens:
        granted = real_refresh(token_endpoint=token_endpoint, refresh_token=refresh_token)
        runtime.tokens.update_tokens(
            stale,
            access_token="worker-2-access",
            refresh_token="worker-2-refresh",
            access_expires_at=None,
        )
        return granted

    monkeypatch.setattr(runtime.oauth, "refresh", other_worker_stores_first)
    session = refresh_session(runtime, stale)
    assert (session.access_token, session.refresh_token) == ("worker-2-access", "worker-2-refresh")
    stored = runtime.tokens.session(stale.handle, stale.browser, utc_now())
    assert stored is not None and stored.refresh_token == "worker-2-refresh"


def test_a_refresh_the_ehr_refuses_still_ends_the_session(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, signed_in: str
) -> None:
    for issued in sandbox.ehr.by_access.values():
        issued.revoked = True  # the EHR withdrew the grant: nobody refreshed it
    with pytest.raises(AppError) as refused:
        refresh_session(runtime_of(app), stale_copy(app, client, signed_in))
    assert refused.value.problem is Problem.SESSION_EXPIRED
    assert client.get(signed_in).status_code == 401


def test_two_threads_of_one_worker_refresh_once_and_both_get_the_new_tokens(
    app: Flask, client: FlaskClient, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = runtime_of(app)
    stale = stale_copy(app, client, signed_in)
    spent: set[str] = set()
    calls: list[str] = []

    def rotating_ehr(*, token_endpoint: str, refresh_token: str) -> GrantedTokens:
        calls.append(refresh_token)
        if refresh_token in spent:
            raise OAuthFailure("the EHR answered invalid_grant", error_code="invalid_grant")
        spent.add(refresh_token)
        time.sleep(0.2)  # the EHR's answer is on its way while the other request asks
        return GrantedTokens.from_response(
            {"access_token": "new-access", "refresh_token": "new-refresh", "token_type": "Bearer"}
        )

    monkeypatch.setattr(runtime.oauth, "refresh", rotating_ehr)
    results: list[Any] = []

    def request_of_one_tab() -> None:
        try:
            results.append(refresh_session(runtime, stale).access_token)
        except AppError as error:
            results.append(error.problem)

    tabs = [threading.Thread(target=request_of_one_tab) for _ in range(2)]
    for tab in tabs:
        tab.start()
    for tab in tabs:
        tab.join(timeout=10)
    assert results == ["new-access", "new-access"]
    assert len(calls) == 1


# -- the store: compare-and-swap across workers (two engines on one database) -----------------


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[TokenStore, TokenStore]:
    """Two workers' stores (each its own engine) on one database: SQLite or PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'smart.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    key = Fernet.generate_key()
    schema.upgrade(url)  # the tables are the migrations' (runtime/schema.py)
    first = TokenStore(create_engine(url), TokenCipher(key))
    second = TokenStore(create_engine(url), TokenCipher(key))
    with first.engine.begin() as connection:  # each test starts from an empty table
        connection.execute(session_table.delete())
    return first, second


def a_session() -> SmartSession:
    now = utc_now()
    return SmartSession(
        handle="handle-1",
        browser="b" * 64,
        iss="http://127.0.0.1:9999/fhir",
        token_endpoint="http://127.0.0.1:9999/auth/token",
        access_token="access-0",
        refresh_token="refresh-0",
        access_expires_at=now - timedelta(minutes=1),
        scope="launch",
        patient="pt-harlan-0417",
        encounter=None,
        need_patient_banner=True,
        smart_style_url=None,
        fhir_context=None,
        app_context=None,
        fhir_user=None,
        framed=False,
        expires_at=now + timedelta(hours=8),
    )


def tokens_of(store: TokenStore, session: SmartSession) -> tuple[str, str | None]:
    stored = store.session(session.handle, session.browser, utc_now())
    assert stored is not None
    return stored.access_token, stored.refresh_token


def test_a_stale_token_update_from_another_worker_changes_nothing(
    two_workers: tuple[TokenStore, TokenStore],
) -> None:
    first, second = two_workers
    session = a_session()
    first.save_session(session)
    assert first.update_tokens(
        session, access_token="access-1", refresh_token="refresh-1", access_expires_at=None
    )
    stale = second.update_tokens(
        session, access_token="access-2", refresh_token="refresh-2", access_expires_at=None
    )
    assert stale is None
    assert tokens_of(second, session) == ("access-1", "refresh-1")


def test_an_update_racing_another_workers_commit_changes_nothing(
    two_workers: tuple[TokenStore, TokenStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other worker commits between this one's read of the row and its UPDATE."""
    first, second = two_workers
    session = a_session()
    first.save_session(session)
    read_row = second._still_holding

    def read_then_lose_the_race(connection: Any, held: SmartSession) -> Any:
        same_grant = read_row(connection, held)
        first.update_tokens(
            held, access_token="access-1", refresh_token="refresh-1", access_expires_at=None
        )
        return same_grant

    monkeypatch.setattr(second, "_still_holding", read_then_lose_the_race)
    stale = second.update_tokens(
        session, access_token="access-2", refresh_token="refresh-2", access_expires_at=None
    )
    assert stale is None
    assert tokens_of(first, session) == ("access-1", "refresh-1")


def test_a_refused_grant_does_not_end_a_session_another_worker_refreshed(
    two_workers: tuple[TokenStore, TokenStore],
) -> None:
    first, second = two_workers
    session = a_session()
    first.save_session(session)
    first.update_tokens(
        session, access_token="access-1", refresh_token="refresh-1", access_expires_at=None
    )
    assert second.end_grant(session) is False
    assert tokens_of(second, session) == ("access-1", "refresh-1")
    current = replace(session, access_token="access-1", refresh_token="refresh-1")
    assert second.end_grant(current) is True
    assert first.session(session.handle, session.browser, utc_now()) is None


def test_a_session_without_refresh_token_is_updated_too(
    two_workers: tuple[TokenStore, TokenStore],
) -> None:
    store, _ = two_workers
    session = replace(a_session(), refresh_token=None)
    store.save_session(session)
    updated = store.update_tokens(
        session, access_token="access-1", refresh_token=None, access_expires_at=None
    )
    assert updated is not None and tokens_of(store, session) == ("access-1", None)
