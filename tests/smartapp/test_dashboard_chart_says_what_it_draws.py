"""The estradiol chart and its legend say only what is drawn: a stopped course is not
"ongoing", the ceiling goes with testosterone therapy, and an empty chart says it is empty."""

from __future__ import annotations

import re
from pathlib import Path

from tests.smartapp.dashboard_pages import dashboard_of, patient_resources, render_page


def test_a_stopped_course_without_an_end_date_is_not_called_ongoing() -> None:
    chart = dashboard_of(patient_resources("trt-no-ai-high-e2")).chart
    (stopped,) = [bar for bar in chart.courses if bar.drug == "anastrozole"]
    assert stopped.status == "stopped" and stopped.end is None and not stopped.current
    assert "ongoing" not in re.sub(r"Testosterone [^.]*ongoing\.", "", chart.description)
    assert "stopped, end date not recorded" in chart.description
    label = re.search(r'course-anastrozole course-stopped">.*?</g>', chart.svg)
    assert label and "stopped, end not recorded" in label.group(0)
    assert "ongoing" not in label.group(0)


def test_the_ceiling_follows_testosterone_therapy_not_testosterone_results() -> None:
    resources = [
        r
        for r in patient_resources("trt-low-e2")
        if not (r["resourceType"] == "MedicationRequest" and "testo" in r["id"])
    ]
    page = dashboard_of(resources)
    assert page.chart.testosterone  # results still drawn
    assert not [bar for bar in page.chart.courses if bar.drug == "testosterone"]
    assert page.chart.ceiling is None
    assert 'class="ceiling"' not in page.chart.svg


def test_the_ceiling_is_drawn_and_in_the_legend_for_a_man_on_testosterone(
    tmp_path: Path,
) -> None:
    page = dashboard_of(patient_resources("trt-low-e2"))
    assert page.chart.ceiling == 40
    html = render_page(tmp_path, page)
    assert 'class="ceiling"' in page.chart.svg
    assert "Ceiling (on testosterone)" in html
    assert "Testosterone therapy" in html  # the light bar has a key too


def test_no_estradiol_on_record_is_said_on_the_page_and_in_the_chart(tmp_path: Path) -> None:
    page = dashboard_of(patient_resources("premenopausal"))
    assert not page.chart.estradiol
    html = render_page(tmp_path, page)
    assert re.search(r'<p class="empty-estradiol">No estradiol results on record', html)
    assert "No estradiol results on record</text>" in page.chart.svg
    assert "Estradiol result (value above it)" not in html  # no key for what is not drawn


def test_every_legend_key_is_kept_with_its_words(tmp_path: Path) -> None:
    html = render_page(tmp_path, dashboard_of(patient_resources("trt-e2-lt5-reports")))
    legend = re.search(r'<figcaption class="legend">(.*?)</figcaption>', html, re.S)
    assert legend
    items = re.findall(r'<span class="legend-item">(.*?)</span>\s*(?=<span|$)', legend.group(1))
    keys = re.findall(r'class="key ', legend.group(1))
    assert len(items) == len(keys) >= 5
    assert all(re.search(r'class="key [^"]+"[^>]*></span> \S', item) for item in items)
    assert "Hollow: reported as" in legend.group(1)  # the <5 pg/mL point is drawn hollow


def test_dates_in_the_numbers_table_do_not_break(tmp_path: Path) -> None:
    html = render_page(tmp_path, dashboard_of(patient_resources("trt-low-e2")))
    table = re.search(r'<details class="numbers">.*?</details>', html, re.S)
    assert table and '<div class="table-scroll">' in table.group(0)
    rows = re.findall(r"<tr><td([^>]*)>\d{4}-\d{2}-\d{2}", table.group(0))
    assert rows and all(cell == ' class="date"' for cell in rows)
