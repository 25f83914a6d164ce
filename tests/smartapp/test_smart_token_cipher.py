"""Tokens at rest: sealed with Fernet in `smart_session`, the key from the settings or the
instance folder (0600, one per instance however many workers start at once), older keys still
accepted, and a row that does not open is a session that has ended."""

from __future__ import annotations

import logging
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import responses
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr
from sqlalchemy import create_engine
from sqlalchemy.pool import StaticPool

from runtime import schema
from runtime.logs import RedactSecrets
from smartapp.config import SmartSettings
from smartapp.token_cipher import (
    KEY_FILE_NAME,
    TokenCipher,
    TokenKeyError,
    token_key_file,
)
from smartapp.tokens import SmartSession, TokenStore, session_table, utc_now
from tests.smartapp.smart_helpers import Sandbox, build_app, launch_and_sign_in

ACCESS = "access-token-in-clear-0123456789"
REFRESH = "refresh-token-in-clear-9876543210"


def memory_engine() -> Any:
    engine = create_engine(
        "sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool
    )
    schema.upgrade(engine)  # the tables are the migrations' (runtime/schema.py)
    return engine


def a_session(handle: str = "handle-1", **values: Any) -> SmartSession:
    now = utc_now()
    fields: dict[str, Any] = {
        "handle": handle,
        "browser": "b" * 64,
        "iss": "http://127.0.0.1:9999/fhir",
        "token_endpoint": "http://127.0.0.1:9999/auth/token",
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "access_expires_at": now + timedelta(minutes=5),
        "scope": "launch openid",
        "patient": "pt-harlan-0417",
        "encounter": None,
        "need_patient_banner": True,
        "smart_style_url": None,
        "fhir_context": None,
        "app_context": None,
        "fhir_user": None,
        "framed": False,
        "expires_at": now + timedelta(hours=8),
    }
    fields.update(values)
    return SmartSession(**fields)


def stored_rows(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as connection:
        return [dict(row._mapping) for row in connection.execute(session_table.select())]


def test_the_database_row_holds_no_token_in_clear(tmp_path: Path) -> None:
    engine = memory_engine()
    store = TokenStore(engine, TokenCipher(None, key_file=tmp_path / KEY_FILE_NAME))
    store.save_session(a_session())
    (row,) = stored_rows(engine)
    text = repr(row)
    assert ACCESS not in text and REFRESH not in text
    assert row["access_token"].startswith("gAAAAA")  # a Fernet token


def test_a_sealed_session_opens_with_its_tokens(tmp_path: Path) -> None:
    store = TokenStore(memory_engine(), TokenCipher(None, key_file=tmp_path / KEY_FILE_NAME))
    session = a_session()
    store.save_session(session)
    opened = store.session(session.handle, session.browser, utc_now())
    assert opened is not None
    assert (opened.access_token, opened.refresh_token) == (ACCESS, REFRESH)


def test_refreshed_tokens_are_sealed_too(tmp_path: Path) -> None:
    engine = memory_engine()
    store = TokenStore(engine, TokenCipher(None, key_file=tmp_path / KEY_FILE_NAME))
    session = a_session()
    store.save_session(session)
    store.update_tokens(
        session,
        access_token="new-access-abc",
        refresh_token="new-refresh-xyz",
        access_expires_at=None,
    )
    (row,) = stored_rows(engine)
    assert "new-access-abc" not in repr(row) and "new-refresh-xyz" not in repr(row)
    opened = store.session(session.handle, session.browser, utc_now())
    assert opened is not None and opened.access_token == "new-access-abc"


def test_a_session_without_refresh_token_keeps_none(tmp_path: Path) -> None:
    store = TokenStore(memory_engine(), TokenCipher(Fernet.generate_key()))
    session = a_session(refresh_token=None)
    store.save_session(session)
    opened = store.session(session.handle, session.browser, utc_now())
    assert opened is not None and opened.refresh_token is None


def tamper(sealed: str) -> str:
    middle = len(sealed) // 2
    return sealed[:middle] + ("A" if sealed[middle] != "A" else "B") + sealed[middle + 1 :]


@pytest.mark.parametrize("column", ["access_token", "refresh_token"])
def test_an_altered_row_is_no_session(column: str, caplog: pytest.LogCaptureFixture) -> None:
    engine = memory_engine()
    store = TokenStore(engine, TokenCipher(Fernet.generate_key()))
    session = a_session()
    store.save_session(session)
    (row,) = stored_rows(engine)
    with engine.begin() as connection:
        connection.execute(session_table.update().values({column: tamper(row[column])}))
    assert store.session(session.handle, session.browser, utc_now()) is None
    assert "do not open" in caplog.text


def test_a_token_moved_to_another_session_does_not_open() -> None:
    engine = memory_engine()
    store = TokenStore(engine, TokenCipher(Fernet.generate_key()))
    victim, thief = a_session("victim"), a_session("thief", access_token="thief-token")
    store.save_session(victim)
    store.save_session(thief)
    sealed = {row["handle"]: row["access_token"] for row in stored_rows(engine)}
    with engine.begin() as connection:
        connection.execute(
            session_table.update()
            .where(session_table.c.handle == "thief")
            .values(access_token=sealed["victim"])
        )
    assert store.session("thief", thief.browser, utc_now()) is None


def test_a_row_sealed_with_another_key_is_no_session() -> None:
    engine = memory_engine()
    session = a_session()
    TokenStore(engine, TokenCipher(Fernet.generate_key())).save_session(session)
    other = TokenStore(engine, TokenCipher(Fernet.generate_key()))
    assert other.session(session.handle, session.browser, utc_now()) is None


def test_a_row_written_in_clear_before_encryption_is_no_session() -> None:
    engine = memory_engine()
    store = TokenStore(engine, TokenCipher(Fernet.generate_key()))
    session = a_session()
    store.save_session(session)
    with engine.begin() as connection:
        connection.execute(session_table.update().values(access_token=ACCESS, refresh_token=None))
    assert store.session(session.handle, session.browser, utc_now()) is None


def test_a_previous_key_still_opens_what_it_sealed() -> None:
    old_key, new_key = Fernet.generate_key(), Fernet.generate_key()
    engine = memory_engine()
    session = a_session()
    TokenStore(engine, TokenCipher(old_key)).save_session(session)
    rotated = TokenStore(engine, TokenCipher(new_key, [old_key]))
    opened = rotated.session(session.handle, session.browser, utc_now())
    assert opened is not None and opened.access_token == ACCESS
    rotated.update_tokens(opened, access_token="after", refresh_token=None, access_expires_at=None)
    only_new = TokenStore(engine, TokenCipher(new_key))  # new writes use the new key
    reopened = only_new.session(session.handle, session.browser, utc_now())
    assert reopened is not None and reopened.access_token == "after"


# -- the key file ------------------------------------------------------------------------------


def test_the_key_file_is_made_on_first_use_readable_by_its_owner_only(tmp_path: Path) -> None:
    key_file = tmp_path / "instance" / KEY_FILE_NAME
    cipher = TokenCipher(None, key_file=key_file)
    assert not key_file.exists()  # nothing is written before a token is sealed
    sealed = cipher.seal("t", handle="h")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    Fernet(key_file.read_bytes().strip())  # a valid Fernet key
    assert cipher.open(sealed, handle="h") == "t"
    assert [p.name for p in key_file.parent.iterdir()] == [KEY_FILE_NAME]  # no temporary left


def test_two_stores_sharing_an_instance_folder_share_the_key(tmp_path: Path) -> None:
    engine = memory_engine()
    key_file = tmp_path / KEY_FILE_NAME
    first = TokenStore(engine, TokenCipher(None, key_file=key_file))
    second = TokenStore(engine, TokenCipher(None, key_file=key_file))
    session = a_session()
    first.save_session(session)
    opened = second.session(session.handle, session.browser, utc_now())
    assert opened is not None and opened.access_token == ACCESS


def test_workers_starting_together_end_with_one_key(tmp_path: Path) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    workers = 8
    start = threading.Barrier(workers)
    keys: list[bytes] = []

    def worker() -> None:
        start.wait()
        keys.append(token_key_file(key_file))

    threads = [threading.Thread(target=worker) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == workers and len(set(keys)) == 1
    assert key_file.read_bytes().strip() == keys[0]
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE_NAME]


def test_a_key_file_readable_by_others_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = tmp_path / KEY_FILE_NAME
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)
    token_key_file(key_file)
    assert "chmod 600" in caplog.text


# -- the setting -------------------------------------------------------------------------------


def test_the_configured_key_is_used_and_no_file_is_made(
    tmp_path: Path, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    key = Fernet.generate_key().decode()
    app = build_app(tmp_path, token_key=key)
    with app.test_client() as client:
        target = launch_and_sign_in(client, sandbox)
        assert client.get(target).status_code == 200
    (row,) = stored_rows(app.extensions["smartapp"].tokens.engine)
    assert Fernet(key).decrypt(row["access_token"].encode()).decode().startswith(row["handle"])
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_the_app_keeps_its_key_in_the_instance_folder(
    app: Flask, client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, tmp_path: Path
) -> None:
    target = launch_and_sign_in(client, sandbox)
    assert client.get(target).status_code == 200
    key_file = tmp_path / KEY_FILE_NAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


@pytest.mark.parametrize("setting", ["token_key", "previous_token_keys"])
def test_a_malformed_key_stops_the_start_without_showing_it(tmp_path: Path, setting: str) -> None:
    secretish = "not-a-fernet-key-but-secret-all-the-same"
    value: Any = secretish if setting == "token_key" else (secretish,)
    with pytest.raises(TokenKeyError) as raised:
        build_app(tmp_path, **{setting: value})
    assert "not a Fernet key" in str(raised.value) and secretish not in str(raised.value)


def test_the_key_is_never_shown_by_the_settings_or_in_a_log() -> None:
    key = Fernet.generate_key().decode()
    settings = SmartSettings(token_key=SecretStr(key), previous_token_keys=(key,))  # type: ignore[arg-type]
    assert key not in repr(settings) and key not in str(settings.model_dump())
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "settings: %s", (key,), None)
    assert RedactSecrets().filter(record)
    assert key not in record.getMessage()


def test_the_key_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    key = Fernet.generate_key().decode()
    monkeypatch.setenv("ANASTROZOLE_CDS_SMART_TOKEN_KEY", key)
    settings = SmartSettings()
    assert settings.token_key is not None and settings.token_key.get_secret_value() == key
