"""Which files `population` reads, and what it says is missing: a bulk-data client's
`log.ndjson`, a saved manifest (its files, their counts, its error files), a client's
`error/` folder; and reading in pieces and processes gives what reading whole gives."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner, Result

from anastrozole_cds.cli import main
from anastrozole_cds.population import read_folder
from sandbox.patients import REFERENCE_NOW, all_patients, bundle_resources

PATIENTS = all_patients()
NOW = REFERENCE_NOW.isoformat()
# The bulk-data-client's log: JSON lines with no resourceType (sample-bulk-fhir-datasets).
CLIENT_LOG = (
    b'{"exportId": "export-10", "timestamp": "2024-08-06T14:11:57-04:00", "eventId": "kickoff", '
    b'"eventDetail": {"exportUrl": "https://example.com/fhir/Group/sample-10/$export"}}\n'
    b'{"exportId": "export-10", "eventId": "export_complete", "eventDetail": {"files": 0}}\n'
)


def run(folder: Path) -> Result:
    return CliRunner().invoke(main, ["population", str(folder), "--now", NOW])


def by_type(patients: list[Any]) -> dict[str, bytes]:
    files: dict[str, list[bytes]] = {}
    for patient in patients:
        for resource in bundle_resources(patient.bundle):
            files.setdefault(resource["resourceType"], []).append(orjson.dumps(resource))
    return {t: b"\n".join(lines) + b"\n" for t, lines in files.items()}


def write(folder: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    return folder


def manifest(files: dict[str, bytes], **extra: Any) -> bytes:
    return orjson.dumps(
        {
            "transactionTime": "2026-11-01T12:00:00+00:00",
            "request": "https://ehr.example/fhir/Patient/$export",
            "requiresAccessToken": True,
            "output": [
                {
                    "type": name.split(".")[0],
                    "url": f"https://ehr.example/files/{name}",
                    "count": content.count(b"\n"),
                }
                for name, content in files.items()
            ],
            "error": [],
            **extra,
        }
    )


def test_a_clients_log_ndjson_is_skipped_by_name_and_the_run_is_clean(tmp_path: Path) -> None:
    """The issue's sample export: its log.ndjson made every run exit 1."""
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    result = run(write(tmp_path, {**files, "log.ndjson": CLIENT_LOG}))
    assert result.exit_code == 0, result.stderr
    assert "(skipped by name: log.ndjson)" in result.stderr
    assert "0 bad lines" in result.stderr


def test_any_other_line_that_is_not_a_resource_is_still_reported(tmp_path: Path) -> None:
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    result = run(write(tmp_path, {**files, "events.ndjson": CLIENT_LOG}))
    assert result.exit_code == 1
    assert f"{tmp_path / 'events.ndjson'}:1: not a FHIR resource (no resourceType)" in result.stderr


def test_with_a_manifest_only_its_files_are_read_under_any_name(tmp_path: Path) -> None:
    files = {f"{n}.{t}.ndjson": text for n, (t, text) in enumerate(by_type(PATIENTS).items())}
    write(tmp_path, {**files, "manifest.json": manifest(files), "stray.ndjson": b"not json\n"})
    result = run(tmp_path)
    assert result.exit_code == 0, result.stderr
    assert f"read {len(files)} files" in result.stderr
    found = {row["patient_id"] for row in csv.DictReader(io.StringIO(result.stdout))}
    assert found == {p.patient_id for p in PATIENTS}


def test_a_file_the_manifest_lists_but_the_folder_lacks_is_data_missing(tmp_path: Path) -> None:
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    write(tmp_path, {**files, "manifest.json": manifest(files)})
    (tmp_path / "Observation.000.ndjson").unlink()
    result = run(tmp_path)
    assert result.exit_code == 3
    assert (
        "data missing: 1 files the manifest lists are not in the folder: Observation.000.ndjson"
        in result.stderr
    )


def test_a_file_with_fewer_resources_than_the_manifest_says_is_data_missing(
    tmp_path: Path,
) -> None:
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    write(tmp_path, {**files, "manifest.json": manifest(files)})
    lines = files["Condition.000.ndjson"].splitlines()
    (tmp_path / "Condition.000.ndjson").write_bytes(b"\n".join(lines[:-2]) + b"\n")
    result = run(tmp_path)
    assert result.exit_code == 3
    said = len(lines)
    assert (
        f"data missing: Condition.000.ndjson holds {said - 2} resources, the manifest says {said}"
        in result.stderr
    )


@pytest.mark.parametrize(
    ("severity", "exit_code", "said"),
    [
        ("error", 3, "the server reported 1 errors in its export (too-costly 1)"),
        ("warning", 0, "the server's export carries 1 warnings"),
    ],
)
def test_the_error_files_of_a_client_or_a_manifest_are_reported(
    tmp_path: Path, severity: str, exit_code: int, said: str
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": "too-costly", "diagnostics": "Observation skipped"}
        ],
    }
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    result = run(
        write(tmp_path, {**files, "error/1.OperationOutcome.ndjson": orjson.dumps(outcome)})
    )
    assert result.exit_code == exit_code, result.stderr
    assert said in result.stderr


def test_reading_in_pieces_and_processes_gives_what_reading_whole_gives(tmp_path: Path) -> None:
    files = {f"{t}.000.ndjson": text for t, text in by_type(PATIENTS).items()}
    observations = files["Observation.000.ndjson"].splitlines()
    observations[7] = b'{"resourceType": "Observation", "id": '  # a bad line, far in
    files["Observation.000.ndjson"] = b"\n".join(observations) + b"\n\n"
    write(tmp_path, files)
    whole, whole_report = read_folder(tmp_path, now=REFERENCE_NOW)
    pieces, pieces_report = read_folder(tmp_path, now=REFERENCE_NOW, workers=2, chunk_bytes=2048)
    assert list(pieces.patients()) == list(whole.patients())
    problems = [str(p) for p in pieces.problems]
    assert problems == [str(p) for p in whole.problems]
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'Observation.000.ndjson'}:8: not JSON")
    assert pieces_report.summary(_no_findings()) == whole_report.summary(_no_findings())


def _no_findings() -> Any:
    from anastrozole_cds.population.writing import FindingCounts

    return FindingCounts()
