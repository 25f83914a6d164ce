"""`anastrozole-cds export` against a real FHIR server's `$export` (sekmet-fhir, pinned in the
dev extra), secured by SMART Backend Services: Patient and Group kick-off, `_type` and
`_typeFilter`, the files then read by `population`.

What sekmet's `$export` does not do is covered against tests/population/bulk_fault_server.py
(test_export.py): it never gzips, answers no Range request, says Retry-After 1 and a word
for X-Progress, cannot be made to drop a connection, expire a token mid-export or put an
error in its manifest (its `error` list only says which parameters it ignored), and a
Patient-level export holds no Medication (outside the Patient compartment).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import requests
from click.testing import CliRunner, Result

from anastrozole_cds.cli import main
from ehr.keys import generate_key, private_jwks, public_jwks, write_key_file
from sandbox.loader import load_patient
from sandbox.patients import REFERENCE_NOW, all_patients
from sandbox.processes import ProcessError, free_port, start_server, stop_process
from sandbox.sample_export import write_sample_export

pytestmark = pytest.mark.integration

PATIENTS = all_patients()
CLIENT_ID = "population-job"
LOADER_TOKEN = "loader-token"  # a static token, only for loading the patients
NOW = REFERENCE_NOW.isoformat()


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "bulk-client.json"
    write_key_file(path, private_jwks([generate_key("ES384")], ["ES384"]))
    return path


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory, key_file: Path) -> Iterator[str]:
    """sekmet-fhir with SMART Backend Services on, our client registered, the synthetic
    patients loaded (as written, for REFERENCE_NOW)."""
    folder = tmp_path_factory.mktemp("sekmet")
    port = free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "data_dir": str(folder / "data"),
        "validation": {"inbound": "off"},
        "simulator": {"enabled": False, "delay_seconds": 0.2},
        "log_inbound": False,
        "server_auth": {
            "types": ["smart", "bearer"],
            "tokens": [LOADER_TOKEN],
            "smart_clients": [
                {"client_id": CLIENT_ID, "jwks": public_jwks(key_file), "scopes": "system/*.rs"}
            ],
        },
    }
    config = folder / "settings.yaml"
    config.write_text(json.dumps(settings))  # JSON is YAML
    executable = Path(sys.executable).parent / "sekmet"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    try:
        process = start_server(
            [str(executable), "serve", "--config", str(config)],
            env=env,
            log=folder / "sekmet.log",
            ready_url=f"{base}/metadata",
            what="sekmet-fhir",
        )
    except ProcessError as error:
        pytest.fail(str(error))
    try:
        session = requests.Session()
        for patient in PATIENTS:
            loaded = load_patient(session, base, patient, days=0, token=LOADER_TOKEN)
            assert loaded.ok, loaded.error
        yield base
    finally:
        stop_process(process)


def export(base: str, key_file: Path, out: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "export",
            "--fhir-server",
            base,
            "--out",
            str(out),
            "--client-id",
            CLIENT_ID,
            "--key-file",
            str(key_file),
            *args,
        ],
    )


def population(folder: Path) -> Result:
    return CliRunner().invoke(main, ["population", str(folder), "--now", NOW])


def lines_of(folder: Path, resource_type: str) -> list[dict[str, object]]:
    return [
        orjson.loads(line)
        for path in sorted(folder.glob(f"{resource_type}.*.ndjson*"))
        for line in path.read_bytes().splitlines()
        if line.strip()
    ]


def test_a_patient_export_gives_the_rows_the_same_patients_give_from_files(
    sekmet: str, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    result = export(sekmet, key_file, out)
    assert result.exit_code == 0, result.output
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["requiresAccessToken"] is True  # the files were fetched with the token
    assert {entry["type"] for entry in manifest["output"]} >= {"Patient", "Observation"}
    from_server = population(out)
    assert from_server.exit_code == 0, from_server.stderr
    write_sample_export(tmp_path / "files", PATIENTS)
    from_files = population(tmp_path / "files")
    server_rows = list(csv.reader(io.StringIO(from_server.stdout)))
    assert len(server_rows) > len(PATIENTS)
    assert server_rows == list(csv.reader(io.StringIO(from_files.stdout)))


def test_a_group_export_holds_only_the_groups_patients(
    sekmet: str, key_file: Path, tmp_path: Path
) -> None:
    members = [PATIENTS[0].patient_id, PATIENTS[1].patient_id]
    group = {
        "resourceType": "Group",
        "id": "on-anastrozole",
        "type": "person",
        "actual": True,
        "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
    }
    put = requests.put(
        f"{sekmet}/Group/on-anastrozole",
        json=group,
        headers={
            "Authorization": f"Bearer {LOADER_TOKEN}",
            "Content-Type": "application/fhir+json",
        },
        timeout=30,
    )
    assert put.status_code in (200, 201), put.text
    out = tmp_path / "group"
    result = export(sekmet, key_file, out, "--group", "on-anastrozole")
    assert result.exit_code == 0, result.output
    assert sorted(p["id"] for p in lines_of(out, "Patient")) == sorted(members)
    judged = population(out)
    assert {row["patient_id"] for row in csv.DictReader(io.StringIO(judged.stdout))} == set(members)


def test_types_and_a_type_filter_narrow_the_export(
    sekmet: str, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "estradiol"
    result = export(
        sekmet,
        key_file,
        out,
        "--type",
        "Patient,Observation",
        "--type-filter",
        "Observation?code=http://loinc.org|2243-4",
    )
    assert result.exit_code == 0, result.output
    assert {e["type"] for e in orjson.loads((out / "manifest.json").read_bytes())["output"]} == {
        "Patient",
        "Observation",
    }
    codes = {
        coding["code"]
        for observation in lines_of(out, "Observation")
        for coding in observation["code"]["coding"]  # type: ignore[index]
    }
    assert codes == {"2243-4"}


def test_without_the_client_the_real_server_refuses_and_the_error_says_what_to_give(
    sekmet: str, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main, ["export", "--fhir-server", sekmet, "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "give --client-id and --key-file" in result.stderr
