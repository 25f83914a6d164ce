"""PatientRecord extraction: tolerant of real EHR data, strict about what it compares."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from clinical.reader import build_record, iter_resources

NOW = datetime(2026, 11, 1, 12, tzinfo=UTC)
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"


def estradiol(obs_id: str = "e2", **fields: object) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2243-4", "display": "Estradiol"}]},
        "effectiveDateTime": "2026-10-01T08:00:00Z",
        "valueQuantity": {
            "value": 11,
            "unit": "pg/mL",
            "system": "http://unitsofmeasure.org",
            "code": "pg/mL",
        },
    }
    resource.update(fields)
    return resource


def anastrozole(**fields: object) -> dict[str, object]:
    resource: dict[str, object] = {
        "resourceType": "MedicationRequest",
        "id": "ana",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [
                {"system": RXNORM, "code": "199224", "display": "anastrozole 1 MG Oral Tablet"}
            ]
        },
        "authoredOn": "2026-01-10",
        "dosageInstruction": [
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "mg"}}],
            }
        ],
    }
    resource.update(fields)
    return resource


def test_estradiol_in_pmol_per_litre_is_converted_to_pg_per_ml() -> None:
    record = build_record([estradiol(valueQuantity={"value": 55, "unit": "pmol/L"})], NOW)
    result = record.latest("estradiol-serum")
    assert result is not None
    assert result.value == pytest.approx(55 / 3.671)
    assert result.unit == "pg/mL"


def test_testosterone_in_nmol_per_litre_is_converted_to_ng_per_dl() -> None:
    obs = estradiol(
        code={"coding": [{"system": LOINC, "code": "2986-8"}]},
        valueQuantity={"value": 10, "unit": "nmol/L"},
    )
    result = build_record([obs], NOW).latest("testosterone-total")
    assert result is not None
    assert result.value == pytest.approx(288.4)


def test_unknown_unit_is_left_out_and_said() -> None:
    record = build_record([estradiol(valueQuantity={"value": 11, "unit": "mIU/mL"})], NOW)
    assert record.latest("estradiol-serum") is None
    assert record.results("estradiol-serum")[0].unit_unknown
    assert any("mIU/mL" in gap and "Observation/e2" in gap for gap in record.data_gaps)


@pytest.mark.parametrize(
    ("value", "comparator", "number"),
    [
        ({"valueString": "<5 pg/mL"}, "<", 5.0),
        ({"valueString": " <= 2,5 pg/mL"}, "<=", 2.5),
        ({"valueQuantity": {"value": 5, "comparator": "<", "unit": "pg/mL"}}, "<", 5.0),
        ({"valueString": "12 pg/mL"}, None, 12.0),
    ],
)
def test_comparators_and_value_strings_are_read(
    value: dict[str, object], comparator: str | None, number: float
) -> None:
    obs = estradiol()
    del obs["valueQuantity"]
    obs.update(value)
    result = build_record([obs], NOW).latest("estradiol-serum")
    assert result is not None
    assert (result.comparator, result.value) == (comparator, number)


def test_a_less_than_result_is_below_its_bound_but_cannot_tell_below_a_lower_one() -> None:
    obs = estradiol(valueString="<30 pg/mL")
    del obs["valueQuantity"]
    result = build_record([obs], NOW).latest("estradiol-serum")
    assert result is not None
    assert result.is_below(30) is True
    assert result.is_below(20) is None


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled", "registered"])
def test_results_with_void_status_are_ignored(status: str) -> None:
    assert build_record([estradiol(status=status)], NOW).results("estradiol-serum") == []


def test_final_is_preferred_over_preliminary_on_the_same_day() -> None:
    preliminary = estradiol("p", status="preliminary", effectiveDateTime="2026-10-01T09:00:00Z")
    final = estradiol(
        "f", effectiveDateTime="2026-10-01T08:00:00Z", valueQuantity={"value": 25, "unit": "pg/mL"}
    )
    result = build_record([preliminary, final], NOW).latest("estradiol-serum")
    assert result is not None and result.ref == "Observation/f"


@pytest.mark.parametrize(
    "dates",
    [
        {"effectivePeriod": {"start": "2026-09-03"}},
        {"issued": "2026-09-03T10:11:12+02:00"},
        {"effectiveInstant": "2026-09-03T00:00:00Z"},
    ],
)
def test_date_comes_from_period_instant_or_issued(dates: dict[str, object]) -> None:
    obs = estradiol()
    del obs["effectiveDateTime"]
    obs.update(dates)
    result = build_record([obs], NOW).latest("estradiol-serum")
    assert result is not None and result.date.date().isoformat().startswith("2026-09-0")


def test_results_contained_in_a_diagnostic_report_take_its_date() -> None:
    alt = {
        "resourceType": "Observation",
        "id": "alt",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "1742-6"}]},
        "valueQuantity": {"value": 150, "unit": "U/L"},
        "referenceRange": [{"high": {"value": 40, "unit": "U/L"}}],
    }
    report = {
        "resourceType": "DiagnosticReport",
        "id": "hfp",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "24325-3"}]},
        "effectiveDateTime": "2026-08-15",
        "contained": [alt],
        "result": [{"reference": "#alt"}],
    }
    record = build_record([report], NOW)
    result = record.latest("liver-transaminases")
    assert result is not None
    assert (result.value, result.reference_high, result.ref) == (
        150.0,
        40.0,
        "DiagnosticReport/hfp",
    )
    assert result.date.date().isoformat() == "2026-08-15"
    assert record.latest_done("hepatic-function-panel") is not None


def test_drug_coded_only_by_text_is_matched() -> None:
    order = anastrozole(medicationCodeableConcept={"text": "Anastrozole 0.5 mg compounded capsule"})
    (course,) = build_record([order], NOW).courses("anastrozole")
    assert course.matched_by == "text"


def test_medication_reference_to_a_medication_resource_is_followed() -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": RXNORM, "code": "151124", "display": "Arimidex 1 MG"}]},
    }
    order = anastrozole(medicationReference={"reference": "Medication/m1"})
    del order["medicationCodeableConcept"]
    (course,) = build_record([medication, order], NOW).courses("anastrozole")
    assert course.dose.weekly_mg == pytest.approx(7)


def test_reason_reference_names_the_indication() -> None:
    condition = {
        "resourceType": "Condition",
        "id": "bc",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    }
    order = anastrozole(reasonReference=[{"reference": "Condition/bc"}])
    (course,) = build_record([condition, order], NOW).courses("anastrozole")
    assert "breast-cancer" in course.reasons


def test_draft_order_starts_now_and_is_current() -> None:
    (course,) = build_record([anastrozole(status="draft")], NOW).current_courses("anastrozole")
    assert course.is_draft and course.start == NOW


@pytest.mark.parametrize(
    ("status", "current"),
    [("active", True), ("on-hold", True), ("completed", False), ("stopped", False)],
)
def test_medication_status_decides_whether_it_is_current(status: str, current: bool) -> None:
    record = build_record([anastrozole(status=status)], NOW)
    assert bool(record.current_courses("anastrozole")) is current


def test_entered_in_error_medication_is_ignored() -> None:
    assert build_record([anastrozole(status="entered-in-error")], NOW).courses("anastrozole") == []


def spcu(code: str) -> dict[str, object]:
    return {
        "url": "http://hl7.org/fhir/StructureDefinition/patient-sexParameterForClinicalUse",
        "extension": [
            {
                "url": "value",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/sex-parameter-for-clinical-use",
                            "code": code,
                        }
                    ]
                },
            }
        ],
    }


@pytest.mark.parametrize(
    ("gender", "extensions", "sex"),
    [
        ("male", [], "male"),
        ("female", [], "female"),
        ("unknown", [], None),
        ("other", [], None),
        (None, [], None),
        ("female", [spcu("female-typical")], "female"),
        (None, [spcu("male-typical")], "male"),
        # a current parameter wins over gender (Gender Harmony: many transgender patients)
        ("male", [spcu("female-typical")], "female"),
        ("female", [spcu("male-typical")], "male"),
        ("female", [spcu("specified")], None),
        ("male", [spcu("unknown")], None),
        ("female", [spcu("female-typical"), spcu("male-typical")], None),
    ],
)
def test_sex_for_clinical_use(
    gender: str | None, extensions: list[object], sex: str | None
) -> None:
    patient: dict[str, object] = {"resourceType": "Patient", "id": "p", "extension": extensions}
    if gender:
        patient["gender"] = gender
    assert build_record([patient], NOW).sex.value == sex


def test_sex_parameter_out_of_its_period_is_not_used() -> None:
    expired = spcu("male-typical")
    expired["extension"].append({"url": "period", "valuePeriod": {"end": "2020-01-01"}})  # type: ignore[attr-defined]
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "extension": [expired]}
    assert build_record([patient], NOW).sex.value == "female"


def test_refuted_condition_is_ignored_and_resolved_one_is_inactive() -> None:
    def condition(cid: str, **fields: object) -> dict[str, object]:
        base: dict[str, object] = {
            "resourceType": "Condition",
            "id": cid,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E29.1"}]},
        }
        base.update(fields)
        return base

    status = "http://terminology.hl7.org/CodeSystem/condition-"
    record = build_record(
        [
            condition(
                "a",
                verificationStatus={
                    "coding": [{"system": status + "ver-status", "code": "refuted"}]
                },
            ),
            condition(
                "b",
                clinicalStatus={"coding": [{"system": status + "clinical", "code": "resolved"}]},
            ),
        ],
        NOW,
    )
    assert [c.ref for c in record.conditions] == ["Condition/b"]
    assert record.conditions_in("hypogonadism-male") == []


def test_icd10_code_without_dot_and_family_code_are_matched() -> None:
    codes = ["C50911", "C50.9"]
    resources = [
        {
            "resourceType": "Condition",
            "id": c,
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": c}]},
        }
        for c in codes
    ]
    assert len(build_record(resources, NOW).conditions_in("breast-cancer")) == 2


def test_dexa_is_found_as_procedure_imaging_study_and_t_score() -> None:
    resources = [
        {
            "resourceType": "Procedure",
            "id": "dxa",
            "status": "completed",
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77080"}]},
            "performedDateTime": "2025-01-01",
        },
        {
            "resourceType": "ImagingStudy",
            "id": "img",
            "status": "available",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "BMD"}],
            "started": "2025-06-01",
        },
        {
            "resourceType": "Observation",
            "id": "t",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": "38267-1"}]},
            "effectiveDateTime": "2026-02-01",
            "valueQuantity": {"value": -2.7},
        },
    ]
    record = build_record(resources, NOW)
    last = record.last_dexa()
    assert last is not None and last.ref == "Observation/t"
    assert {event.ref for event in record.dexa} == {
        "Procedure/dxa",
        "ImagingStudy/img",
        "Observation/t",
    }
    assert record.latest("dxa-tscore") is not None


@pytest.mark.parametrize(
    "junk",
    [
        None,
        42,
        "Bundle",
        [None, 1, "x"],
        {
            "resourceType": "Bundle",
            "entry": [{"resource": None}, 5, {"resource": {"resourceType": 7}}],
        },
        {"resourceType": "Observation", "code": "2243-4", "valueQuantity": "11"},
        {
            "resourceType": "MedicationRequest",
            "status": ["active"],
            "dosageInstruction": {"text": 5},
        },
        {"resourceType": "Patient", "extension": [None, {"url": None}], "birthDate": 1990},
    ],
)
def test_malformed_input_gives_an_empty_or_partial_record_not_an_error(junk: object) -> None:
    build_record(junk, NOW)


ABSOLUTE = "https://ehr.example.org/fhir"


@pytest.mark.parametrize(
    "reference",
    ["Medication/m1", "Medication/m1/_history/3", f"{ABSOLUTE}/Medication/m1",
     f"{ABSOLUTE}/Medication/m1/_history/3", "urn:uuid:m1"],
)  # fmt: skip
def test_a_medication_reference_is_followed_relative_absolute_versioned_or_as_a_uuid(
    reference: str,
) -> None:
    medication = {
        "resourceType": "Medication",
        "id": "m1",
        "code": {"coding": [{"system": RXNORM, "code": "151124", "display": "Arimidex 1 MG"}]},
    }
    order = anastrozole(medicationReference={"reference": reference})
    del order["medicationCodeableConcept"]
    (course,) = build_record([medication, order], NOW).courses("anastrozole")
    assert course.dose.weekly_mg == pytest.approx(7)


def _transaction(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": url, "resource": resource} for url, resource in entries],
    }


ARIMIDEX = {
    "resourceType": "Medication",
    "code": {"coding": [{"system": RXNORM, "code": "151124", "display": "Arimidex 1 MG"}]},
}


def test_an_entry_with_no_id_is_named_by_its_urn_uuid_full_url() -> None:
    """A transaction Bundle's new resources have no id; references name their fullUrl."""
    order = anastrozole(medicationReference={"reference": "urn:uuid:5f1b"})
    del order["medicationCodeableConcept"], order["id"]
    bundle = _transaction(("urn:uuid:5f1b", ARIMIDEX), ("urn:uuid:9c2e", order))
    (course,) = build_record(bundle, NOW).courses("anastrozole")
    assert course.dose.weekly_mg == pytest.approx(7)
    assert course.ref == "MedicationRequest/9c2e"
    assert "id" not in bundle["entry"][0]["resource"]  # the input is left as it was


def test_an_entry_keeps_its_own_id_whatever_its_full_url() -> None:
    medication = {**ARIMIDEX, "id": "m1"}
    (resource,) = iter_resources(_transaction(("urn:uuid:other", medication)))
    assert resource is medication


@pytest.mark.parametrize("full_url", ["urn:uuid:", "https://ehr.example.org/fhir/Medication/m1", 7])
def test_only_a_urn_uuid_full_url_names_an_entry(full_url: Any) -> None:
    (resource,) = iter_resources(_transaction((full_url, ARIMIDEX)))
    assert resource is ARIMIDEX


@pytest.mark.parametrize(
    "reference", ["Condition/bc/_history/1", f"{ABSOLUTE}/Condition/bc", "urn:uuid:bc"]
)
def test_a_reason_reference_is_followed_absolute_versioned_or_as_a_uuid(reference: str) -> None:
    condition = {
        "resourceType": "Condition",
        "id": "bc",
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "C50.911"}]},
    }
    order = anastrozole(reasonReference=[{"reference": reference}])
    (course,) = build_record([condition, order], NOW).courses("anastrozole")
    assert "breast-cancer" in course.reasons


@pytest.mark.parametrize("reference", [f"{ABSOLUTE}/Observation/e2", "urn:uuid:e2"])
def test_a_result_named_by_an_absolute_reference_takes_its_reports_date(reference: str) -> None:
    estradiol = {
        "resourceType": "Observation",
        "id": "e2",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "2243-4"}]},
        "valueQuantity": {"value": 12, "unit": "pg/mL"},
    }
    report = {
        "resourceType": "DiagnosticReport",
        "id": "r1",
        "status": "final",
        "code": {"text": "Estradiol"},
        "effectiveDateTime": "2026-08-15",
        "result": [{"reference": reference}],
    }
    result = build_record([report, estradiol], NOW).latest("estradiol-serum")
    assert result is not None and result.date.date().isoformat() == "2026-08-15"


@pytest.mark.parametrize("end", ["2026-11", "2026-11-01", "2026"])
def test_a_course_ending_on_a_date_runs_to_the_end_of_that_day_month_or_year(end: str) -> None:
    """A FHIR date is a whole day (or month, or year): a course that ends "2026-11-01" is
    still running at noon that day."""
    order = anastrozole(dispenseRequest={"validityPeriod": {"start": "2026-01-10", "end": end}})
    assert build_record([order], NOW).current_courses("anastrozole") != []


def test_a_course_that_ended_the_day_before_is_over() -> None:
    order = anastrozole(dispenseRequest={"validityPeriod": {"end": "2026-10-31"}})
    assert build_record([order], NOW).current_courses("anastrozole") == []


def test_a_placeholder_date_of_year_one_is_read_as_no_date() -> None:
    """ "0001-01-01" stands for "no date" in some exports; read as a date it broke the date
    arithmetic of the rules."""
    order = anastrozole(authoredOn="0001-01-01")
    (course,) = build_record([order], NOW).current_courses("anastrozole")
    assert course.start is None


def test_an_order_not_to_give_the_drug_is_not_a_course() -> None:
    assert build_record([anastrozole(doNotPerform=True)], NOW).courses("anastrozole") == []


def test_an_order_not_to_do_a_test_is_not_an_open_order() -> None:
    order = {
        "resourceType": "ServiceRequest",
        "id": "no-dxa",
        "status": "active",
        "intent": "order",
        "doNotPerform": True,
        "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77080"}]},
        "authoredOn": "2026-10-01",
    }
    assert build_record([order], NOW).open_orders("dxa-procedure") == []


@pytest.mark.parametrize("unit", ["pg/mL{calc}", "pg/mL {LC-MS/MS}"])
def test_a_ucum_annotation_does_not_change_the_unit(unit: str) -> None:
    result = build_record([estradiol(valueQuantity={"value": 12, "code": unit})], NOW)
    (read,) = result.results("estradiol-serum")
    assert read.value == 12 and read.unit == "pg/mL"


@pytest.mark.parametrize(
    ("text", "value"), [("12.0 pg/mL (L)", 12), ("44 pmol/L L", 44 / 3.671), ("9 pg/mL *", 9)]
)
def test_an_abnormal_flag_after_a_text_result_is_not_part_of_its_unit(
    text: str, value: float
) -> None:
    (read,) = build_record([estradiol(valueQuantity=None, valueString=text)], NOW).results(
        "estradiol-serum"
    )
    assert read.value == pytest.approx(value)


def test_a_pmol_per_litre_text_result_keeps_its_unit() -> None:
    (read,) = build_record([estradiol(valueQuantity=None, valueString="44 pmol/L")], NOW).results(
        "estradiol-serum"
    )
    assert read.value == pytest.approx(44 / 3.671)


def test_a_result_dated_after_today_is_left_out_and_said() -> None:
    future = estradiol("e2-future", effectiveDateTime="2027-05-01")
    record = build_record([estradiol(), future], NOW)
    assert [r.ref for r in record.results("estradiol-serum")] == ["Observation/e2"]
    assert any(
        "e2-future" in gap and "after today" in gap for gap in record.gaps_for("estradiol-serum")
    )


def test_a_result_earlier_today_in_a_zone_behind_utc_is_kept() -> None:
    earlier = estradiol("e2-earlier", effectiveDateTime="2026-11-01T06:00:00-05:00")  # 11:00 UTC
    assert build_record([earlier], NOW).results("estradiol-serum") != []


def test_a_result_later_than_now_in_another_time_zone_is_left_out_and_said() -> None:
    """20:00 at -05:00 is 01:00 UTC tomorrow: after now, compared as aware instants."""
    later = estradiol("e2-later", effectiveDateTime="2026-11-01T20:00:00-05:00")
    record = build_record([later], NOW)
    assert record.results("estradiol-serum") == []
    assert any("after today" in gap for gap in record.gaps_for("estradiol-serum"))


def test_a_result_dated_today_without_a_time_is_kept() -> None:
    today = estradiol("e2-today", effectiveDateTime="2026-11-01")
    assert build_record([today], NOW).results("estradiol-serum") != []


def test_the_tablet_strength_comes_from_the_coding_when_the_text_has_none() -> None:
    """Cerner-style: text "anastrozole", the SCD coding names the 1 mg tablet; "1 TAB daily"
    is then 7 mg a week."""
    order = anastrozole(
        medicationCodeableConcept={
            "coding": [
                {"system": RXNORM, "code": "199224", "display": "anastrozole 1 MG Oral Tablet"}
            ],
            "text": "anastrozole",
        },
        dosageInstruction=[
            {
                "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "TAB"}}],
            }
        ],
    )
    (course,) = build_record([order], NOW).courses("anastrozole")
    assert course.dose.weekly_mg == 7


def dxa_study_with_components() -> dict[str, object]:
    """One DXA study Observation with a T-score per site as components."""

    def t_score(code: str, site: str, value: float) -> dict[str, object]:
        return {
            "code": {
                "coding": [{"system": LOINC, "code": code, "display": f"DXA {site} [T-score]"}]
            },
            "valueQuantity": {"value": value, "unit": "{T-score}", "code": "{T-score}"},
        }

    return {
        "resourceType": "Observation",
        "id": "dxa-study",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "38269-7", "display": "DXA study"}]},
        "effectiveDateTime": "2026-03-01",
        "component": [t_score("38267-1", "Lumbar spine", -2.9), t_score("38264-8", "Hip", -2.1)],
    }


def test_t_scores_sent_as_components_of_a_dxa_study_are_read() -> None:
    record = build_record([dxa_study_with_components()], NOW)
    scores = record.results("dxa-tscore")
    assert sorted(r.value for r in scores if r.value is not None) == [-2.9, -2.1]
    assert {r.ref for r in scores} == {"Observation/dxa-study"}
    assert record.last_dexa() is not None


def test_components_are_read_from_bundle_bytes_as_from_resources() -> None:
    from clinical import evaluate, evaluate_json

    resources = [
        {"resourceType": "Patient", "id": "pt", "gender": "female", "birthDate": "1955-01-01"},
        anastrozole(),
        dxa_study_with_components(),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in resources],
    }
    findings = evaluate_json(json.dumps(bundle).encode(), now=NOW)
    assert findings == evaluate(resources, now=NOW)
    assert "bone-loss-on-ai" in {f.rule_id for f in findings}
