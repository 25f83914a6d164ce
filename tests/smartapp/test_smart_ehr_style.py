"""The EHR's look (SMART `smart_style_url`): values pass allow-lists or are dropped, the
document is fetched only from the session's EHR and never with credentials, the page links
the CSS only when there is a style, and Chromium applies it under the strict CSP."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient

from sandbox.ehr_auth import SANDBOX_STYLE, STYLE_PATH
from smartapp.discovery import SmartConfiguration
from smartapp.ehr_style import (
    CACHE_SECONDS,
    FAILURE_CACHE_SECONDS,
    MAX_DOCUMENT_BYTES,
    EhrStyles,
    clean_style,
    ehr_urls,
    style_css,
)
from smartapp.tokens import SmartSession
from tests.smartapp.smart_helpers import (
    APP_BASE,
    EHR_BASE,
    HARLAN,
    LOW_E2,
    LiveEhr,
    Sandbox,
    build_sandbox,
    launch_and_sign_in,
    live_ehr,
    query_of,
    scenario_now,
)

STYLE_URL = f"{EHR_BASE}{STYLE_PATH}"  # the sandbox EHR's own style document
EHR = ("https://ehr.example.org/fhir/r4", "https://auth.example.org/oauth/token")
REMOTE_STYLE = "https://ehr.example.org/smart/style.json"
READABLE = {
    "color_background": "#edeae3",
    "color_text": "#303030",
    "color_error": "#9e2d2d",
    "dim_font_size": "14px",
    "dim_border_radius": "6px",
    "font_family_body": "Georgia, Times, 'Times New Roman', serif",
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


# -- values: allow-lists, never escaping ---------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "hostile"),
    [
        ("color_background", "red;} body{display:none}"),
        ("color_error", "url(javascript:alert(1))"),
        ("color_text", "expression(alert(1))"),
        ("color_text", "</style><script>alert(1)</script>"),
        ("color_background", "#12345g"),
        ("color_error", "rgb(1, 2, 3) ; display:none"),
        ("dim_font_size", "12px; color:red"),
        ("dim_border_radius", "expression(alert(1))"),
        ("font_family_body", "Arial { display: none }"),
        ("font_family_body", "Arial; } body { display: none"),
        ("font_family_body", "x, url(https://evil.example/font.woff)"),
        ("font_family_body", "</style><script>alert(1)</script>"),
        ("font_family_body", "Arial\\3b display none"),
    ],
)
def test_a_hostile_value_is_dropped_and_the_valid_keys_of_the_document_are_kept(
    key: str, hostile: str
) -> None:
    style = clean_style({**READABLE, key: hostile})
    assert style == {name: value for name, value in READABLE.items() if name != key}
    css = style_css(style)
    assert hostile not in css
    assert not any(word in css for word in ("display", "alert", "<", "url", "expression"))
    assert "--radius: 6px;" in css or key == "dim_border_radius"


@pytest.mark.parametrize(
    ("key", "value", "cleaned"),
    [
        ("color_text", "#333", "#333"),
        ("color_text", "#333a", "#333a"),
        ("color_text", "#303030", "#303030"),
        ("color_text", "#303030ff", "#303030ff"),
        ("color_text", "rgb(48, 48, 48)", "rgb(48, 48, 48)"),
        ("color_text", "rgba(48,48,48,0.9)", "rgba(48,48,48,0.9)"),
        ("color_text", "hsl(210, 20%, 20%)", "hsl(210, 20%, 20%)"),
        ("color_text", "hsla(210, 20%, 20%, 1)", "hsla(210, 20%, 20%, 1)"),
        ("color_text", "DarkSlateGray", "DarkSlateGray"),
        ("dim_font_size", "13px", "13px"),
        ("dim_font_size", "0.9rem", "0.9rem"),
        ("dim_border_radius", ".5em", ".5em"),
        ("dim_spacing_size", "110%", "110%"),
        (
            "font_family_heading",
            "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif;",
            "'HelveticaNeue-Light', Helvetica, Arial, 'Lucida Grande', sans-serif",
        ),
        ("font_family_body", '"Segoe UI", system-ui', '"Segoe UI", system-ui'),
    ],
)
def test_values_of_the_allowed_forms_are_kept(key: str, value: str, cleaned: str) -> None:
    assert clean_style({key: value}) == {key: cleaned}


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("color_text", "rgb(10 20 30 / 50%)"),
        ("color_text", "color-mix(in srgb, red, blue)"),
        ("color_text", ""),
        ("color_text", 303030),
        ("dim_font_size", "13pt"),
        ("dim_font_size", "-5px"),
        ("dim_font_size", "calc(10px + 1em)"),
        ("font_family_body", "Arial;;"),
        ("font_family_body", "'Unclosed, serif"),
        ("font_family_body", "Curlz MT"),  # "url" inside a name: refused, the default stays
        ("font_family_body", "expression"),
        ("font_family_body", "a/b"),
        ("unknown_key", "#000"),
    ],
)
def test_values_outside_the_allow_lists_are_dropped(key: str, value: object) -> None:
    assert clean_style({key: value, "dim_border_radius": "4px"}) == {"dim_border_radius": "4px"}


@pytest.mark.parametrize("document", [[], "#000", None, 3, [{"color_text": "#000"}]])
def test_a_document_that_is_not_a_json_object_gives_nothing(document: object) -> None:
    assert clean_style(document) == {}
    assert style_css(clean_style(document)) == ""


def test_the_values_map_onto_the_app_variables() -> None:
    css = style_css(
        clean_style(
            {
                **READABLE,
                "color_highlight": "#235a7a",
                "color_success": "#1d6b3a",
                "font_family_heading": "Helvetica, Arial, sans-serif;",
            }
        )
    )
    for line in (
        "--canvas: #edeae3;",
        "--ink: #303030;",
        "--brand: #235a7a;",
        "--info: #235a7a;",
        "--critical: #9e2d2d;",
        "--ok: #1d6b3a;",
        "--radius: 6px;",
        "font-size: 14px;",
        "body { font-family: Georgia, Times, 'Times New Roman', serif; }",
        "h1, h2, h3 { font-family: Helvetica, Arial, sans-serif; }",
    ):
        assert line in css


def test_colours_that_would_leave_text_unreadable_are_not_used() -> None:
    """The SMART example's highlight (#69b5ce) carries white text at 2.4:1: not used; a
    light text colour would sit on the app's white panels; a dark background under dark ink."""
    css = style_css(clean_style({"color_highlight": "#69b5ce", "color_success": "#498e49"}))
    assert css == ""
    assert style_css(clean_style({"color_text": "#eeeeee"})) == ""
    assert style_css(clean_style({"color_background": "#222222"})) == ""
    assert style_css(clean_style({"color_text": "rgba(0, 0, 0, 0.5)"})) == ""  # translucent
    assert style_css(clean_style({"color_text": "black"})) == ""  # contrast not computable


def test_text_and_background_given_together_are_both_kept_when_readable() -> None:
    css = style_css(clean_style({"color_text": "#1f2933", "color_background": "#f4f1ea"}))
    assert "--ink: #1f2933;" in css and "--canvas: #f4f1ea;" in css
    clash = style_css(clean_style({"color_text": "#777777", "color_background": "#888888"}))
    assert "--ink" not in clash and "--canvas" not in clash


@pytest.mark.parametrize(("size", "kept"), [("8px", False), ("40px", False), ("13px", True)])
def test_a_font_size_is_used_only_within_readable_bounds(size: str, kept: bool) -> None:
    assert ("font-size" in style_css(clean_style({"dim_font_size": size}))) is kept


# -- fetching: only the EHR's host, nothing of the user's, small and quick ----------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example/style.json",
        "https://ehr.example.org:8443/style.json",  # the EHR's host name, another port
        "http://ehr.example.org/style.json",  # plain http off loopback
        "https://user:secret@ehr.example.org/style.json",  # would be sent as credentials
        "http://127.0.0.1:9999/style.json",  # loopback, but not this EHR
        "http://169.254.169.254/latest/meta-data/",
        "file:///etc/passwd",
    ],
)
def test_a_style_url_off_the_ehrs_host_is_never_requested(
    http: responses.RequestsMock, url: str
) -> None:
    if url.startswith("http"):
        http.get(url, json=READABLE)
    assert EhrStyles().css(url, EHR) == ""
    assert len(http.calls) == 0


def test_plain_http_is_fetched_only_from_a_loopback_host(http: responses.RequestsMock) -> None:
    http.get("http://ehr.example.org/style.json", json=READABLE)
    assert (
        EhrStyles().css("http://ehr.example.org/style.json", ["http://ehr.example.org/fhir"]) == ""
    )
    assert len(http.calls) == 0


def test_a_refused_url_is_logged_without_its_query(
    http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="smartapp.ehr_style"):
        EhrStyles().css("https://evil.example/style.json?access_token=s3cret", EHR)
    assert "https://evil.example/style.json" in caplog.text
    assert "s3cret" not in caplog.text and "access_token" not in caplog.text


@pytest.mark.parametrize(
    "url", [REMOTE_STYLE, "https://auth.example.org/style.json", "https://EHR.example.org:443/s"]
)
def test_a_style_url_on_the_ehrs_fhir_or_token_host_is_fetched(
    http: responses.RequestsMock, url: str
) -> None:
    http.get(url, json=READABLE)
    assert "--canvas: #edeae3;" in EhrStyles().css(url, EHR)
    assert len(http.calls) == 1
    assert http.calls[0].request.req_kwargs["timeout"] == (1.0, 2.0)  # connect, read


class StubDiscovery:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def configuration(self, iss: str) -> SmartConfiguration:
        self.asked.append(iss)
        return SmartConfiguration(
            iss=iss,
            authorization_endpoint="https://login.example.org/authorize",
            token_endpoint=EHR[1],
            source="smart-configuration",
        )


def session_for(style_url: str | None) -> SmartSession:
    return SmartSession(
        handle="h",
        browser="b",
        iss=EHR[0],
        token_endpoint=EHR[1],
        access_token="at",
        refresh_token=None,
        access_expires_at=None,
        scope="",
        patient=HARLAN,
        encounter=None,
        need_patient_banner=True,
        smart_style_url=style_url,
        fhir_context=None,
        app_context=None,
        fhir_user=None,
        framed=False,
        expires_at=scenario_now(LOW_E2),
    )


def test_the_authorization_endpoints_host_is_allowed_and_asked_for_only_when_needed(
    http: responses.RequestsMock,
) -> None:
    discovery = StubDiscovery()
    on_login = "https://login.example.org/style.json"
    http.get(on_login, json=READABLE)
    http.get(REMOTE_STYLE, json=READABLE)
    styles = EhrStyles()
    assert styles.css(REMOTE_STYLE, ehr_urls(session_for(REMOTE_STYLE), discovery))  # type: ignore[arg-type]
    assert discovery.asked == []  # the FHIR host matched first
    assert styles.css(on_login, ehr_urls(session_for(on_login), discovery))  # type: ignore[arg-type]
    assert discovery.asked == [EHR[0]]


def test_a_redirect_is_not_followed(http: responses.RequestsMock) -> None:
    elsewhere = "https://ehr.example.org/other.json"
    http.get(REMOTE_STYLE, status=302, headers={"Location": elsewhere})
    http.get(elsewhere, json=READABLE)
    assert EhrStyles().css(REMOTE_STYLE, EHR) == ""
    assert [call.request.url for call in http.calls] == [REMOTE_STYLE]


@pytest.mark.parametrize("says_its_length", [True, False])
def test_a_document_over_64_kb_is_refused(
    http: responses.RequestsMock, says_its_length: bool
) -> None:
    body = json.dumps({**READABLE, "padding": "x" * MAX_DOCUMENT_BYTES})
    http.get(REMOTE_STYLE, body=body, auto_calculate_content_length=says_its_length)
    assert EhrStyles().css(REMOTE_STYLE, EHR) == ""


@pytest.mark.parametrize(
    "answer",
    [
        {"body": requests.ReadTimeout()},
        {"body": requests.ConnectTimeout()},
        {"body": requests.ConnectionError()},
        {"body": "<html>not json</html>"},
        {"body": "[1, 2]"},
        {"json": READABLE, "status": 500},
        {"body": b"\xff\xfe\x00"},
    ],
)
def test_no_answer_or_no_json_object_gives_empty_css(
    http: responses.RequestsMock, answer: dict[str, Any]
) -> None:
    http.get(REMOTE_STYLE, **answer)
    assert EhrStyles().css(REMOTE_STYLE, EHR) == ""


def test_no_access_token_or_cookie_is_ever_sent(http: responses.RequestsMock) -> None:
    session = requests.Session()
    session.headers["Authorization"] = "Bearer leaked-token"
    session.cookies.set("ehr_session", "leaked-cookie", domain="ehr.example.org")
    http.get(REMOTE_STYLE, json=READABLE)
    assert EhrStyles(session=session).css(REMOTE_STYLE, EHR)
    sent = http.calls[0].request.headers
    assert "Authorization" not in sent and "Cookie" not in sent
    assert "leaked" not in json.dumps(dict(sent))


def test_a_style_is_reused_for_ten_minutes(http: responses.RequestsMock) -> None:
    http.get(REMOTE_STYLE, json=READABLE)
    clock = Clock()
    styles = EhrStyles(clock=clock)
    first = styles.css(REMOTE_STYLE, EHR)
    clock.now += CACHE_SECONDS - 1
    assert styles.css(REMOTE_STYLE, EHR) == first and len(http.calls) == 1
    clock.now += 2
    assert styles.css(REMOTE_STYLE, EHR) == first and len(http.calls) == 2


def test_a_failed_fetch_is_remembered_briefly(http: responses.RequestsMock) -> None:
    http.get(REMOTE_STYLE, body=requests.ReadTimeout())
    clock = Clock()
    styles = EhrStyles(clock=clock)
    assert styles.css(REMOTE_STYLE, EHR) == ""
    clock.now += FAILURE_CACHE_SECONDS - 1
    assert styles.css(REMOTE_STYLE, EHR) == "" and len(http.calls) == 1
    clock.now += 2
    styles.css(REMOTE_STYLE, EHR)
    assert len(http.calls) == 2


def test_the_cache_is_bounded(http: responses.RequestsMock) -> None:
    urls = [f"https://ehr.example.org/style-{n}.json" for n in range(3)]
    for url in urls:
        http.get(url, json=READABLE)
    styles = EhrStyles(max_entries=2)
    for url in [*urls, urls[0]]:
        styles.css(url, EHR)
    assert len(http.calls) == 4  # the first was dropped when the third came


# -- the route and the page ----------------------------------------------------------------------


def signed_in(client: FlaskClient, sandbox: Sandbox, **launch: Any) -> str:
    """The dashboard's path, signed in through the bridged sandbox EHR."""
    return launch_and_sign_in(client, sandbox, **launch).removeprefix(APP_BASE)


def test_the_route_serves_the_ehrs_style_as_css(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    dashboard = signed_in(client, sandbox, smart_style_url=STYLE_URL)
    response = client.get(f"{dashboard}/ehr-style.css")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/css; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Content-Security-Policy"].startswith(
        "default-src 'none'; style-src 'self'; img-src 'self' data:;"
    )
    css = response.get_data(as_text=True)
    assert "--canvas: #f4f1ea;" in css and "--ink: #1f2933;" in css
    assert "h1, h2, h3 { font-family: system-ui" in css
    fetched = [call.request for call in ehr.calls if call.request.url == STYLE_URL]
    assert len(fetched) == 1
    tokens = [issued.access_token for issued in sandbox.ehr.by_access.values()]
    assert "Authorization" not in fetched[0].headers and "Cookie" not in fetched[0].headers
    assert tokens and not any(token in str(fetched[0].headers) for token in tokens)


def test_the_route_is_empty_css_without_a_style_url(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    dashboard = signed_in(client, sandbox)
    response = client.get(f"{dashboard}/ehr-style.css")
    assert response.status_code == 200 and response.mimetype == "text/css"
    assert response.get_data() == b""
    assert not [call for call in ehr.calls if STYLE_PATH in call.request.url]


def test_a_launch_with_a_style_url_on_another_host_gets_empty_css(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    elsewhere = "http://127.0.0.2:9999/smart-style.json"
    ehr.get(elsewhere, json=READABLE)
    dashboard = signed_in(client, sandbox, smart_style_url=elsewhere)
    response = client.get(f"{dashboard}/ehr-style.css")
    assert response.status_code == 200 and response.get_data() == b""
    assert not [call for call in ehr.calls if call.request.url == elsewhere]


def test_the_route_is_404_for_an_unknown_handle_or_another_browser(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, app: Any
) -> None:
    unknown = client.get("/smart/app/no-such-session/ehr-style.css")
    assert unknown.status_code == 404 and unknown.get_data() == b""
    dashboard = signed_in(client, sandbox, smart_style_url=STYLE_URL)
    with app.test_client() as other_browser:
        response = other_browser.get(f"{dashboard}/ehr-style.css")
    assert response.status_code == 404 and response.get_data() == b""
    assert not [call for call in ehr.calls if call.request.url == STYLE_URL]


@pytest.mark.parametrize("style_url", [STYLE_URL, None])
def test_the_dashboard_links_the_ehr_style_only_when_there_is_one(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock, style_url: str | None
) -> None:
    dashboard = signed_in(client, sandbox, smart_style_url=style_url)
    page = client.get(dashboard).get_data(as_text=True)
    link = f'<link rel="stylesheet" href="{dashboard}/ehr-style.css">'
    assert (link in page) is (style_url is not None)
    if style_url:  # after app.css, so that it overrides it
        assert page.index("app.css") < page.index(link)


# -- the sandbox EHR -----------------------------------------------------------------------------


def test_the_sandbox_ehr_serves_its_style_and_its_launch_button_passes_it() -> None:
    sandbox = build_sandbox(style_url=STYLE_URL)
    ehr_browser = sandbox.app.test_client()
    assert ehr_browser.get(STYLE_PATH).get_json() == SANDBOX_STYLE
    launched = ehr_browser.get(
        "/ehr/launch", query_string={"app": f"{APP_BASE}/launch.html", "patient": HARLAN}
    )
    launch = query_of(launched.headers["Location"])["launch"]
    assert sandbox.ehr.launches[launch][1].smart_style_url == STYLE_URL
    assert style_css(clean_style(SANDBOX_STYLE)).count(";") >= 9  # every used key is readable


# -- in a real browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def styled_ehr(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEhr]:
    """The sandbox EHR and the app on 127.0.0.1; the EHR's launches carry its style URL."""
    with live_ehr(tmp_path_factory.mktemp("app"), style_path=STYLE_PATH) as running:
        yield running


@pytest.mark.integration
def test_chromium_shows_the_ehrs_background_without_a_csp_violation(
    styled_ehr: LiveEhr, page: Any, tmp_path: Path
) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    stylesheets: list[tuple[int, str]] = []
    page.on(
        "response",
        lambda answer: (
            stylesheets.append((answer.status, answer.headers["content-type"]))
            if answer.url.endswith("/ehr-style.css")
            else None
        ),
    )
    page.goto(styled_ehr.launch_url())
    page.wait_for_selector("section.findings")
    assert stylesheets == [(200, "text/css; charset=utf-8")]
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background == "rgb(244, 241, 234)"  # SANDBOX_STYLE's color_background, #f4f1ea
    radius = page.evaluate("getComputedStyle(document.querySelector('.findings')).borderRadius")
    assert radius == "6px"
    assert not [line for line in console if "Content Security Policy" in line], console
    page.screenshot(path=str(tmp_path / "ehr-styled.png"), full_page=True)
