"""`anastrozole-cds report`: cards per rule per week, acceptance and override rates, reasons
(comments counted, never shown), cards kept away; per EHR and tenant; as CSV, and as one HTML
page whose SVG charts and tables Chromium renders without a single network request."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from flask import Flask

from anastrozole_cds.app import create_app
from anastrozole_cds.cli import main
from cds_hooks.codes import OVERRIDE_REASONS_SYSTEM
from runtime import schema
from runtime.settings import ProductSettings
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.cds_hooks.cds_helpers import (
    ISSUER,
    PATIENT_VIEW,
    Keys,
    bearer,
    call,
    hook_body,
    service_url,
    trt_man_prefetch,
)

COMMENT = "Spoke with Mr Harlan Quill at home, DOB 1978"  # what must never appear
OTHER_EHR = "https://other-ehr.example.org"


@pytest.fixture
def store_file(make_settings: Callable[..., ProductSettings], keys: Keys, tmp_path: Path) -> Path:
    """A store with a history: patient-views of two EHRs and a tenant, answered in every way."""
    database = tmp_path / "store.sqlite3"
    issuers = [
        {"iss": ISSUER, "jwks_file": str(keys.jwks_file)},
        {"iss": OTHER_EHR, "jwks_file": str(keys.jwks_file)},
    ]
    schema.upgrade(f"sqlite:///{database}")  # as `serve` does before its workers start
    app = create_app(make_settings(cards={}, issuers=issuers, store_url=f"sqlite:///{database}"))
    low = open_chart(app, keys, patient="p1")["estradiol-low"]
    answer(app, keys, low, reason="will-repeat-test", comment=COMMENT)
    open_chart(app, keys, patient="p1")  # estradiol-low kept away this time
    group = open_chart(app, keys, patient="p2")["monitoring-due"]
    liver = next(
        s for s in group["suggestions"] if "(rule liver-panel-due)" in orjson.dumps(s).decode()
    )
    answer(app, keys, group, accepted=liver["uuid"])
    low2 = open_chart(app, keys, patient="p3", tenant="clinic-a")["estradiol-low"]
    answer(app, keys, low2, tenant="clinic-a")  # a plain dismiss
    open_chart(app, keys, patient="p4", iss=OTHER_EHR)
    app.extensions["runtime.store"].dispose()
    return database


def open_chart(app: Flask, keys: Keys, *, patient: str, **sign: Any) -> dict[str, Any]:
    prefetch = trt_man_prefetch()
    for value in prefetch.values():
        for entry in (value or {}).get("entry", ()):
            entry["resource"]["subject"] = {"reference": f"Patient/{patient}"}
    prefetch["patient"] = {**prefetch["patient"], "id": patient}
    body = hook_body(prefetch=prefetch, patient_id=patient)
    response = call(app.test_client(), keys, PATIENT_VIEW, body, **sign)
    assert response.status_code == 200, response.json
    app.extensions["cds_hooks"].screen.log.flush()
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


def answer(
    app: Flask,
    keys: Keys,
    card: dict[str, Any],
    *,
    reason: str | None = None,
    comment: str | None = None,
    accepted: str | None = None,
    **sign: Any,
) -> None:
    item: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": "2026-11-01T12:05:00Z"}
    if accepted:
        item.update(outcome="accepted", acceptedSuggestions=[{"id": accepted}])
    else:
        item["outcome"] = "overridden"
        if reason:
            coding = {"code": reason, "system": OVERRIDE_REASONS_SYSTEM}
            item["overrideReason"] = {"reason": coding, "userComment": comment}
    token = keys.sign(f"{service_url(PATIENT_VIEW)}/feedback", **sign)
    response = app.test_client().post(
        f"/cds-services/{PATIENT_VIEW}/feedback", json={"feedback": [item]}, headers=bearer(token)
    )
    assert response.status_code == 200, response.json


def run_report(store_file: Path, *args: str) -> Any:
    config = store_file.parent / "report.toml"
    config.write_text(f'store_url = "sqlite:///{store_file}"\n')
    since = datetime.now(UTC).date().isoformat()
    return CliRunner().invoke(
        main, ["report", "--since", since, "--config", str(config), *args], env=_clean_env()
    )


def _clean_env() -> dict[str, str | None]:
    import os

    return {name: None for name in os.environ if name.upper().startswith("ANASTROZOLE_CDS_")}


def rows(output: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(output)))


def test_the_csv_counts_cards_answers_reasons_and_cards_kept_away(store_file: Path) -> None:
    result = run_report(store_file, "--format", "csv")
    assert result.exit_code == 0, result.output
    found = rows(result.stdout)
    mine = {(r["issuer"], r["tenant"], r["rule"]): r for r in found}
    low = mine[(ISSUER, "(none)", "estradiol-low")]
    assert (low["cards_shown"], low["overridden"], low["overridden_with_reason"]) == ("2", "1", "1")
    assert (low["kept_away"], low["comments"], low["reason:will-repeat-test"]) == ("1", "1", "1")
    assert low["override_rate"] == "0.500" and low["acceptance_rate"] == "0.000"
    liver = mine[(ISSUER, "(none)", "liver-panel-due")]
    assert (liver["cards_shown"], liver["accepted"], liver["acceptance_rate"]) == (
        "3",
        "1",
        "0.333",
    )
    lipid = mine[(ISSUER, "(none)", "lipid-panel-due")]
    assert lipid["accepted"] == "0"  # the liver panel was accepted, not the lipid panel
    tenant = mine[(ISSUER, "clinic-a", "estradiol-low")]
    assert (tenant["overridden"], tenant["overridden_with_reason"]) == ("1", "0")
    assert tenant["reason:(no reason)"] == "1"
    assert mine[(OTHER_EHR, "(none)", "estradiol-low")]["cards_shown"] == "1"
    monday = found[0]["week_start"]
    assert datetime.fromisoformat(monday).weekday() == 0
    assert COMMENT not in result.stdout


def test_the_html_report_is_one_file_with_charts_and_tables_and_no_comment_text(
    store_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "report.html"
    result = run_report(store_file, "--output", str(output))
    assert result.exit_code == 0, result.output
    page = output.read_text()
    assert page.count("<svg") == 3 and page.count("<table") == 5
    assert "<script" not in page.lower() and "src=" not in page and "@import" not in page
    assert "href=" not in page and "url(" not in page
    assert COMMENT not in page and "Harlan" not in page
    assert "Will repeat the test (will-repeat-test)" in page


def test_a_bad_since_or_a_store_without_cards_is_one_clear_line(tmp_path: Path) -> None:
    config = tmp_path / "report.toml"
    config.write_text(f'store_url = "sqlite:///{tmp_path / "empty.sqlite3"}"\n')
    bad = CliRunner().invoke(
        main, ["report", "--since", "last week", "--config", str(config)], env=_clean_env()
    )
    assert bad.exit_code == 2 and "not an ISO date" in bad.output
    empty = CliRunner().invoke(
        main, ["report", "--since", "2026-01-01", "--config", str(config)], env=_clean_env()
    )
    assert empty.exit_code == 1 and "cannot read the cards from the store" in empty.output
    assert "Traceback" not in empty.output


# -- in Chromium ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    import playwright.sync_api as playwright_api

    assert Path(CHROMIUM).exists(), "no /usr/bin/chromium: run `make browser`"
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.integration
def test_chromium_renders_the_reports_charts_and_tables_with_no_network_request(
    store_file: Path, tmp_path: Path, chromium: Any
) -> None:
    output = tmp_path / "report.html"
    assert run_report(store_file, "--output", str(output)).exit_code == 0
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.goto(output.as_uri())
    assert requests == [output.as_uri()]  # the file itself, nothing else
    for chart in ("chart-weeks", "chart-rules", "chart-reasons"):
        svg = page.locator(f"svg#{chart}")
        box = svg.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 100, chart
        assert svg.locator("rect").count() >= 2, chart  # a legend swatch and a bar at least
    bars = page.locator("svg#chart-rules rect[fill='#c2410c']")
    assert bars.count() >= 1 and (bars.first.bounding_box() or {}).get("width", 0) > 1
    assert page.locator("table#rules tr").count() >= 3
    assert page.locator("table#issuers").inner_text().count(OTHER_EHR) == 1
    context.close()
