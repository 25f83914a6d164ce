"""The page: banner, findings in the cards' words, monitoring timeline, intent, chart."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from flask import Flask
from flask.testing import FlaskClient

from clinical import DEFAULT_SETTINGS, evaluate
from clinical.rules import title_of
from smartapp.dashboard import build_dashboard, highlighted_rule
from tests.conftest import expected_scenarios, read_fixture, resources_of
from tests.smartapp.smart_helpers import (
    LOW_E2,
    Sandbox,
    bridged,
    build_app,
    build_sandbox,
    launch_and_sign_in,
    scenario_now,
)

STALE = "man_trt_anastrozole_stale_monitoring.json"
OSTEOPOROSIS = "woman_anastrozole_osteoporosis_no_bisphosphonate.json"
ONCOLOGY_NO_DEXA = "woman_oncology_anastrozole_no_dexa.json"
UNCLEAR = "woman_anastrozole_no_breast_cancer_context.json"
EXTRA = (
    "MedicationStatement",
    "ServiceRequest",
    "ImagingStudy",
    "MedicationAdministration",
    "List",
    "DocumentReference",
)


class Sandboxes:
    """One sandbox EHR per fixture: fixtures reuse patient ids (one patient, two moments)."""

    def __init__(self) -> None:
        self._built: dict[str, Sandbox] = {}

    def __getitem__(self, fixture: str) -> Sandbox:
        if fixture not in self._built:
            self._built[fixture] = build_sandbox(fixtures=(fixture,))
        return self._built[fixture]


@pytest.fixture(scope="module")
def every_patient() -> Sandboxes:
    return Sandboxes()


def patient_of(fixture: str) -> str:
    return next(
        r["id"] for r in resources_of(read_fixture(fixture)) if r["resourceType"] == "Patient"
    )


def page_for(tmp_path: Path, sandboxes: Sandboxes, fixture: str, **launch: object) -> str:
    sandbox = sandboxes[fixture]
    app = build_app(tmp_path, now=scenario_now(fixture), extra_resources=EXTRA)
    client = app.test_client()
    with bridged(sandbox):
        target = launch_and_sign_in(client, sandbox, patient_of(fixture), **launch)
        response = client.get(target)
    assert response.status_code == 200, response.get_data(as_text=True)[:2000]
    return response.get_data(as_text=True)


def text(page: str) -> str:
    """The page's words, tags stripped and entities decoded."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


@pytest.mark.parametrize("fixture", sorted(expected_scenarios()))
def test_every_finding_is_on_the_page_in_the_cards_words_most_severe_first(
    tmp_path: Path, every_patient: Sandboxes, fixture: str
) -> None:
    page = page_for(tmp_path, every_patient, fixture)
    findings = evaluate(resources_of(read_fixture(fixture)), now=scenario_now(fixture))
    assert re.findall(
        r'<li id="finding-[^"]+" class="finding [^"]*" data-rule="([^"]+)"', page
    ) == [f.rule_id for f in findings]
    words = text(page)
    for finding in findings:
        assert " ".join(finding.summary.split()) in words
        assert title_of(finding.rule_id) in words  # the card's source.topic.display
    ranks = [
        {"critical": 2, "warning": 1, "info": 0}[s]
        for s in re.findall(r'data-severity="(\w+)"', page)
    ]
    assert ranks == sorted(ranks, reverse=True)


def test_the_low_estradiol_page_shows_banner_finding_evidence_and_source(
    tmp_path: Path, every_patient: Sandboxes
) -> None:
    words = text(page_for(tmp_path, every_patient, LOW_E2))
    assert "Harlan J Quill" in words and "MRN NV4417209" in words and "Male" in words
    assert "Warning Estradiol below the floor" in words
    assert "Estradiol 11 pg/mL on anastrozole (TRT): below 20 pg/mL floor" in words
    assert "Source: TRT practice target 20-30 pg/mL" in words
    assert "Evidence: Observation/obs-harlan-e2-2026-10-19" in words
    assert "Suggested: Order estradiol" in words
    assert "Latest estradiol 11 pg/mL 2026-10-19 · below the 20 pg/mL floor" in words


def test_no_banner_when_the_ehr_shows_its_own(tmp_path: Path, every_patient: Sandboxes) -> None:
    page = page_for(tmp_path, every_patient, LOW_E2, need_patient_banner=False)
    assert "patient-banner" not in page and "Harlan J Quill" not in page
    assert "Estradiol 11 pg/mL" in page


def test_the_rule_of_the_card_that_opened_the_app_is_marked(
    tmp_path: Path, every_patient: Sandboxes
) -> None:
    page = page_for(tmp_path, every_patient, LOW_E2, app_context='{"rule": "estradiol-low"}')
    marked = re.findall(r'<li id="finding-([^"]+)" class="finding [^"]*highlighted[^"]*"', page)
    assert marked == ["estradiol-low"]
    assert 'data-rule="estradiol-low" data-severity="warning" aria-current="true"' in page
    assert 'href="#finding-estradiol-low"' in page
    assert "Opened from the card Estradiol below the floor" in text(page)


def test_a_card_that_no_longer_fires_is_said(tmp_path: Path, every_patient: Sandboxes) -> None:
    page = page_for(tmp_path, every_patient, LOW_E2, app_context='{"rule": "liver-panel-due"}')
    assert not re.findall(r'class="finding [^"]*highlighted', page)
    assert "that check no longer fires" in text(page)


@pytest.mark.parametrize(
    ("app_context", "rule"),
    [
        ('{"rule": "estradiol-low"}', "estradiol-low"),
        ('{"rule": "<script>"}', None),
        ("not json", None),
        ('["estradiol-low"]', None),
        (None, None),
    ],
)
def test_app_context_is_read_safely(app_context: str | None, rule: str | None) -> None:
    assert highlighted_rule(app_context) == rule


def test_the_monitoring_timeline_says_what_is_due_and_when_each_was_last_done(
    tmp_path: Path, every_patient: Sandboxes
) -> None:
    page = page_for(tmp_path, every_patient, STALE)
    statuses = dict(re.findall(r'data-monitor="(\w+)" data-status="([\w-]+)"', page))
    assert statuses == {"dexa": "ok", "liver": "due", "lipid": "due", "glycemic": "due"}
    words = text(page)
    assert (
        "DXA bone density Up to date Last 2025-09-02 · T-score Lumbar spine -0.3 · Hip 0" in words
    )
    assert "Repeat by 2027-09-02" in words
    assert "Liver panel Due now" in words


def test_the_dexa_row_shows_the_t_scores(tmp_path: Path, every_patient: Sandboxes) -> None:
    words = text(page_for(tmp_path, every_patient, OSTEOPOROSIS))
    assert "Last 2026-08-20 · T-score Lumbar spine -2.8 · Hip -2.6" in words


def test_the_intent_and_its_evidence_are_shown(tmp_path: Path, every_patient: Sandboxes) -> None:
    words = text(page_for(tmp_path, every_patient, LOW_E2))
    assert "Why the intent is TRT modulation" in words
    assert (
        "order indication: Testicular hypofunction (ICD-10-CM E29.1) "
        "(MedicationRequest/mr-harlan-anastrozole, Condition/cond-harlan-hypogonadism)" in words
    )


def test_an_unclear_intent_draws_no_band_and_says_why(
    tmp_path: Path, every_patient: Sandboxes
) -> None:
    page = page_for(tmp_path, every_patient, UNCLEAR)
    assert 'class="band"' not in page
    assert "Intent unclear: no target band is drawn" in page
    assert "Why the intent is unclear" in text(page)


def test_oncology_suppression_has_no_floor(tmp_path: Path, every_patient: Sandboxes) -> None:
    page = page_for(tmp_path, every_patient, ONCOLOGY_NO_DEXA)
    assert 'class="band"' not in page and 'class="floor"' not in page
    assert "Oncology suppression: low estradiol is the goal, so no floor is drawn" in page


def test_the_page_is_accessible_and_needs_no_script(
    tmp_path: Path, every_patient: Sandboxes
) -> None:
    page = page_for(tmp_path, every_patient, LOW_E2)
    assert '<html lang="en">' in page
    assert "<script" not in page and " style=" not in page and "onclick" not in page
    assert 'class="skip-link" href="#main"' in page
    assert 'role="img" ' in page and 'aria-labelledby="trend-title trend-desc"' in page
    assert '<title id="trend-title">' in page and '<desc id="trend-desc">' in page
    badges = re.findall(r'<span class="badge badge-(\w+)">.*?</span>(\w+)</span>', page)
    assert badges and all(label.lower() == level for level, label in badges)  # words, not colour
    assert "<summary>Show the numbers</summary>" in page and '<th scope="col">Date</th>' in page
    assert re.findall(r"<h2 [^>]*>", page)


def test_the_page_is_served_with_a_strict_csp_and_frameable_by_the_ehr(
    client: FlaskClient, sandbox: Sandbox, ehr: responses.RequestsMock
) -> None:
    response = client.get(launch_and_sign_in(client, sandbox))
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "style-src 'self'" in policy
    assert "script-src" not in policy  # falls back to 'none'
    assert "frame-ancestors 'self' http://127.0.0.1:9999" in policy
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    css = client.get("/smart/static/app.css")
    assert css.status_code == 200 and "trend-chart" in css.get_data(as_text=True)


def test_data_the_page_could_not_use_is_said() -> None:
    resources = resources_of(read_fixture("man_trt_anastrozole_e2_unknown_unit.json"))
    now = scenario_now("man_trt_anastrozole_e2_unknown_unit.json")
    page = build_dashboard(
        resources, now=now, settings=DEFAULT_SETTINGS, fetch_gaps=("reports: HTTP 500",)
    )
    assert page.notes[0] == "reports: HTTP 500"
    assert any("not one the rules can compare" in note for note in page.notes)
    assert any("estradiol result(s) not drawn" in note for note in page.notes)


def test_the_dashboard_of_a_patient_not_on_anastrozole() -> None:
    resources = resources_of(read_fixture("man_trt_no_ai_high_e2.json"))
    page = build_dashboard(
        resources, now=datetime(2026, 11, 1, tzinfo=UTC), settings=DEFAULT_SETTINGS
    )
    assert page.intent is None
    assert {item.status for item in page.monitoring} <= {"not-required", "ok"}
    assert page.chart.band is None


def test_create_app_then_init_app_again_replaces_settings_without_a_second_blueprint(
    tmp_path: Path, app: Flask
) -> None:
    import smartapp
    from smartapp.config import SmartSettings

    product = app.extensions["runtime.settings"]
    smartapp.init_app(app, product, smart_settings=SmartSettings(client_id="second"))
    assert app.extensions["smartapp"].smart.client_id == "second"
    assert list(app.blueprints).count("smartapp") == 1


def test_a_recent_liver_panel_showing_hys_law_is_never_up_to_date_in_the_timeline() -> None:
    """The panel was done days ago, so it is not due; but its results are Hy's law: the
    timeline says the critical finding, not a green "Up to date" beside it."""
    name = "hys_law_with_bilirubin_in_greek_mu_units.json"
    now = datetime.fromisoformat(expected_scenarios()[name]["now"])
    dashboard = build_dashboard(
        resources_of(read_fixture(name)), now=now, settings=DEFAULT_SETTINGS
    )
    liver = next(item for item in dashboard.monitoring if item.key == "liver")
    assert liver.status == "finding"
    assert liver.severity == "critical"
    assert liver.status_text == "Critical: transaminases raised on anastrozole"
    assert liver.repeat_by is None
    lipid = next(item for item in dashboard.monitoring if item.key == "lipid")
    assert lipid.status == "ok"  # a panel with no finding of its own stays up to date
