"""What anyone can make the SMART app do before signing in is bounded (issue 18): a launch
writes a row, so rows per browser, in all, and their size are capped, and a refusal is said
(finding 8); another browser opening a callback URL leaves the launch alone (finding 14)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import responses
from flask import Flask
from flask.testing import FlaskClient

from smartapp import tokens
from smartapp.tokens import launch_table
from tests.cds_hooks.cds_helpers import Keys
from tests.security.sec_live_server import live_service
from tests.smartapp.smart_helpers import (
    APP_BASE,
    FHIR_BASE,
    HARLAN,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    open_launch_html,
    query_of,
)


@pytest.fixture
def sandbox() -> Sandbox:
    return build_sandbox()


@pytest.fixture
def smart_app(tmp_path: Path) -> Flask:
    return build_app(tmp_path)


@pytest.fixture
def ehr(sandbox: Sandbox) -> Iterator[responses.RequestsMock]:
    with bridged(sandbox) as mock:
        yield mock


def pending(app: Flask) -> int:
    with app.extensions["smartapp"].tokens.engine.connect() as connection:
        return len(connection.execute(launch_table.select()).all())


def launch(client: FlaskClient, value: str = "l1") -> object:
    return open_launch_html(client, query_string={"iss": FHIR_BASE, "launch": value})


def test_a_browser_keeps_only_its_newest_launches(
    smart_app: Flask, ehr: responses.RequestsMock
) -> None:
    with smart_app.test_client() as browser:
        for _ in range(tokens.MAX_LAUNCHES_PER_BROWSER + 5):
            assert launch(browser).status_code == 302  # type: ignore[attr-defined]
    assert pending(smart_app) == tokens.MAX_LAUNCHES_PER_BROWSER


def test_launches_beyond_the_limit_are_refused_with_a_page_and_write_nothing(
    smart_app: Flask, ehr: responses.RequestsMock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each request without a cookie is a new browser: only the limit in all bounds them."""
    monkeypatch.setattr(tokens, "MAX_PENDING_LAUNCHES", 20)
    answers = []
    for _ in range(30):
        with smart_app.test_client() as stranger:
            answers.append(launch(stranger))
    assert [a.status_code for a in answers].count(302) == 20  # type: ignore[attr-defined]
    refused = answers[-1]
    assert refused.status_code == 503  # type: ignore[attr-defined]
    assert 'data-problem="too-many-launches"' in refused.get_data(as_text=True)  # type: ignore[attr-defined]
    assert pending(smart_app) == 20


def test_another_browser_opening_the_callback_url_leaves_the_launch_to_its_own_browser(
    smart_app: Flask, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    with smart_app.test_client() as victim:
        started = launch(victim, sandbox.ehr.mint_launch(HARLAN))
        authorized = sandbox.app.test_client().get(
            started.headers["Location"].removeprefix(sandbox.ehr.base_url)  # type: ignore[attr-defined]
        )
        callback = authorized.headers["Location"].removeprefix(APP_BASE)
        assert query_of(authorized.headers["Location"])["state"]
        with smart_app.test_client() as other_browser:
            assert other_browser.get(callback).status_code == 400
        assert victim.get(callback).status_code == 303  # signed in all the same


@pytest.mark.integration
def test_a_launch_value_longer_than_any_ehr_sends_is_refused_before_anything_is_written(
    tmp_path: Path, keys: Keys
) -> None:
    toml = '[smart]\nallowed_issuers = ["https://ehr.example.org/fhir"]\n'
    with live_service(tmp_path, keys, tables_toml=toml) as service:
        answer = requests.get(
            f"{service.base}/smart/launch",
            params={"iss": "https://ehr.example.org/fhir", "launch": "x" * 3000},
            timeout=5,
            allow_redirects=False,
        )
        assert answer.status_code == 400
        assert 'data-problem="launch-too-long"' in answer.text
    import sqlite3

    with sqlite3.connect(tmp_path / "store.sqlite3") as database:
        assert database.execute("SELECT count(*) FROM smart_launch").fetchone() == (0,)
