"""Fixtures for the SMART app tests (helpers are in smart_helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

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
