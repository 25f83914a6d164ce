"""Fixtures for the CDS Hooks tests (helpers are in cds_helpers.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from anastrozole_cds.app import create_app
from anastrozole_cds.settings import load_settings
from runtime.settings import ProductSettings
from tests.cds_hooks.cds_helpers import Keys, make_keys, settings_values


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("jwks"))


@pytest.fixture
def make_settings(keys: Keys, tmp_path: Path) -> Callable[..., ProductSettings]:
    def make(**overrides: Any) -> ProductSettings:
        return load_settings(**settings_values(keys, tmp_path, **overrides))

    return make


@pytest.fixture
def app(make_settings: Callable[..., ProductSettings]) -> Flask:
    return create_app(make_settings())


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as test_client:
        yield test_client
