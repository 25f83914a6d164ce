"""The dashboard page for one synthetic patient of sandbox/patients/, rendered by the app's
own template in a request context: no EHR, no sign-in, so page tests stay fast."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from flask import render_template

from clinical import DEFAULT_SETTINGS
from sandbox.patients import REFERENCE_NOW
from smartapp.dashboard import Dashboard, build_dashboard
from tests.conftest import resources_of
from tests.smartapp.smart_helpers import build_app

PATIENTS = Path(__file__).resolve().parents[2] / "sandbox" / "patients"


def patient_resources(name: str) -> list[dict[str, Any]]:
    """The resources of sandbox/patients/<name>.json."""
    return resources_of(json.loads((PATIENTS / f"{name}.json").read_text(encoding="utf-8")))


def dashboard_of(resources: list[dict[str, Any]]) -> Dashboard:
    return build_dashboard(resources, now=REFERENCE_NOW, settings=DEFAULT_SETTINGS)


def render_page(tmp_path: Path, page: Dashboard) -> str:
    """The dashboard HTML as the app serves it (stylesheet at /smart/static/app.css)."""
    app = build_app(tmp_path, now=REFERENCE_NOW)
    session = SimpleNamespace(
        need_patient_banner=True,
        smart_style_url=None,
        handle="h",
        iss="https://ehr.example/fhir",
        fhir_user=None,
    )
    with app.test_request_context("/smart/app/h"):
        return render_template(
            "smart_dashboard.html",
            page=page,
            session=session,
            launch_context=[],
            sign_out_token="t",
        )
