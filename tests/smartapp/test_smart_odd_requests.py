"""Odd requests to the app's addresses: launch.html with parameters that are not SMART's, and
unknown addresses or wrong methods under /smart. Each gets a page of the app with its
security headers, never a 500 or the product's bare JSON."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse


@pytest.mark.parametrize(
    "extra",
    [
        {"endpoint": "foo"},
        {"_method": "POST"},
        {"_anchor": "zz"},
        {"_external": "1", "_scheme": "javascript"},
        {"values": "1"},
    ],
)
def test_launch_html_sends_on_only_iss_and_launch_whatever_else_comes(
    client: FlaskClient, extra: dict[str, str]
) -> None:
    response = client.get(
        "/launch.html", query_string={"iss": "https://x.example/fhir", "launch": "l", **extra}
    )
    assert response.status_code == 302
    assert response.headers["Location"] == "/smart/launch?iss=https://x.example/fhir&launch=l"


def test_launch_html_with_only_a_launch_sends_only_the_launch(client: FlaskClient) -> None:
    response = client.get("/launch.html", query_string={"launch": "l", "endpoint": "x"})
    assert response.headers["Location"] == "/smart/launch?launch=l"


def assert_secured_page(response: TestResponse) -> None:
    headers = response.headers
    assert headers["Content-Type"].startswith("text/html")
    assert "default-src 'none'" in headers["Content-Security-Policy"]
    assert "frame-ancestors" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-store"
    assert headers["Referrer-Policy"] == "no-referrer"


@pytest.mark.parametrize("path", ["/smart/nope", "/smart/app/x/y/z", "/smart"])
def test_an_unknown_address_under_smart_is_the_not_found_page(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    page = response.get_data(as_text=True)
    assert 'data-problem="not-found"' in page and "Page not found" in page
    assert "not-found (HTTP 404)" in page
    assert_secured_page(response)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/smart/app/x/sign-out", "POST"),
        ("POST", "/smart/launch", "GET"),
        ("POST", "/launch.html", "GET"),
        ("DELETE", "/smart/callback", "GET"),
    ],
)
def test_a_wrong_method_under_smart_is_a_405_page_with_allow(
    client: FlaskClient, method: str, path: str, allowed: str
) -> None:
    response = client.open(path, method=method)
    assert response.status_code == 405
    assert allowed in response.headers["Allow"]
    page = response.get_data(as_text=True)
    assert 'data-problem="not-found"' in page and "not-found (HTTP 405)" in page
    assert_secured_page(response)


def test_the_rest_of_the_product_keeps_its_json_errors_and_headers(client: FlaskClient) -> None:
    response = client.get("/cds-services/nope/nothing-here")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/json"
    assert "Content-Security-Policy" not in response.headers
    assert client.get("/smartly").headers["Content-Type"] == "application/json"
