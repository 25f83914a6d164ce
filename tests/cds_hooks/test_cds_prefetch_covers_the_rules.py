"""The prefetch asks for what the rules read (issue 17: FSH and the last period, testosterone
beside a low estradiol, doses given in clinic, liver results in a metabolic panel), and what
an EHR leaves out is said: a slice a rule cannot be judged without withholds it; an optional
one (doses given in clinic, which many EHRs never offer) is said on the cards that read it."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from cds_hooks.services import prefetch_templates
from clinical.valuesets import load as load_valuesets
from tests.cds_hooks.cds_fhir_stub import prefetch_for
from tests.cds_hooks.cds_helpers import (
    NOW,
    PATIENT_VIEW,
    Keys,
    call,
    hook_body,
)
from tests.conftest import read_fixture, resources_of

PREMENOPAUSAL = "woman_premenopausal_anastrozole_no_ovarian_suppression.json"
INFERTILITY = "man_infertility_anastrozole_clomiphene.json"  # testosterone with each estradiol
CLINIC_DOSES = "doses given in clinic (MedicationAdministration) could not be read"


def woman_prefetch() -> tuple[str, dict[str, Any]]:
    resources = resources_of(read_fixture(PREMENOPAUSAL))
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    return patient_id, prefetch_for(resources, prefetch_templates(), patient_id, NOW.date())


def cards(client: FlaskClient, keys: Keys, patient_id: str, prefetch: dict[str, Any]) -> Any:
    response = call(client, keys, PATIENT_VIEW, hook_body(patient_id=patient_id, prefetch=prefetch))
    assert response.status_code == 200, response.json
    return {card["source"]["topic"]["code"]: card for card in response.json["cards"]}


def test_a_woman_judged_without_the_doses_given_in_clinic_is_told_they_were_not_read(
    client: FlaskClient, keys: Keys
) -> None:
    """A GnRH agonist depot given in clinic is often recorded only as a MedicationAdministration:
    "without ovarian suppression" must say that those could not be seen."""
    patient_id, prefetch = woman_prefetch()
    del prefetch["medicationAdministrations"]  # an EHR that offers no such search
    shown = cards(client, keys, patient_id, prefetch)
    assert shown["premenopausal-on-ai"]["indicator"] == "critical"  # judged, not withheld
    assert CLINIC_DOSES in shown["premenopausal-on-ai"]["detail"]
    assert "data-incomplete" not in shown
    assert all(CLINIC_DOSES not in card["detail"] for topic, card in shown.items()
               if topic != "premenopausal-on-ai")  # fmt: skip


def test_with_the_doses_given_in_clinic_sent_nothing_is_said_about_them(
    client: FlaskClient, keys: Keys
) -> None:
    patient_id, prefetch = woman_prefetch()
    assert "medicationAdministrations" in prefetch  # sent, as null: the EHR has none
    shown = cards(client, keys, patient_id, prefetch)
    assert CLINIC_DOSES not in shown["premenopausal-on-ai"]["detail"]


def test_menopause_tests_left_out_withhold_the_premenopausal_check_and_say_so(
    client: FlaskClient, keys: Keys
) -> None:
    """Under 60, FSH and the last period decide menopause (NCCN): without them, no guess."""
    patient_id, prefetch = woman_prefetch()
    del prefetch["menopauseTests"]
    shown = cards(client, keys, patient_id, prefetch)
    assert "premenopausal-on-ai" not in shown
    detail = shown["data-incomplete"]["detail"]
    assert "FSH and last menstrual period" in detail and "`premenopausal-on-ai`" in detail


@pytest.mark.parametrize(
    ("key", "valuesets"),
    [
        ("estradiol", ("estradiol-serum", "testosterone-total")),  # the T/E2 line
        ("menopauseTests", ("fsh", "last-menstrual-period")),
        ("liverTests", ("hepatic-function-panel",)),  # a metabolic panel holding ALT and AST
        ("oophorectomies", ("bilateral-oophorectomy",)),
    ],
)
def test_each_slice_is_asked_for_by_the_codes_of_what_the_rules_read(
    key: str, valuesets: tuple[str, ...]
) -> None:
    (template,) = [t for t in prefetch_templates() if t.key == key]
    query = template.resolve("p1", NOW.date())
    for valueset in valuesets:
        for coding in load_valuesets().codes(valueset):
            assert coding.code in query, f"{key} does not ask for {valueset} {coding.code}"


def test_a_testosterone_drawn_with_the_low_estradiol_gives_the_ratio_on_the_card(
    client: FlaskClient, keys: Keys
) -> None:
    """Infertility work-ups read T/E2 (Raman & Schlegel 2002): the testosterone drawn with
    the estradiol comes in the estradiol key, so a prefetching EHR sends it."""
    resources = resources_of(read_fixture(INFERTILITY))
    newest_e2 = next(r for r in resources if r.get("id") == "obs-roland-e2")
    newest_e2["valueQuantity"]["value"] = 12  # below the floor, testosterone drawn with it
    patient_id = next(r["id"] for r in resources if r["resourceType"] == "Patient")
    prefetch = prefetch_for(resources, prefetch_templates(), patient_id, NOW.date())
    shown = cards(client, keys, patient_id, prefetch)
    assert "T/E2 ratio" in shown["estradiol-low"]["detail"]


def test_a_deceased_patient_gets_no_card_not_even_one_saying_data_is_missing(
    client: FlaskClient, keys: Keys
) -> None:
    resources = resources_of(read_fixture(PREMENOPAUSAL))
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    patient["deceasedDateTime"] = "2026-09-30"
    prefetch = prefetch_for(resources, prefetch_templates(), patient["id"], NOW.date())
    del prefetch["menopauseTests"]  # a slice left out: would withhold premenopausal-on-ai
    assert cards(client, keys, patient["id"], prefetch) == {}
