"""Third audit (EHR-shaped charts): each test fails without its fix. The charts in
tests/fixtures/ hold the same classes end to end; these pin each behaviour alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main
from clinical import MixedPatientsError, build_record, evaluate
from clinical.dosage import parse_dosage
from clinical.rules.ai_interaction import ai_interaction
from clinical.rules.anastrozole_intent import anastrozole_intent
from clinical.rules.bone_loss_on_ai import bone_loss_on_ai
from clinical.rules.dexa_due import dexa_due
from clinical.rules.estradiol_high import estradiol_high
from clinical.rules.liver_injury_on_ai import liver_injury_on_ai
from clinical.rules.premenopausal_on_ai import premenopausal_on_ai
from clinical.rules.sex_undetermined import sex_undetermined
from clinical.units import normalise
from clinical.valuesets import load
from tests.clinical.rules.builders import (
    ANASTROZOLE,
    BREAST_CANCER,
    GOSERELIN,
    HYPOGONADISM,
    ICD10CM,
    LOINC,
    NOW,
    OSTEOPOROSIS,
    RXNORM,
    SNOMED,
    TAMOXIFEN,
    ago,
    ahead,
    alt,
    anastrozole,
    anastrozole_daily,
    bilirubin,
    condition,
    drug,
    estradiol,
    fires,
    lab,
    man,
    medication,
    oncology_woman,
    patient,
    run,
    statement,
    trt_course,
    woman,
)

Resource = dict[str, Any]


def on(*resources: Resource) -> list[str]:
    return [f.rule_id for f in evaluate(list(resources), now=NOW)]


# -- item 6: one patient at a time -------------------------------------------------------------
def test_a_bundle_about_two_patients_is_refused_naming_both() -> None:
    """A man's leuprolide must never become a woman's ovarian suppression."""
    her = oncology_woman(age=45)
    him = patient("male", pid="him")
    leuprolide = drug(GOSERELIN, "his-depot")
    leuprolide["subject"] = {"reference": "Patient/him"}
    with pytest.raises(MixedPatientsError, match=r"Patient/him, Patient/pt"):
        evaluate([*her, him, leuprolide], now=NOW)


def test_a_resource_naming_another_patient_is_refused_even_without_its_patient() -> None:
    order = anastrozole()
    order["subject"] = {"reference": "https://ehr.example/fhir/Patient/other"}
    with pytest.raises(MixedPatientsError):
        evaluate([*oncology_woman(), order], now=NOW)


def test_resources_naming_no_patient_or_in_an_untold_way_are_the_one_patients() -> None:
    order = anastrozole_daily()
    del order["subject"]
    conditional = condition(BREAST_CANCER, rid="bc")
    conditional["subject"] = {"reference": "Patient?identifier=urn:mrn|123"}
    assert "anastrozole-intent" in on(woman(), conditional, order)


def test_the_evaluate_command_says_two_patients_in_one_line_and_points_to_population(
    tmp_path: Path,
) -> None:
    him = patient("male", pid="him")
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": r} for r in (*oncology_woman(), him)],
    }
    path = tmp_path / "two.json"
    path.write_text(json.dumps(bundle))
    result = CliRunner().invoke(main, ["evaluate", str(path), "--now", "2026-11-01T12:00:00Z"])
    assert result.exit_code == 1
    said = result.output.strip().splitlines()
    assert len(said) == 1
    assert "2 patients" in said[0] and "population" in said[0]


# -- item 2: what counts as therapy ------------------------------------------------------------
@pytest.mark.parametrize("intent", ["proposal", "plan", "option"])
def test_a_proposal_plan_or_option_is_not_therapy(intent: str) -> None:
    order = anastrozole_daily()
    order["intent"] = intent
    assert on(*oncology_woman(ana=order)) == []


@pytest.mark.parametrize("intent", ["order", "original-order", "reflex-order", "instance-order"])
def test_an_order_of_any_kind_is_therapy(intent: str) -> None:
    order = anastrozole_daily()
    order["intent"] = intent
    assert "anastrozole-intent" in on(*oncology_woman(ana=order))


def test_a_depot_given_in_clinic_is_ovarian_suppression_while_it_acts() -> None:
    given = {
        "resourceType": "MedicationAdministration",
        "id": "zoladex",
        "status": "completed",
        "subject": {"reference": "Patient/pt"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": GOSERELIN[1], "display": GOSERELIN[2]}]
        },
        "effectiveDateTime": ago(20),
    }
    assert run(premenopausal_on_ai, oncology_woman(given, age=42)) == []
    given["effectiveDateTime"] = ago(60)  # a 28-day implant: suppression has lapsed
    assert run(premenopausal_on_ai, oncology_woman(given, age=42)) != []


def test_a_deceased_patient_gets_no_findings() -> None:
    died = woman(age=72)
    died["deceasedDateTime"] = ago(10)
    assert on(died, condition(BREAST_CANCER, rid="bc"), anastrozole_daily()) == []
    died = {**woman(age=72), "deceasedBoolean": True}
    assert on(died, condition(BREAST_CANCER, rid="bc"), anastrozole_daily()) == []


def test_an_old_active_order_stopped_on_a_later_medication_list_is_not_current() -> None:
    order = anastrozole_daily(start=ago(2300))
    stopped = {
        "resourceType": "List",
        "id": "reconciliation",
        "status": "current",
        "mode": "changes",
        "subject": {"reference": "Patient/pt"},
        "date": ago(2000),
        "entry": [{"deleted": True, "item": {"reference": "MedicationRequest/ana"}}],
    }
    record = build_record(oncology_woman(stopped, ana=order), NOW)
    assert record.current_courses("anastrozole") == []
    assert "stopped on" in record.courses("anastrozole")[0].stopped_by


def test_a_later_stopped_statement_ends_an_older_active_order_of_the_same_drug_only() -> None:
    order = anastrozole_daily(start=ago(900))
    stop = statement(ANASTROZOLE, rid="said", status="stopped", start=ago(900), end=ago(300))
    tamoxifen_stop = statement(TAMOXIFEN, rid="tam", status="stopped", start=ago(900), end=ago(300))
    assert (
        build_record([*oncology_woman(ana=order), stop], NOW).current_courses("anastrozole") == []
    )
    kept = build_record([*oncology_woman(ana=order), tamoxifen_stop], NOW)
    assert kept.current_courses("anastrozole") != []


def test_a_newer_order_after_the_stop_is_current_again() -> None:
    old = anastrozole_daily(rid="old", start=ago(900))
    new = anastrozole_daily(rid="new", start=ago(100))
    stop = statement(ANASTROZOLE, rid="said", status="stopped", start=ago(900), end=ago(300))
    record = build_record([*oncology_woman(old, stop, ana=new)], NOW)
    assert [c.ref for c in record.current_courses("anastrozole")] == ["MedicationRequest/new"]


def test_a_products_own_description_is_not_another_drug() -> None:
    names = load().names_for_product("Anastrozole 0.5 mg (estrogen blocker)")
    assert "anastrozole" in names and "estrogen-containing-therapy" not in names
    assert "estrogen-containing-therapy" not in load().names_for_product(
        "Arimidex, an estrogen blocker"
    )
    assert "estrogen-containing-therapy" in load().names_for_product("estradiol 1 mg tablet")


@pytest.mark.parametrize(
    ("code", "drug"),
    [
        ((RXNORM, "203769", "Femara"), "letrozole"),
        ((RXNORM, "262105", "Aromasin"), "exemestane"),
        ((RXNORM, "262485", "Arimidex"), "anastrozole"),
        ((SNOMED, "386911004", "Letrozole (substance)"), "letrozole"),
        ((SNOMED, "108774000", "Product containing anastrozole"), "anastrozole"),
        (("urn:oid:2.16.840.1.113883.2.4.4.1", "99872", "ANASTROZOL 1MG TABLET"), "anastrozole"),
    ],
)
def test_brands_snomed_and_national_codes_map_to_the_ingredient(
    code: tuple[str, str, str], drug: str
) -> None:
    record = build_record([woman(), medication(code, rid="ai")], NOW)
    (course,) = record.medications
    assert drug in course.drugs and "aromatase-inhibitors" in course.drugs


def test_a_drug_with_an_unknown_code_and_no_name_is_said_not_silently_missed() -> None:
    order = medication(("urn:oid:1.2.3.4", "884213", ""), rid="local")
    order["medicationCodeableConcept"] = {
        "coding": [{"system": "urn:oid:1.2.3.4", "code": "884213"}]
    }
    findings = evaluate([woman(), order], now=NOW)
    assert [f.rule_id for f in findings] == ["anastrozole-intent"]
    assert "could not be read" in findings[0].summary
    assert any("urn:oid:1.2.3.4|884213" in gap for gap in findings[0].data_gaps)


def test_a_known_code_outside_the_value_sets_is_simply_not_one_of_our_drugs() -> None:
    lisinopril = medication((RXNORM, "29046", "lisinopril"), rid="acei")
    lisinopril["medicationCodeableConcept"] = {"coding": [{"system": RXNORM, "code": "29046"}]}
    assert evaluate([woman(), lisinopril], now=NOW) == []


def test_the_unread_medication_is_said_on_the_findings_that_read_medications() -> None:
    unread = medication(("urn:oid:1.2.3.4", "9", ""), rid="local")
    unread["medicationCodeableConcept"] = {"coding": [{"system": "urn:oid:1.2.3.4", "code": "9"}]}
    findings = evaluate([*oncology_woman(unread, age=45)], now=NOW)
    assert findings and all(
        any("MedicationRequest/local" in gap for gap in f.data_gaps) for f in findings
    )
    assert all("MedicationRequest/local" in f.detail for f in findings)


def test_a_report_dated_after_now_is_left_out_and_said() -> None:
    report = {
        "resourceType": "DiagnosticReport",
        "id": "dxa-next-month",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "38269-7"}]},
        "subject": {"reference": "Patient/pt"},
        "effectiveDateTime": ahead(30),
    }
    record = build_record(oncology_woman(report), NOW)
    assert record.dexa == []
    assert any("DiagnosticReport/dxa-next-month" in gap for gap in record.data_gaps)


def test_an_order_authored_in_the_future_is_left_out_and_said() -> None:
    record = build_record(oncology_woman(ana=anastrozole_daily(start=ahead(40))), NOW)
    assert record.medications == []
    assert any("after today" in gap for gap in record.data_gaps)


def test_a_draft_is_judged_on_its_own_planned_dates() -> None:
    """A tamoxifen draft planned to start after the anastrozole ends is a switch."""
    running = anastrozole_daily(start=ago(1700))
    running["dispenseRequest"] = {"validityPeriod": {"end": ahead(20)}}
    planned = drug(TAMOXIFEN, "tam-draft", status="draft", start=ago(0))
    planned["dosageInstruction"] = [{"timing": {"repeat": {"boundsPeriod": {"start": ahead(25)}}}}]
    assert run(ai_interaction, oncology_woman(planned, ana=running)) == []


# -- item 3: intent ----------------------------------------------------------------------------
def test_a_boy_of_14_on_anastrozole_is_never_trt_evidence() -> None:
    boy = man(age=14)
    finding = fires(anastrozole_intent, [boy, anastrozole(), estradiol(9)])
    assert "under 18" in finding.summary or "under 18" in finding.detail
    assert "male, 14 years" not in finding.detail
    assert run(estradiol_high, [boy, trt_course(), estradiol(60)]) == []


def test_a_provisional_diagnosis_does_not_decide_the_intent() -> None:
    provisional = condition(HYPOGONADISM, rid="hypo", verification="provisional")
    finding = fires(anastrozole_intent, [man(), provisional, anastrozole()])
    assert "intent unclear" in finding.summary
    assert "not confirmed, so not used" in finding.detail


def test_an_order_with_an_indication_that_names_no_intent_is_not_said_to_have_none() -> None:
    order = anastrozole(reasons=[(ICD10CM, "R53.83", "Other fatigue")])
    finding = fires(anastrozole_intent, [man(), order])
    assert "no indication on the order" not in finding.detail
    assert "Other fatigue" in finding.detail


def test_er_negative_disease_is_said_not_silently_called_oncology_suppression() -> None:
    negative = condition((ICD10CM, "Z17.1", "Estrogen receptor negative status [ER-]"), rid="er")
    finding = fires(anastrozole_intent, oncology_woman(negative))
    assert finding.severity.value == "warning"
    assert "ER-negative" in finding.summary


def test_an_er_result_observation_gives_the_receptor_status() -> None:
    negative = {
        **lab("85337-4", rid="er", when=ago(300)),
        "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "260385009"}]},
    }
    assert "ER-negative" in fires(anastrozole_intent, oncology_woman(negative)).summary
    positive = {
        **negative,
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6576-8"}]},
    }
    assert fires(anastrozole_intent, oncology_woman(positive)).severity.value == "info"


@pytest.mark.parametrize(
    "code",
    [
        (ICD10CM, "E23.0", "Hypopituitarism"),
        (ICD10CM, "E29.9", "Testicular dysfunction, unspecified"),
        (ICD10CM, "Q98.4", "Klinefelter syndrome, unspecified"),
        (SNOMED, "33927004", "Hypogonadotropic hypogonadism (disorder)"),
    ],
    ids=lambda code: code[1],
)
def test_hypogonadism_coded_outside_e29_1_is_read(code: tuple[str, str, str]) -> None:
    finding = fires(anastrozole_intent, [man(), condition(code, rid="hypo"), anastrozole()])
    assert finding.intent is not None and finding.intent.value == "trt-modulation"


def test_the_blood_glucose_synthea_writes_is_read() -> None:
    glucose = lab("2339-0", 92, "mg/dL", rid="glu", when=ago(30))
    assert build_record([glucose], NOW).results("glucose-fasting") != []


# -- item 4: results as labs send them ---------------------------------------------------------
@pytest.mark.parametrize("unit", ["\u00b5mol/L", "\u03bcmol/L", "umol/L", "UMOL/L", "umol/L{calc}"])
def test_micro_sign_greek_mu_case_and_annotations_are_one_unit(unit: str) -> None:
    assert normalise("bilirubin", 34.2, unit) == pytest.approx(2.0)


@pytest.mark.parametrize("code", ["{pill}", "{tbl}", "{tablet}", "{Tablet}", "TAB"])
def test_a_dose_in_pills_or_tablets_with_the_strength_is_a_dose_in_mg(code: str) -> None:
    entry = {
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [
            {"doseQuantity": {"value": 1, "system": "http://unitsofmeasure.org", "code": code}}
        ],
    }
    assert parse_dosage([entry], 1.0).weekly_mg == pytest.approx(7.0)


def test_a_dose_without_a_unit_is_never_shown_as_a_bare_number() -> None:
    entry = {
        "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [{"doseQuantity": {"value": 1}}],
    }
    dose = parse_dosage([entry])
    assert dose.weekly_mg is None
    assert dose.description == "1 (unit not stated) once daily"


def test_lt5_with_no_unit_on_an_estradiol_code_is_below_5_pg_per_ml() -> None:
    (result,) = build_record([estradiol(value_string="<5")], NOW).results("estradiol-serum")
    assert result.unit == "pg/mL" and result.is_below(10) is True
    assert result.unit_from_code


def test_at_one_time_the_lc_ms_ms_result_is_preferred_whatever_the_order() -> None:
    immuno = {**estradiol(45, rid="immuno", days_ago=5), "method": {"text": "Immunoassay"}}
    mass = {**estradiol(12, rid="lcms", days_ago=5), "method": {"text": "LC-MS/MS"}}
    for resources in ([immuno, mass], [mass, immuno]):
        latest = build_record(resources, NOW).latest("estradiol-serum")
        assert latest is not None and latest.ref == "Observation/lcms"


def test_a_converted_value_shows_no_more_precision_than_the_lab_sent() -> None:
    (result,) = build_record([estradiol(55, "pmol/L")], NOW).results("estradiol-serum")
    assert result.shown() == "15 pg/mL (55 pmol/L)"


def test_a_dxa_filed_as_a_document_counts() -> None:
    document = {
        "resourceType": "DocumentReference",
        "id": "dxa-pdf",
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": "38269-7"}]},
        "subject": {"reference": "Patient/pt"},
        "date": ago(200),
        "content": [{"attachment": {"url": "Binary/1"}}],
    }
    assert run(dexa_due, oncology_woman(document)) == []


# -- item 5: rule design -----------------------------------------------------------------------
def test_hys_law_needs_alp_below_twice_its_upper_limit() -> None:
    alp = lab("6768-6", 600, "U/L", rid="alp", when=ago(20), reference_high=120)
    cholestatic = fires(liver_injury_on_ai, oncology_woman(alt(200), bilirubin(3.5), alp))
    assert cholestatic.severity.value == "warning"
    assert "not Hy's law" in cholestatic.summary
    normal_alp = lab("6768-6", 90, "U/L", rid="alp", when=ago(20), reference_high=120)
    hy = fires(liver_injury_on_ai, oncology_woman(alt(200), bilirubin(3.5), normal_alp))
    assert hy.severity.value == "critical"
    assert "R = " in hy.detail


def test_liver_metastases_make_raised_bilirubin_cholestatic_not_hys_law() -> None:
    metastases = condition((ICD10CM, "C78.7", "Secondary malignant neoplasm of liver"), rid="mets")
    finding = fires(liver_injury_on_ai, oncology_woman(metastases, alt(200), bilirubin(3.5)))
    assert finding.severity.value == "warning"


def test_a_current_sex_parameter_wins_over_gender() -> None:
    trans_man = patient("female", sex_parameter="male-typical")
    record = build_record([trans_man], NOW)
    assert record.sex.value == "male"
    assert run(sex_undetermined, [trans_man, anastrozole()]) == []


# -- item 8: words on the cards ----------------------------------------------------------------
def test_words_name_ast_not_aspartate() -> None:
    ast = lab("1920-8", 200, "U/L", rid="ast", when=ago(20), display="Aspartate aminotransferase")
    finding = fires(liver_injury_on_ai, oncology_woman(ast))
    assert "Aspartate above" not in finding.detail
    assert "AST above 3x" in finding.detail


def test_a_recorded_sex_parameter_is_named_not_asked_for() -> None:
    finding = fires(sex_undetermined, [patient("female", sex_parameter="specified"), anastrozole()])
    assert "Record a sex parameter" not in finding.detail
    assert "Review the recorded sex parameter for clinical use (specified)" in finding.detail


def test_despite_anastrozole_only_for_a_man_on_it_when_the_blood_was_drawn() -> None:
    draft = anastrozole(status="draft")
    said = fires(estradiol_high, [man(), trt_course(), estradiol(60, days_ago=10), draft]).summary
    assert "despite anastrozole" not in said
    running = anastrozole(start=ago(200))
    said = fires(estradiol_high, [man(), trt_course(), estradiol(60, days_ago=10), running]).summary
    assert "despite anastrozole" in said


def test_one_drug_recorded_twice_and_one_condition_recorded_twice_are_said_once() -> None:
    order = anastrozole_daily(rid="order")
    taken = statement(ANASTROZOLE, rid="taken", start=ago(200))
    twice = condition((SNOMED, "22636003", "Premenopausal state"), rid="pre-1")
    again = condition((SNOMED, "22636003", "Premenopausal state"), rid="pre-2")
    finding = fires(premenopausal_on_ai, oncology_woman(taken, twice, again, ana=order, age=44))
    assert "anastrozole 1 MG Oral Tablet, anastrozole 1 MG Oral Tablet" not in finding.detail
    assert finding.detail.count("Premenopausal state (SNOMED CT 22636003") == 1


def test_dxa_is_dxa_in_every_word_shown() -> None:
    finding = fires(dexa_due, oncology_woman())
    assert "DEXA" not in finding.summary + finding.detail


def test_osteoporosis_on_the_problem_list_and_as_a_diagnosis_is_listed_once() -> None:
    twice = [condition(OSTEOPOROSIS, rid="op-1"), condition(OSTEOPOROSIS, rid="op-2")]
    finding = fires(bone_loss_on_ai, oncology_woman(*twice))
    assert finding.detail.count("Age-related osteoporosis") == 1
    assert {"Condition/op-1", "Condition/op-2"} <= set(finding.evidence)
