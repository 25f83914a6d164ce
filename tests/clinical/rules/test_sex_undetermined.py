"""sex-undetermined: sex for clinical use unknown or conflicting, so sex-specific advice is withheld."""

from __future__ import annotations

from typing import Any

import pytest

from clinical.finding import Severity
from clinical.rules.sex_undetermined import sex_undetermined
from tests.clinical.rules.builders import (
    anastrozole,
    fires,
    letrozole_only,
    patient,
    run,
)


@pytest.mark.parametrize(
    ("gender", "sex_parameter", "basis"),
    [
        ("unknown", None, "Patient.gender is unknown"),
        (None, None, "Patient.gender is missing"),
        ("other", None, "Patient.gender is other"),
        ("female", "specified", "sex parameter for clinical use is specified"),
        ("male", "unknown", "sex parameter for clinical use is unknown"),
    ],
)
def test_undetermined_sex_on_anastrozole_is_an_info_card_giving_the_reason(
    gender: str | None, sex_parameter: str | None, basis: str
) -> None:
    resources = [patient(gender, sex_parameter=sex_parameter), anastrozole()]
    finding = fires(sex_undetermined, resources)
    assert finding.severity is Severity.INFO
    assert finding.summary.startswith("Sex for clinical use undetermined")
    assert basis in finding.detail


@pytest.mark.parametrize(
    ("gender", "sex_parameter"),
    [("male", None), ("female", None), ("female", "female-typical"), ("unknown", "male-typical")],
)
def test_a_determined_sex_gives_no_card(gender: str, sex_parameter: str | None) -> None:
    assert (
        run(sex_undetermined, [patient(gender, sex_parameter=sex_parameter), anastrozole()]) == []
    )


def test_it_applies_to_any_aromatase_inhibitor() -> None:
    resources = letrozole_only()
    resources[0] = patient("unknown")
    assert run(sex_undetermined, resources) != []


@pytest.mark.parametrize(
    "resources",
    [
        pytest.param([patient("unknown")], id="no-medication"),
        pytest.param([patient("unknown"), anastrozole(status="stopped")], id="anastrozole-stopped"),
    ],
)
def test_no_card_when_not_on_an_aromatase_inhibitor(resources: list[dict[str, Any]]) -> None:
    assert run(sex_undetermined, resources) == []


def test_evidence_points_at_the_patient() -> None:
    order = anastrozole()
    order["subject"] = {"reference": "Patient/pt-42"}
    finding = fires(sex_undetermined, [patient("unknown", pid="pt-42"), order])
    assert finding.evidence == ("Patient/pt-42",)
