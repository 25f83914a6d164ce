"""A real browser through the EHR launch: headless Chromium (Debian's /usr/bin/chromium, driven
by Playwright) -> the sandbox EHR's launch button -> launch.html -> authorize (Authlib) ->
callback -> the dashboard, all on 127.0.0.1; and the same inside the EHR's iframe."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.smartapp.smart_helpers import LiveEhr, live_ehr

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveEhr]:
    with live_ehr(tmp_path_factory.mktemp("app")) as running:
        yield running


def test_ehr_launch_to_dashboard_in_a_real_browser(
    live: LiveEhr, page: Any, tmp_path: Path
) -> None:
    page.goto(live.launch_url(appContext='{"rule": "estradiol-low"}'))
    page.wait_for_selector("section.findings")
    assert page.url.startswith(f"{live.app_base}/smart/app/")

    # the findings, in the cards' words, most severe first
    rules = page.locator("li.finding").evaluate_all("els => els.map(e => e.dataset.rule)")
    assert rules == ["estradiol-low", "anastrozole-intent"]  # no DXA card in his first year
    first = page.locator("li.finding").first
    assert "Estradiol 11 pg/mL on anastrozole (TRT): below 20 pg/mL floor" in first.inner_text()
    assert "Warning" in first.locator(".badge").inner_text().title()
    assert first.get_attribute("aria-current") == "true"  # the card that opened the app
    assert "Harlan J Quill" in page.locator(".patient-banner").inner_text()

    # the chart, drawn on the server, with its data points
    chart = page.locator("svg.trend-chart")
    assert chart.is_visible()
    points = chart.locator("circle[data-series=estradiol]").evaluate_all(
        "els => els.map(e => [e.dataset.value, e.dataset.date])"
    )
    assert points == [["46", "2026-04-02"], ["11", "2026-10-19"]]
    assert chart.locator("rect.band").get_attribute("data-low") == "20"
    assert chart.locator("rect[data-drug=anastrozole]").get_attribute("data-weekly-mg") == "1"
    assert chart.locator("circle[data-series=testosterone]").count() == 1
    box = chart.bounding_box()
    assert box is not None and box["width"] <= 1024

    # tokens stay on the server: the browser holds one opaque, HttpOnly cookie
    cookies = page.context.cookies()
    assert [c["name"] for c in cookies] == ["anastrozole_smart"]
    assert cookies[0]["httpOnly"] and cookies[0]["sameSite"] == "Lax"
    tokens = [t.access_token for t in live.sandbox.ehr.by_access.values()]
    assert tokens and all(
        token not in page.content() and token not in cookies[0]["value"] for token in tokens
    )

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    print(f"\nscreenshot: {shot}")
    assert shot.stat().st_size > 10_000


def test_the_page_works_from_the_keyboard(live: LiveEhr, page: Any) -> None:
    page.goto(live.launch_url())
    page.wait_for_selector("section.findings")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"
    intent = page.locator("#finding-anastrozole-intent details")
    assert intent.get_attribute("open") is None
    intent.locator("summary").focus()
    page.keyboard.press("Enter")
    assert intent.get_attribute("open") is not None


def test_the_app_works_inside_the_ehr_iframe(live: LiveEhr, page: Any, tmp_path: Path) -> None:
    page.goto(live.launch_url("/ehr/frame", appContext='{"rule": "estradiol-low"}'))
    frame = page.frame_locator("iframe")
    frame.locator("section.findings").wait_for()
    assert "Estradiol 11 pg/mL" in frame.locator("li.finding.highlighted").inner_text()
    assert frame.locator("svg.trend-chart circle[data-series=estradiol]").count() == 2
    shot = tmp_path / "in-ehr-iframe.png"
    page.screenshot(path=str(shot))
    print(f"\nscreenshot: {shot}")


def test_an_unknown_issuer_is_refused_in_the_browser(live: LiveEhr, page: Any) -> None:
    response = page.goto(f"{live.app_base}/launch.html?iss=https://evil.example/fhir&launch=x")
    assert response is not None and response.status == 403
    assert "This EHR is not registered with the app" in page.locator("h1").inner_text()
    assert page.url.startswith(live.app_base)


def test_sign_out_in_a_real_browser(live: LiveEhr, page: Any) -> None:
    page.goto(live.launch_url())
    page.wait_for_selector("section.findings")
    dashboard = page.url
    seen: dict[str, str] = {}
    page.on(
        "request",
        lambda sent: seen.update(sent.headers) if sent.url.endswith("/sign-out") else None,
    )
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("[data-state=signed-out]")
    assert "You have signed out" in page.locator("h1").inner_text()
    assert "open it from the patient's chart in the EHR" in page.locator("main").inner_text()
    assert seen.get("content-type") == "application/x-www-form-urlencoded"  # the form posted
    assert page.context.cookies() == []  # the cookie is gone

    response = page.goto(dashboard)  # back to the dashboard: the session has ended
    assert response is not None and response.status == 401
    assert "Your session has ended" in page.locator("h1").inner_text()


def test_sign_out_inside_the_ehr_iframe(live: LiveEhr, page: Any) -> None:
    page.goto(live.launch_url("/ehr/frame"))
    frame = page.frame_locator("iframe")
    frame.locator("section.findings").wait_for()
    frame.get_by_role("button", name="Sign out").click()
    frame.locator("[data-state=signed-out]").wait_for()
    assert "You have signed out" in frame.locator("h1").inner_text()
