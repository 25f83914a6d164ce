"""`population --engine spark`: on local Spark (local[2], one session for the module), the rows
and the report equal the in-process engine's on the same export; the output is partitioned
by rule and written as CSV, NDJSON or Parquet."""

from __future__ import annotations

import copy
import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main
from anastrozole_cds.population import NoExportFiles, read_folder
from anastrozole_cds.population import spark as on_spark
from anastrozole_cds.population.judging import evaluate_population
from anastrozole_cds.population.report import ReadReport
from sandbox.patients import REFERENCE_NOW, all_patients, bundle_resources
from tests.population.test_population import ANASTROZOLE, with_shared_anastrozole

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

PATIENTS = all_patients()
Row = dict[str, Any]


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = on_spark.session("local[2]", app_name="anastrozole-cds tests")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def not_on_any_drug(n: int) -> list[Row]:
    """A patient no rule applies to: vital signs and a statin."""
    patient_id = f"other-{n}"
    return [
        {"resourceType": "Patient", "id": patient_id, "gender": "male"},
        {
            "resourceType": "Observation",
            "id": f"{patient_id}-hr",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "valueQuantity": {"value": 70, "unit": "/min"},
        },
        {
            "resourceType": "MedicationRequest",
            "id": f"{patient_id}-statin",
            "status": "active",
            "subject": {"reference": f"Patient/{patient_id}"},
            "medicationCodeableConcept": {"text": "atorvastatin 20 mg tablet"},
        },
    ]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic patients, two on a shared Medication (one of them absent from the
    export: a data gap), one in a file of mixed types (Patient first: read in a third pass),
    patients on no drug a rule needs, a bad line, a gzip file, a client's log.ndjson;
    Observations over two files."""
    folder = tmp_path_factory.mktemp("export")
    resources = [r for p in PATIENTS[3:] for r in copy.deepcopy(bundle_resources(p.bundle))]
    mixed = sorted(
        bundle_resources(PATIENTS[2].bundle), key=lambda r: r["resourceType"] != "Patient"
    )
    (folder / "mixed.ndjson").write_bytes(b"\n".join(map(orjson.dumps, mixed)) + b"\n")
    resources += [*with_shared_anastrozole(PATIENTS[0]), ANASTROZOLE]
    gap = with_shared_anastrozole(PATIENTS[1])
    for resource in gap:
        if "medicationReference" in resource:
            resource["medicationReference"] = {"reference": "Medication/not-exported"}
    resources += gap
    resources += [r for n in range(30) for r in not_on_any_drug(n)]
    by_type: dict[str, list[bytes]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    for resource_type, lines in by_type.items():
        text = b"\n".join(lines) + b"\n"
        if resource_type == "Observation":
            half = len(lines) // 2
            (folder / "Observation.000.ndjson").write_bytes(
                b"\n".join(lines[:half]) + b"\nnot json\n"
            )
            (folder / "Observation.001.ndjson.gz").write_bytes(
                gzip.compress(b"\n".join(lines[half:]) + b"\n")
            )
        else:
            (folder / f"{resource_type}.000.ndjson").write_bytes(text)
    (folder / "log.ndjson").write_text('{"eventId": "kickoff"}\n')
    return folder


def in_process(folder: Path) -> tuple[list[Row], ReadReport, list[str]]:
    population, report = read_folder(folder, now=REFERENCE_NOW)
    per_patient = evaluate_population(population.patients(), now=REFERENCE_NOW)
    rows = [row for _, patient_rows in per_patient for row in patient_rows]
    return rows, report, [str(p) for p in population.problems]


def spark_rows(output: Path) -> list[Row]:
    """The NDJSON rows Spark wrote, rule_id taken back from each file's folder."""
    rows = []
    for path in output.glob("rule_id=*/*.json"):
        rule_id = path.parent.name.removeprefix("rule_id=")
        for line in path.read_bytes().splitlines():
            row = orjson.loads(line)
            rows.append(
                {
                    "patient_id": row["patient_id"],
                    "rule_id": rule_id,
                    "severity": row["severity"],
                    "summary": row["summary"],
                    "intent": row.get("intent"),
                    "evidence": row["evidence"],
                    "data_gaps": row["data_gaps"],
                }
            )
    return rows


def canonical(rows: list[Row]) -> list[bytes]:
    return sorted(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) for row in rows)


def test_spark_gives_the_rows_and_the_report_the_in_process_engine_gives(
    spark: SparkSession, export: Path, tmp_path: Path
) -> None:
    expected_rows, expected_report, expected_problems = in_process(export)
    result = on_spark.run(
        str(export), str(tmp_path / "out"), "ndjson", now=REFERENCE_NOW, spark=spark
    )
    assert canonical(spark_rows(tmp_path / "out")) == canonical(expected_rows)
    assert any(row["rule_id"] == "data-incomplete" for row in expected_rows)
    assert result.problems == expected_problems
    (problem,) = expected_problems
    assert problem.startswith(f"{export}/Observation.000.ndjson:") and "not JSON" in problem
    assert result.report.summary(result.found) == expected_report.summary(result.found)
    assert result.report.exit_status() == expected_report.exit_status() == 3
    assert result.report.outcomes["not-judged"] == 90  # 30 patients, 3 resources each
    assert PATIENTS[2].patient_id in {row["patient_id"] for row in expected_rows}


def test_csv_and_parquet_are_partitioned_by_rule_with_cells_as_in_process(
    spark: SparkSession, export: Path, tmp_path: Path
) -> None:
    on_spark.run(str(export), str(tmp_path / "csv"), "csv", now=REFERENCE_NOW, spark=spark)
    folders = {p.name for p in (tmp_path / "csv").iterdir() if p.is_dir()}
    assert {"rule_id=anastrozole-intent", "rule_id=data-incomplete"} <= folders
    written = [
        row
        for path in (tmp_path / "csv").glob("rule_id=*/*.csv")
        for row in csv.DictReader(io.StringIO(path.read_text()))
    ]
    in_process_csv = CliRunner().invoke(
        main, ["population", str(export), "--now", REFERENCE_NOW.isoformat()]
    )
    expected = list(csv.DictReader(io.StringIO(in_process_csv.stdout)))
    drop_rule = lambda row: {k: v for k, v in row.items() if k != "rule_id"}  # noqa: E731
    assert sorted(map(str, map(drop_rule, written))) == sorted(map(str, map(drop_rule, expected)))
    on_spark.run(str(export), str(tmp_path / "pq"), "parquet", now=REFERENCE_NOW, spark=spark)
    parquet = spark.read.parquet(str(tmp_path / "pq"))
    assert parquet.count() == len(expected)
    assert dict(parquet.dtypes)["evidence"] == "array<string>"


def test_an_output_that_exists_or_a_folder_that_is_not_an_export_is_one_line(
    spark: SparkSession, export: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(on_spark.SparkRunError, match="already exists"):
        on_spark.run(str(export), str(tmp_path / "taken"), "csv", now=REFERENCE_NOW, spark=spark)
    with pytest.raises(NoExportFiles, match="does not exist"):
        on_spark.run(
            str(tmp_path / "nowhere"), str(tmp_path / "o"), "csv", now=REFERENCE_NOW, spark=spark
        )
