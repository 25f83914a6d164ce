"""Fixtures for the SMART app tests (helpers are in smart_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.smartapp.smart_helpers import Sandbox, bridged, build_app, build_sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    return build_sandbox()


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return build_app(tmp_path)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client


@pytest.fixture
def ehr(sandbox: Sandbox) -> Iterator[responses.RequestsMock]:
    """`requests` reaches the sandbox EHR in process (its auth server and FHIR stub)."""
    with bridged(sandbox) as mock:
        yield mock


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), driven by Playwright."""
    # Not a skip: a browser test that does not run has not passed. `make test` installs both.
    import playwright.sync_api as playwright_api

    assert Path(CHROMIUM).exists(), (
        "no /usr/bin/chromium: run `make browser` (apt-get install chromium)"
    )
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1024, "height": 900})
    yield context.new_page()
    context.close()
