"""`make run`: the demo starts everything on 127.0.0.1, shows cards, launches the app, and
Ctrl-C leaves nothing running."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from click.testing import CliRunner

from anastrozole_cds.cli import main
from sandbox.patients import patient
from sandbox.processes import free_port
from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.cds_hooks.card_defaults import cards_by_default

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[subprocess.Popen[str], str]]:
    port, ehr_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "anastrozole_cds.cli", "demo", "--port", str(port),
         "--ehr-port", str(ehr_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    url = None
    deadline = time.monotonic() + 120
    while url is None and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            pytest.fail("the demo exited before printing its URL")
        found = re.search(r"Open (http://127\.0\.0\.1:\d+/)", line)
        url = found.group(1) if found else None
    assert url == f"http://127.0.0.1:{ehr_port}/"
    process.product_url = f"http://127.0.0.1:{port}/healthz"  # type: ignore[attr-defined]
    fhir = re.search(r"FHIR server with the demo patients: (http://127\.0\.0\.1:\d+/fhir)",
                     process.stdout.readline())  # fmt: skip
    process.fhir_url = fhir.group(1) if fhir else None  # type: ignore[attr-defined]
    yield process, url
    if process.poll() is None:  # a test failed before Ctrl-C: stop it as a user would
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_demo_prints_one_url_that_lists_every_patient(demo: tuple[object, str]) -> None:
    _, url = demo
    page = requests.get(url, timeout=10).text
    assert page.count("<a href='/patients/") == 16


def test_the_demo_prints_its_fhir_server_for_check(
    demo: tuple[subprocess.Popen[str], str],
) -> None:
    process, _ = demo
    fhir_url = process.fhir_url  # type: ignore[attr-defined]
    assert fhir_url is not None, "the demo did not print its FHIR server"
    item = patient("trt-low-e2")
    result = CliRunner().invoke(
        main, ["check", "--json", "--fhir-server", fhir_url, "--patient", item.patient_id]
    )
    assert result.exit_code == 0, result.output
    cards = orjson.loads(result.stdout)["cards"]
    assert {card["source"]["topic"]["code"]: card["indicator"] for card in cards} == (
        cards_by_default("patient-view", item.expected_cards, intent_unclear=False)
    )


def test_a_patient_page_shows_the_cards_its_bundle_states(demo: tuple[object, str]) -> None:
    _, url = demo
    page = requests.get(f"{url}patients/trt-low-e2", timeout=30).text
    stated = patient("trt-low-e2").expected_cards  # its intent is TRT modulation
    expected = cards_by_default("patient-view", stated, intent_unclear=False)
    shown = re.findall(r"(CRITICAL|WARNING|INFO) <span class='topic'>([a-z-]+)<", page)
    assert {rule: level.lower() for level, rule in shown} == expected


def test_the_launch_button_runs_a_smart_ehr_launch_to_the_dashboard(
    demo: tuple[object, str],
) -> None:
    _, url = demo
    browser = requests.Session()
    page = browser.get(f"{url}patients/trt-low-e2", timeout=30).text
    launch = re.search(r"href='(/ehr/launch[^']*)'", page)
    assert launch is not None
    dashboard = browser.get(url.rstrip("/") + launch.group(1).replace("&amp;", "&"), timeout=60)
    assert dashboard.status_code == 200
    assert "/smart/app/" in dashboard.url
    assert "Estradiol 11 pg/mL on anastrozole (TRT)" in dashboard.text


def test_the_launch_works_in_a_real_browser(demo: tuple[object, str], tmp_path: Path) -> None:
    """The newcomer's path, in Chromium: a patient's chart, the launch button, the dashboard."""
    from playwright.sync_api import sync_playwright

    _, url = demo
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1024, "height": 1400})
        page.goto(f"{url}patients/trt-low-e2")
        page.get_by_text("Open anastrozole monitoring (SMART EHR launch)").click()
        page.wait_for_url("**/smart/app/**", timeout=30_000)
        page.screenshot(path=str(tmp_path / "demo-dashboard.png"), full_page=True)
        assert page.get_by_text("Estradiol 11 pg/mL on anastrozole (TRT)").count() >= 1
        browser.close()


def test_nothing_outlives_a_demo_killed_outright(tmp_path: Path) -> None:
    """SIGKILL gives the demo no chance to clean up: its servers must still go."""
    ehr_port, port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "anastrozole_cds.cli", "demo", "--port", str(port),
         "--ehr-port", str(ehr_port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while "Open http://" not in process.stdout.readline():
        assert process.poll() is None and time.monotonic() < deadline, "the demo did not start"
    process.kill()
    process.wait()
    pattern = f"anastrozole-cds-demo-{ehr_port}-"
    for _ in range(40):  # the servers get SIGTERM from the kernel and shut down
        if subprocess.run(["pgrep", "-f", pattern], capture_output=True, check=False).stdout:
            time.sleep(0.5)
    left = subprocess.run(["pgrep", "-fa", pattern], capture_output=True, text=True, check=False)
    assert left.stdout == "", f"still running: {left.stdout}"
    for _ in range(40):  # the product (gunicorn) stops its workers first
        try:
            requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
        except requests.ConnectionError:
            break
        time.sleep(0.5)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1)


def test_ctrl_c_stops_everything(demo: tuple[subprocess.Popen[str], str]) -> None:
    process, url = demo
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 0
    ehr_port = url.rstrip("/").rsplit(":", 1)[1]
    left = subprocess.run(  # this demo's processes carry its folder, named by its EHR port
        ["pgrep", "-f", f"anastrozole-cds-demo-{ehr_port}-"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert left.stdout == "", f"still running: {left.stdout}"
    for stopped in (url, process.product_url):  # the sandbox EHR and the product
        with pytest.raises(requests.ConnectionError):
            requests.get(stopped, timeout=2)
