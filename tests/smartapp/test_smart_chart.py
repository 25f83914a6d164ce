"""The server-side SVG chart: points, target band by intent, courses with weekly dose."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

import pytest

from clinical import DEFAULT_SETTINGS, build_record
from clinical.finding import Intent
from clinical.intent import infer_intent
from smartapp.trend import TrendChart, trend_chart
from tests.conftest import expected_scenarios, read_fixture, resources_of
from tests.smartapp.smart_helpers import LOW_E2, scenario_now

SVG = "{http://www.w3.org/2000/svg}"


def chart_of(fixture: str, now: datetime | None = None) -> TrendChart:
    now = now or scenario_now(fixture)
    record = build_record(resources_of(read_fixture(fixture)), now)
    assessment = infer_intent(record, now)
    return trend_chart(record, assessment.intent if assessment else None, DEFAULT_SETTINGS, now)


def circles(svg: str, series: str = "estradiol") -> list[dict[str, str]]:
    root = ET.fromstring(svg)
    return [c.attrib for c in root.iter(f"{SVG}circle") if c.attrib.get("data-series") == series]


@pytest.mark.parametrize("fixture", sorted(expected_scenarios()))
def test_every_chart_is_well_formed_svg_with_a_title_and_description(fixture: str) -> None:
    chart = chart_of(fixture)
    root = ET.fromstring(chart.svg)
    assert root.attrib["role"] == "img"
    assert root.find(f"{SVG}title") is not None and root.find(f"{SVG}desc") is not None
    assert len(circles(chart.svg)) == len(chart.estradiol)
    axis = ET.fromstring(chart.axis_svg)  # the left margin: well formed, hidden, same height
    assert axis.attrib["aria-hidden"] == "true"
    assert axis.attrib["viewBox"].split()[3] == root.attrib["viewBox"].split()[3]


def test_estradiol_points_carry_their_value_and_date() -> None:
    chart = chart_of(LOW_E2)
    points = circles(chart.svg)
    assert [(p["data-value"], p["data-date"]) for p in points] == [
        ("46", "2026-04-02"),
        ("11", "2026-10-19"),
    ]
    assert all(p["data-unit"] == "pg/mL" for p in points)
    assert points[1]["data-status"] == "low"
    assert points[0]["data-status"] == "high"  # 46 pg/mL on testosterone: above the 40 ceiling
    assert "11 pg/mL on 2026-10-19, below the 20 pg/mL floor" in chart.svg


def test_trt_modulation_shades_the_20_to_30_band_with_a_floor() -> None:
    chart = chart_of(LOW_E2)
    root = ET.fromstring(chart.svg)
    (band,) = [r for r in root.iter(f"{SVG}rect") if r.attrib.get("class") == "band"]
    assert (band.attrib["data-low"], band.attrib["data-high"]) == ("20", "30")
    assert 'class="floor"' in chart.svg and "floor 20" in chart.svg
    assert chart.band == (20.0, 30.0)


def test_oncology_suppression_draws_no_floor() -> None:
    chart = chart_of("woman_oncology_anastrozole_no_dexa.json")
    assert chart.band is None
    assert 'class="band"' not in chart.svg and 'class="floor"' not in chart.svg
    assert "no floor" in chart.band_text


def test_anastrozole_courses_are_bars_with_their_weekly_dose() -> None:
    chart = chart_of(LOW_E2)
    root = ET.fromstring(chart.svg)
    bars = [r.attrib for r in root.iter(f"{SVG}rect") if r.attrib.get("data-drug")]
    anastrozole = [b for b in bars if b["data-drug"] == "anastrozole"]
    assert anastrozole == [
        {
            "x": anastrozole[0]["x"],
            "y": anastrozole[0]["y"],
            "width": anastrozole[0]["width"],
            "height": "26",
            "rx": "4",
            "data-drug": "anastrozole",
            "data-start": "2026-04-20",
            "data-end": "",
            "data-weekly-mg": "1",
            "data-ref": "MedicationRequest/mr-harlan-anastrozole",
        }
    ]
    assert "0.5 mg twice weekly (1 mg/week)" in chart.svg
    assert [b["data-start"] for b in bars if b["data-drug"] == "testosterone"] == ["2024-01-09"]


def test_testosterone_is_drawn_on_the_same_time_axis() -> None:
    chart = chart_of(LOW_E2)
    (testosterone,) = circles(chart.svg, "testosterone")
    (_, latest_e2) = circles(chart.svg)
    assert testosterone["data-value"] == "612" and testosterone["data-date"] == "2026-10-19"
    assert testosterone["cx"] == latest_e2["cx"]  # same day, same x


def test_a_less_than_result_is_drawn_at_its_bound_and_says_so() -> None:
    chart = chart_of("man_trt_anastrozole_e2_comparator_lt5.json")
    (point,) = circles(chart.svg)
    assert point["data-comparator"] == "<" and point["data-value"] == "5"
    assert "point-bound" in point["class"] and point["data-status"] == "critical"
    assert ">&lt;5<" in chart.svg


def test_a_result_in_an_unknown_unit_is_left_out_and_said() -> None:
    chart = chart_of("man_trt_anastrozole_e2_unknown_unit.json")
    assert chart.left_out and "not drawn" in chart.left_out[0]
    assert len(circles(chart.svg)) == len(chart.estradiol)


def test_no_results_still_gives_a_chart_that_says_so() -> None:
    chart = chart_of("woman_anastrozole_alt_high.json")
    assert chart.estradiol == ()
    assert "No estradiol results on record." in chart.description


def test_the_description_reads_like_a_sentence() -> None:
    description = chart_of(LOW_E2).description
    assert description.startswith(
        "2 estradiol result(s) from 2026-04-02 to 2026-10-19; latest 11 pg/mL"
    )
    assert "Anastrozole 0.5 mg twice weekly (1 mg/week), from 2026-04-20, ongoing." in description


def test_intent_decides_the_band_not_the_data() -> None:
    now = scenario_now(LOW_E2)
    record = build_record(resources_of(read_fixture(LOW_E2)), now)
    for intent, band in [
        (Intent.TRT_MODULATION, (20.0, 30.0)),
        (Intent.FERTILITY, (20.0, 30.0)),
        (Intent.ONCOLOGY_SUPPRESSION, None),
        (Intent.UNCLEAR, None),
    ]:
        assert trend_chart(record, intent, DEFAULT_SETTINGS, now).band == band


def test_the_y_axes_and_lane_names_are_drawn_in_the_left_margin_not_the_plot() -> None:
    """The numbers, units and lane names go in `axis_svg` (x from 0 to LEFT), which the page
    keeps in view while the plot (x from LEFT) scrolls; the plot keeps the grid lines."""
    chart = chart_of(LOW_E2)
    axis, plot = ET.fromstring(chart.axis_svg), ET.fromstring(chart.svg)
    left = float(plot.attrib["viewBox"].split()[0])
    assert float(axis.attrib["viewBox"].split()[2]) == left > 0
    classes = {t.attrib["class"] for t in axis.iter(f"{SVG}text")}
    assert {"tick tick-y", "axis-unit", "lane-title"} <= classes
    assert "pg/mL" in [t.text for t in axis.iter(f"{SVG}text") if t.attrib["class"] == "axis-unit"]
    for text in axis.iter(f"{SVG}text"):
        assert float(text.attrib["x"]) <= left
    plot_classes = {t.attrib.get("class") for t in plot.iter(f"{SVG}text")}
    assert not plot_classes & {"tick tick-y", "axis-unit", "lane-title"}
    assert any(line.attrib.get("class") == "grid grid-y" for line in plot.iter(f"{SVG}line"))
