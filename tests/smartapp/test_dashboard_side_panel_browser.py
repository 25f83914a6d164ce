"""The dashboard in headless Chromium, as an EHR side panel (380 px) shows it: the chart stays
readable and starts at the newest results, nothing pushes the page sideways, and the colours
that carry words or focus keep WCAG AA contrast. The page is served from memory (the app's
template and app.css), so no sign-in is needed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import smartapp
from tests.smartapp.dashboard_pages import dashboard_of, patient_resources, render_page

pytestmark = pytest.mark.integration

ORIGIN = "http://dashboard.test"
APP_CSS = Path(smartapp.__file__).parent / "static" / "app.css"

CONTRAST = """([a, b]) => {
  const rgb = (c) => c.match(/[\\d.]+/g).slice(0, 3).map(Number);
  const lum = (c) => {
    const [r, g, b] = rgb(c).map((v) => v / 255)
      .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}"""


def show_dashboard(page: Any, tmp_path: Path, patient: str) -> Any:
    """That sandbox patient's dashboard, with the app's stylesheet, in `page`."""
    html = render_page(tmp_path, dashboard_of(patient_resources(patient)))
    page.route(
        f"{ORIGIN}/**",
        lambda route: route.fulfill(
            body=APP_CSS.read_text() if route.request.url.endswith(".css") else html,
            content_type="text/css" if route.request.url.endswith(".css") else "text/html",
        ),
    )
    page.goto(f"{ORIGIN}/smart/app/h")
    return page


@pytest.fixture
def side_panel(browser: Any, tmp_path: Path) -> Iterator[Any]:
    """A 380 px page; `show(patient)` shows that sandbox patient's dashboard in it."""
    context = browser.new_context(viewport={"width": 380, "height": 800})
    page = context.new_page()
    page.show = lambda patient: show_dashboard(page, tmp_path, patient)
    yield page
    context.close()


def test_the_chart_is_readable_in_a_380px_side_panel(side_panel: Any) -> None:
    page = side_panel.show("trt-low-e2")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 380  # the chart scrolls in its own box, not the page
    tick_px = page.evaluate(
        "(() => { const s = document.querySelector('svg.trend-chart');"
        " return s.getBoundingClientRect().width / s.viewBox.baseVal.width * 12; })()"
    )
    assert tick_px >= 9.9  # a 12-unit label is 10 px or more on screen, not 4
    newest = page.locator("circle[data-series=estradiol]").last.bounding_box()
    box = page.locator(".chart-scroll").bounding_box()
    assert newest and box and box["x"] <= newest["x"] <= box["x"] + box["width"]
    assert page.locator(".chart-scroll").get_attribute("tabindex") == "0"  # keyboard scroll
    assert page.locator(".scroll-hint").is_visible()
    button = page.get_by_role("button", name="Sign out").bounding_box()
    assert button and button["height"] < 30  # one line, not "Sign / out"
    date_cell = page.locator(".numbers td.date").first
    page.locator(".numbers summary").click()
    lines = date_cell.evaluate(
        "e => { const r = document.createRange(); r.selectNodeContents(e);"
        " return r.getClientRects().length; }"
    )
    assert lines == 1  # "2026-10-19" on one line, not "2026-" / "10-19"


def test_a_past_course_label_and_the_focus_ring_keep_their_contrast(side_panel: Any) -> None:
    page = side_panel.show("trt-no-ai-high-e2")
    label = page.locator("g.course-stopped text.course-label-inside")
    assert label.count() == 1
    text = label.evaluate("e => getComputedStyle(e).fill")
    bar = page.locator("g.course-stopped rect").evaluate("e => getComputedStyle(e).fill")
    assert page.evaluate(CONTRAST, [text, bar]) >= 4.5

    page.locator(".numbers summary").focus()
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineColor")
    for behind in ("rgb(255, 255, 255)", "rgb(243, 245, 248)", "rgb(30, 58, 95)"):
        assert page.evaluate(CONTRAST, [ring, behind]) >= 3  # paper, canvas, header


AXIS_IN_VIEW = """() => {
  const box = document.querySelector('.chart-scroll').getBoundingClientRect();
  const inside = (e) => { const r = e.getBoundingClientRect();
    return r.width > 0 && r.left >= box.left - 0.5 && r.right <= box.right + 0.5; };
  const ticks = [...document.querySelectorAll('svg.trend-axis text.tick-y')];
  const units = [...document.querySelectorAll('svg.trend-axis text.axis-unit')];
  const lanes = [...document.querySelectorAll('svg.trend-axis text.lane-title')];
  return {ticks: ticks.length, units: units.map((e) => e.textContent), lanes: lanes.length,
          inView: [...ticks, ...units, ...lanes].every(inside)};
}"""


def test_the_y_axis_stays_in_view_while_the_narrow_chart_scrolls(side_panel: Any) -> None:
    """Scrolled to the newest results (where it starts) and to the oldest, the numbers of
    each y axis, their units and the lanes' names stay on screen: a value is never read
    against a scale that has scrolled away."""
    page = side_panel.show("trt-low-e2")
    scroller = page.locator(".chart-scroll")
    assert scroller.evaluate("e => e.scrollWidth > e.clientWidth")  # it does scroll here
    for scroll in ("newest", "oldest"):
        if scroll == "oldest":
            scroller.evaluate("e => { e.scrollLeft = -e.scrollWidth; }")  # rtl: negative
        seen = page.evaluate(AXIS_IN_VIEW)
        assert seen["ticks"] >= 4 and seen["lanes"] >= 1, seen
        assert seen["units"] == ["pg/mL", "ng/dL"], seen
        assert seen["inView"], (scroll, seen)
    # one scale for the margin and the plot: a unit is as wide on screen in both
    scales = page.evaluate(
        "[...document.querySelectorAll('.chart-frame svg')].map((s) =>"
        " s.getBoundingClientRect().width / s.viewBox.baseVal.width)"
    )
    assert len(scales) == 2 and abs(scales[0] - scales[1]) < 0.01 * scales[0], scales


def test_the_wide_chart_does_not_scroll_and_its_margin_sits_left_of_the_plot(
    browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1024, "height": 800})
    page = show_dashboard(context.new_page(), tmp_path, "trt-low-e2")
    scroller = page.locator(".chart-scroll")
    assert scroller.evaluate("e => e.scrollWidth <= e.clientWidth")
    axis = page.locator("svg.trend-axis").bounding_box()
    plot = page.locator("svg.trend-chart").bounding_box()
    assert axis and plot
    assert abs(axis["x"] + axis["width"] - plot["x"]) < 1  # side by side, no gap, no overlap
    assert abs(axis["height"] - plot["height"]) < 1  # the same height: one vertical scale
    assert page.evaluate(AXIS_IN_VIEW)["inView"]
    context.close()
