"""`anastrozole-cds population`: a FHIR Bulk Data export in, one row per finding out."""

from __future__ import annotations

import copy
import csv
import gzip
import io
import json
import random
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from anastrozole_cds.cli import main
from anastrozole_cds.population import Population, read_folder
from anastrozole_cds.population.judging import evaluate_population
from anastrozole_cds.population.lines import patient_id_of, reference_id
from clinical import evaluate
from sandbox.patients import REFERENCE_NOW, SyntheticPatient, all_patients, bundle_resources
from tests.conftest import expected_scenarios, read_fixture
from tests.conftest import resources_of as chart_resources

PATIENTS = all_patients()
NOW = REFERENCE_NOW.isoformat()  # the date the synthetic patients are written for
Resource = dict[str, Any]


def write_export(folder: Path, resources: Iterable[Resource], seed: int = 7) -> Path:
    """An export as a server writes one: a file per type, lines of all patients shuffled,
    Observations over two files, MedicationRequest gzipped."""
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    folder.mkdir(exist_ok=True)
    for resource_type, lines in by_type.items():
        random.Random(seed).shuffle(lines)
        parts = [lines[::2], lines[1::2]] if resource_type == "Observation" else [lines]
        for number, part in enumerate(parts, start=1):
            name = resource_type + (f".{number:03d}" if number > 1 else "") + ".ndjson"
            text = b"".join(line + b"\n" for line in part)
            if resource_type == "MedicationRequest":
                (folder / f"{name}.gz").write_bytes(gzip.compress(text))
            else:
                (folder / name).write_bytes(text)
    return folder


def all_resources(patients: Iterable[SyntheticPatient]) -> list[Resource]:
    return [resource for p in patients for resource in bundle_resources(p.bundle)]


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["population", *args, "--now", NOW])


def findings_by_patient(csv_text: str) -> dict[str, set[tuple[str, str]]]:
    found: dict[str, set[tuple[str, str]]] = {}
    for row in csv.DictReader(io.StringIO(csv_text)):
        found.setdefault(row["patient_id"], set()).add((row["rule_id"], row["severity"]))
    return found


def core_findings(patient: SyntheticPatient) -> set[tuple[str, str]]:
    findings = evaluate(bundle_resources(patient.bundle), now=REFERENCE_NOW)
    return {(f.rule_id, f.severity.value) for f in findings}


@pytest.fixture
def export_dir(tmp_path: Path) -> Path:
    return write_export(tmp_path / "export", all_resources(PATIENTS))


def test_every_patient_gets_the_findings_the_core_gives_it_alone(export_dir: Path) -> None:
    result = run(str(export_dir))
    assert result.exit_code == 0, result.stderr
    found = findings_by_patient(result.stdout)
    for patient in PATIENTS:
        assert found.get(patient.patient_id, set()) == core_findings(patient), patient.key
        assert found.get(patient.patient_id, set()) == set(patient.expected_cards.items())


def test_the_rows_are_sorted_by_patient_then_in_the_cores_order(export_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO(run(str(export_dir)).stdout)))
    by_patient = {p.patient_id: p for p in PATIENTS}
    patient_ids = [row["patient_id"] for row in rows]
    assert patient_ids == sorted(patient_ids)
    for patient_id in dict.fromkeys(patient_ids):
        core_order = [
            f.rule_id
            for f in evaluate(bundle_resources(by_patient[patient_id].bundle), now=REFERENCE_NOW)
        ]
        assert [row["rule_id"] for row in rows if row["patient_id"] == patient_id] == core_order


def test_two_workers_write_byte_for_byte_what_one_writes(export_dir: Path, tmp_path: Path) -> None:
    for workers in ("1", "2"):
        result = run(str(export_dir), "--workers", workers, "--output", str(tmp_path / workers))
        assert result.exit_code == 0, result.stderr
    one, two = (tmp_path / "1").read_bytes(), (tmp_path / "2").read_bytes()
    assert one.count(b"\n") > len(PATIENTS)
    assert one == two


def test_workers_give_the_rows_back_in_patient_order_across_chunks(export_dir: Path) -> None:
    population, _ = read_folder(export_dir, now=REFERENCE_NOW)
    serial = list(evaluate_population(population.patients(), now=REFERENCE_NOW))
    pooled = evaluate_population(population.patients(), now=REFERENCE_NOW, workers=2, chunksize=1)
    assert list(pooled) == serial
    assert [patient_id for patient_id, _ in serial] == sorted(p.patient_id for p in PATIENTS)


def test_the_csv_has_a_header_and_every_column(export_dir: Path) -> None:
    result = run(str(export_dir), "--format", "csv")
    assert (
        result.stdout.splitlines()[0]
        == "patient_id,rule_id,severity,summary,intent,evidence,data_gaps"
    )
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    low = next(
        r for r in rows if r["rule_id"] == "estradiol-low" and "trt-low-e2" in r["patient_id"]
    )
    assert low["severity"] == "warning"
    assert low["summary"].startswith("Estradiol 11 pg/mL")
    assert low["intent"] == "trt-modulation"
    assert "Observation/trt-low-e2-obs-harlan-e2-2026-10-19" in low["evidence"].split(" ")


def test_a_finding_made_without_some_data_says_what_was_left_out(tmp_path: Path) -> None:
    """An estradiol in a unit the rules cannot compare is left out of the judgement; the row
    says so, as the card's detail does (CSV: the gaps joined by " | "; NDJSON: a list)."""
    low_e2 = next(p for p in PATIENTS if p.key == "trt-low-e2")
    resources = copy.deepcopy(bundle_resources(low_e2.bundle))
    odd = {
        **observation("e2-odd", "2243-4", 3, "U/mL"),
        "subject": {"reference": f"Patient/{low_e2.patient_id}"},
    }
    export = write_export(tmp_path / "export", [*resources, odd])
    rows = list(csv.DictReader(io.StringIO(run(str(export)).stdout)))
    gaps = {r["rule_id"]: r["data_gaps"] for r in rows if r["patient_id"] == low_e2.patient_id}
    assert "U/mL" in gaps["estradiol-low"] and "Observation/e2-odd" in gaps["estradiol-low"]
    assert gaps["anastrozole-intent"] == ""
    lines = run(str(export), "--format", "ndjson").stdout.splitlines()
    by_rule = {row["rule_id"]: row for row in map(json.loads, lines)}
    assert by_rule["estradiol-low"]["data_gaps"] == gaps["estradiol-low"].split(" | ")
    assert by_rule["anastrozole-intent"]["data_gaps"] == []


def test_ndjson_rows_are_json_objects_with_the_same_findings(export_dir: Path) -> None:
    as_csv = findings_by_patient(run(str(export_dir)).stdout)
    lines = run(str(export_dir), "--format", "ndjson").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert {row["patient_id"] for row in rows} == set(as_csv)
    as_ndjson: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        as_ndjson.setdefault(row["patient_id"], set()).add((row["rule_id"], row["severity"]))
        assert isinstance(row["evidence"], list)
    assert as_ndjson == as_csv


def test_the_summary_on_stderr_has_counts_and_no_patient(export_dir: Path) -> None:
    result = run(str(export_dir))
    assert f"evaluated {len(PATIENTS)} of {len(PATIENTS)} patients" in result.stderr
    assert "0 with no finding, 0 with data missing" in result.stderr
    assert "estradiol-low 4" in result.stderr
    assert "0 bad lines" in result.stderr
    assert not any(p.patient_id in result.stderr for p in PATIENTS)


# -- Medications shared across patients ---------------------------------------------------------

ANASTROZOLE = {
    "resourceType": "Medication",
    "id": "anastrozole-1mg-tablet",
    "code": {
        "coding": [
            {
                "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                "code": "199224",
                "display": "anastrozole 1 MG Oral Tablet",
            }
        ]
    },
}


def with_shared_anastrozole(patient: SyntheticPatient) -> list[Resource]:
    """The patient's resources, its anastrozole order naming the Medication by reference."""
    resources = copy.deepcopy(bundle_resources(patient.bundle))
    for resource in resources:
        concept = resource.get("medicationCodeableConcept") or {}
        if any(c.get("code") == "199224" for c in concept.get("coding", [])):
            del resource["medicationCodeableConcept"]
            resource["medicationReference"] = {"reference": "Medication/anastrozole-1mg-tablet"}
    return resources


def test_a_shared_medication_is_joined_to_the_orders_naming_it(tmp_path: Path) -> None:
    low_e2, infertility = (p for p in PATIENTS if p.key in ("trt-low-e2", "infertility"))
    resources = with_shared_anastrozole(low_e2) + with_shared_anastrozole(infertility)
    result = run(str(write_export(tmp_path / "export", [*resources, ANASTROZOLE])))
    assert result.exit_code == 0, result.stderr
    found = findings_by_patient(result.stdout)
    for patient in (low_e2, infertility):
        assert found[patient.patient_id] == set(patient.expected_cards.items())


def test_an_order_naming_an_absent_medication_gives_a_data_incomplete_row_and_exit_3(
    tmp_path: Path,
) -> None:
    """The issue's sample export had no Medication.ndjson: a patient on anastrozole got no
    row and the run exited 0. Now the patient is judged, their rows say what is missing."""
    infertility = next(p for p in PATIENTS if p.key == "infertility")
    result = run(str(write_export(tmp_path / "export", with_shared_anastrozole(infertility))))
    assert result.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    (incomplete,) = [r for r in rows if r["rule_id"] == "data-incomplete"]
    assert incomplete["patient_id"] == infertility.patient_id
    assert (
        "names Medication/anastrozole-1mg-tablet, which is not in the export"
        in (incomplete["data_gaps"])
    )
    # no intent is judged from an order whose drug is unknown: the core only says it is unread
    intent = [r for r in rows if r["rule_id"] == "anastrozole-intent"]
    assert all("could not be read" in r["summary"] for r in intent)
    assert "data missing: 1 orders name a Medication that is not in the export" in result.stderr


# -- what is dropped while reading ------------------------------------------------------------


def observation(observation_id: str, loinc: str, value: float, unit: str) -> Resource:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-10-19T08:41:00Z",
        "valueQuantity": {"value": value, "unit": unit},
    }


# p1 is on anastrozole: a patient the rules apply to, whose resources are read.
P1_ON_ANASTROZOLE = {
    "resourceType": "MedicationRequest",
    "id": "p1-ai",
    "status": "active",
    "subject": {"reference": "Patient/p1"},
    "medicationCodeableConcept": ANASTROZOLE["code"],
}


def resources_of(population: Population, patient_id: str) -> list[Resource]:
    """The resources grouped under a patient, parsed (its orders aside)."""
    text = next(text for pid, text, _ in population.patients() if pid == patient_id)
    return [r for r in orjson.loads(text) if r["resourceType"] != "MedicationRequest"]


def test_observations_no_rule_reads_are_dropped_while_reading(tmp_path: Path) -> None:
    heart_rate = observation("hr", "8867-4", 64, "/min")
    estradiol = observation("e2", "2243-4", 11, "pg/mL")
    status_text = {**observation("menopause", "0", 0, ""), "valueCodeableConcept": {"text": "x"}}
    export = write_export(
        tmp_path / "export", [heart_rate, estradiol, status_text, P1_ON_ANASTROZOLE]
    )
    grouped, report = read_folder(export, now=REFERENCE_NOW)
    kept = {resource["id"] for resource in resources_of(grouped, "p1")}
    assert kept == {"e2", "menopause"}
    assert report.outcomes["unread"] == 1
    result = run(str(export))
    assert "1 Observations dropped unread" in result.stderr


def test_a_lab_result_keeps_only_the_fields_the_core_reads(tmp_path: Path) -> None:
    estradiol = {**observation("e2", "2243-4", 11, "pg/mL"), "performer": [{"display": "Lab"}]}
    export = write_export(tmp_path / "export", [estradiol, P1_ON_ANASTROZOLE])
    grouped, _ = read_folder(export, now=REFERENCE_NOW)
    (kept,) = resources_of(grouped, "p1")
    assert "performer" not in kept  # the subject is read: one patient at a time
    assert kept["valueQuantity"] == {"value": 11, "unit": "pg/mL"}


def test_resources_of_other_types_are_counted_and_skipped(tmp_path: Path) -> None:
    other = {"resourceType": "Encounter", "id": "enc", "subject": {"reference": "Patient/p1"}}
    result = run(str(write_export(tmp_path / "export", [other])))
    assert result.exit_code == 0, result.stderr
    assert "1 of other types skipped" in result.stderr
    assert "0 without a patient" in result.stderr
    assert result.stdout.splitlines() == [
        "patient_id,rule_id,severity,summary,intent,evidence,data_gaps"
    ]


@pytest.mark.parametrize(
    "subject",
    [{"display": "someone"}, {"reference": "Group/g1"}, {"reference": "Patient?identifier=x|1"}],
    ids=["no reference", "a group", "conditional"],
)
def test_a_resource_the_rules_read_that_names_no_patient_is_data_missing_exit_3(
    tmp_path: Path, subject: Resource
) -> None:
    orphan = {**observation("e2", "2243-4", 11, "pg/mL"), "subject": subject}
    result = run(str(write_export(tmp_path / "export", [orphan])))
    assert result.exit_code == 3
    assert "1 without a patient" in result.stderr
    assert "data missing: 1 resources the rules read name no patient" in result.stderr


def test_urn_uuid_references_are_resolved_to_the_patient_of_that_id(tmp_path: Path) -> None:
    """Synthea writes `urn:uuid:<id>` references and gives the Patient that id."""
    low_e2 = next(p for p in PATIENTS if p.key == "trt-low-e2")
    resources = copy.deepcopy(bundle_resources(low_e2.bundle))
    for resource in resources:
        if "subject" in resource:
            resource["subject"] = {"reference": f"urn:uuid:{low_e2.patient_id}"}
    result = run(str(write_export(tmp_path / "export", resources)))
    assert result.exit_code == 0, result.stderr
    assert findings_by_patient(result.stdout)[low_e2.patient_id] == set(
        low_e2.expected_cards.items()
    )


def test_a_judged_patient_without_a_patient_resource_is_flagged_exit_3(tmp_path: Path) -> None:
    """An unresolved `urn:uuid:` (no Patient of that id) or a Patient file left out: the
    rules would judge without sex or age, so the rows say so."""
    low_e2 = next(p for p in PATIENTS if p.key == "trt-low-e2")
    resources = [r for r in bundle_resources(low_e2.bundle) if r["resourceType"] != "Patient"]
    result = run(str(write_export(tmp_path / "export", resources)))
    assert result.exit_code == 3
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    (incomplete,) = [r for r in rows if r["rule_id"] == "data-incomplete"]
    assert incomplete["data_gaps"] == "no Patient resource in the export: sex and age unknown"
    assert "1 judged patients have no Patient resource" in result.stderr


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("Patient/123", "123"),
        ("https://ehr.example/fhir/Patient/123", "123"),
        ("Patient/123/_history/4", "123"),
        ("https://ehr.example/fhir/Patient/123/_history/4", "123"),
        ("Group/123", None),
        ("#contained", None),
        ("urn:uuid:9b1d", "9b1d"),
        ("Patient/", None),
        (None, None),
        (123, None),
    ],
)
def test_a_patient_reference_is_read_relative_absolute_or_versioned(
    reference: object, expected: str | None
) -> None:
    assert reference_id(reference, "Patient") == expected


def test_a_resource_belongs_to_its_subject_or_its_patient() -> None:
    assert patient_id_of({"resourceType": "Patient", "id": "p1"}) == "p1"
    assert (
        patient_id_of({"resourceType": "Condition", "subject": {"reference": "Patient/p2"}}) == "p2"
    )
    assert (
        patient_id_of({"resourceType": "Procedure", "patient": {"reference": "Patient/p3"}}) == "p3"
    )
    assert patient_id_of({"resourceType": "Condition", "subject": {"reference": "Group/g"}}) is None


# -- bad input --------------------------------------------------------------------------------


def insert_lines(path: Path, lines: dict[int, bytes]) -> None:
    """Put these lines at these (1-based) line numbers of a file."""
    content = path.read_bytes().splitlines()
    for number, line in sorted(lines.items()):
        content.insert(number - 1, line)
    path.write_bytes(b"\n".join(content) + b"\n")


def test_bad_lines_are_reported_skipped_and_exit_1(export_dir: Path) -> None:
    expected = findings_by_patient(run(str(export_dir)).stdout)
    observations = export_dir / "Observation.ndjson"
    insert_lines(observations, {3: b'{"resourceType": "Observation", "id": ', 5: b"[1, 2]"})
    result = run(str(export_dir))
    assert result.exit_code == 1
    assert f"{observations}:3: not JSON" in result.stderr
    assert f"{observations}:5: not a FHIR resource (a JSON array)" in result.stderr
    assert "2 bad lines" in result.stderr
    assert findings_by_patient(result.stdout) == expected


def test_at_most_twenty_bad_lines_are_listed_then_counted(export_dir: Path) -> None:
    insert_lines(export_dir / "Patient.ndjson", {n: b"not json" for n in range(1, 26)})
    result = run(str(export_dir))
    assert result.exit_code == 1
    assert result.stderr.count(": not JSON") == 20
    assert "... and 5 more" in result.stderr


def test_a_corrupt_gzip_file_is_reported_and_the_rest_evaluated(export_dir: Path) -> None:
    (export_dir / "Extra.ndjson.gz").write_bytes(b"not gzip at all")
    result = run(str(export_dir))
    assert result.exit_code == 1
    assert f"{export_dir / 'Extra.ndjson.gz'}:1: cannot be read further" in result.stderr
    assert len(findings_by_patient(result.stdout)) == len(PATIENTS)


def test_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("files", "said"),
    [
        ({}, "no *.ndjson or *.ndjson.gz files"),
        ({"Patient.json": "{}"}, "no *.ndjson or *.ndjson.gz files"),
        ({"manifest.json": "{}"}, "manifest.json is not a Bulk Data manifest (no output list)"),
        ({"manifest.json": "[1"}, "manifest.json is not JSON"),
    ],
)
def test_a_folder_without_an_export_is_a_usage_error(
    tmp_path: Path, files: dict[str, str], said: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run(str(tmp_path))
    assert result.exit_code == 2
    assert said in result.stderr
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    "fixture",
    [
        "goserelin_given_in_clinic_as_administration_only.json",  # MedicationAdministration
        "hospice_anastrozole_discontinued_on_the_medication_list.json",  # List
        "dxa_recorded_only_as_a_document.json",  # DocumentReference
    ],
)
def test_the_rows_are_the_cores_for_every_type_the_core_reads(tmp_path: Path, fixture: str) -> None:
    """An export is read as the core reads a chart: a depot given in clinic, a later medication
    list, a DXA filed as a document are kept, not dropped as types the rules do not read."""
    resources = chart_resources(read_fixture(fixture))
    now = expected_scenarios()[fixture]["now"]
    result = CliRunner().invoke(
        main, ["population", str(write_export(tmp_path / "export", resources)), "--now", now]
    )
    assert result.exit_code == 0, result.stderr
    found = {(r["rule_id"], r["severity"]) for r in csv.DictReader(io.StringIO(result.stdout))}
    expected = evaluate(resources, now=datetime.fromisoformat(now.replace("Z", "+00:00")))
    assert found == {(f.rule_id, f.severity.value) for f in expected}
