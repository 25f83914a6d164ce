"""The OpenAPI document is served and describes the routes the app really has."""

from __future__ import annotations

import re

import schemathesis
from flask import Flask
from flask.testing import FlaskClient

from cds_hooks.openapi import openapi_document
from cds_hooks.services import SERVICES

DOCUMENTED_ELSEWHERE = {"/about/rules", "/about/rules/<rule_id>", "/static/<path:filename>"}


def _flask_to_openapi(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)


def test_openapi_json_is_served_and_is_the_document(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == openapi_document()
    assert response.json["openapi"].startswith("3.")


def test_every_route_of_the_service_is_documented_with_its_methods(app: Flask) -> None:
    paths = openapi_document()["paths"]
    documented = {
        (path, method.upper()) for path, operations in paths.items() for method in operations
    }
    for rule in app.url_map.iter_rules():
        if rule.rule in DOCUMENTED_ELSEWHERE or not rule.rule.startswith(
            ("/cds-services", "/healthz", "/openapi")
        ):
            continue
        path = _flask_to_openapi(rule.rule)
        methods = (rule.methods or set()) - {"HEAD", "OPTIONS"}
        if path == "/cds-services/{service_id}":  # documented service by service
            for service_id in SERVICES:
                assert (f"/cds-services/{service_id}", "POST") in documented
            continue
        for method in methods:
            assert (path, method) in documented, f"{method} {path} is not in the OpenAPI document"


def test_every_documented_path_answers_in_the_app(client: FlaskClient) -> None:
    for path, operations in openapi_document()["paths"].items():
        concrete = path.replace("{service_id}", next(iter(SERVICES)))
        for method in operations:
            response = client.open(concrete, method=method.upper(), json={})
            assert response.status_code != 404, f"{method.upper()} {path}"
            assert response.status_code != 405, f"{method.upper()} {path}"


def test_the_document_loads_in_schemathesis_with_every_operation() -> None:
    schema = schemathesis.openapi.from_dict(openapi_document())
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert "GET /cds-services" in labels
    assert {f"POST /cds-services/{service_id}" for service_id in SERVICES} <= labels
    assert "POST /cds-services/{service_id}/feedback" in labels
    assert "GET /healthz" in labels
