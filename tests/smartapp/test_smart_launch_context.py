"""The launch's fhirContext in the page's footer: SMART 2.1 objects (`reference`, `canonical`)
and SMART 2.0.0's plain reference strings alike; anything else is left out."""

from __future__ import annotations

import re
from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from tests.smartapp.smart_helpers import Sandbox, launch_and_sign_in


@pytest.mark.parametrize(
    ("fhir_context", "shown"),
    [
        (["DiagnosticReport/dr-1"], ["DiagnosticReport/dr-1"]),  # SMART 2.0.0
        ([{"reference": "DiagnosticReport/dr-1"}], ["DiagnosticReport/dr-1"]),
        (
            [{"canonical": "http://example.org/Questionnaire/q|1"}, "ServiceRequest/sr-2"],
            ["http://example.org/Questionnaire/q|1", "ServiceRequest/sr-2"],
        ),
        (["", 7, None, {"type": "Patient"}, "Condition/c-3"], ["Condition/c-3"]),
    ],
)
def test_the_fhir_context_references_are_shown_in_either_form(
    client: FlaskClient,
    sandbox: Sandbox,
    ehr: responses.RequestsMock,
    fhir_context: list[Any],
    shown: list[str],
) -> None:
    target = launch_and_sign_in(client, sandbox, encounter="enc-9", fhir_context=fhir_context)
    page = client.get(target).get_data(as_text=True)
    assert re.findall(r"<span>Context: (.*?)</span>", page) == ["Encounter/enc-9", *shown]
