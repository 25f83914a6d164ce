"""`anastrozole-cds export` and `ehr.bulk` against a Bulk Data server with planted faults:
SMART Backend Services, Retry-After, dropped connections, gzip, an expiring token, another
host, an error in the manifest, and resuming where it stopped."""

from __future__ import annotations

import email.utils
import gzip
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import requests
from click.testing import CliRunner, Result

from anastrozole_cds.cli import main
from ehr.backend_services import BackendServicesAuth
from ehr.bulk import BulkClient, BulkError, ExportRequest, Retry, retry_after
from ehr.keys import generate_key, load_signing_key, private_jwks, public_jwks, write_key_file
from tests.population.bulk_fault_server import Answer, BulkFaultServer, FileFaults

pytestmark = pytest.mark.integration

PATIENTS = b"".join(
    orjson.dumps({"resourceType": "Patient", "id": f"p{n}", "gender": "female"}) + b"\n"
    for n in range(40)
)
OBSERVATIONS = b"".join(
    orjson.dumps(
        {
            "resourceType": "Observation",
            "id": f"o{n}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{n % 40}"},
            "valueQuantity": {"value": 60 + n % 30, "unit": "/min"},
        }
    )
    + b"\n"
    for n in range(400)
)
FILES = {"Patient.ndjson": PATIENTS, "Observation.ndjson": OBSERVATIONS}


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "bulk-client.json"
    write_key_file(path, private_jwks([generate_key("ES384")], ["ES384"]))
    return path


@pytest.fixture
def server(key_file: Path) -> Iterator[BulkFaultServer]:
    running = BulkFaultServer(dict(FILES), public_jwks=public_jwks(key_file)).start()
    yield running
    running.stop()


class Sleeps(list[float]):
    """A sleep that records how long it was asked to wait, and does not."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def client_for(server: BulkFaultServer, key_file: Path, sleeps: Sleeps | None = None) -> BulkClient:
    session = requests.Session()
    auth = BackendServicesAuth(
        session, server.token_url, server.client_id, load_signing_key(key_file), "system/*.rs"
    )
    return BulkClient(
        server.base_url,
        auth=auth,
        parallel=2,
        sleep=sleeps if sleeps is not None else Sleeps(),
        retry=Retry(attempts=3),
    )


def export(server: BulkFaultServer, key_file: Path, out: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main,
        [
            "export",
            "--fhir-server",
            server.base_url,
            "--out",
            str(out),
            "--client-id",
            server.client_id,
            "--key-file",
            str(key_file),
            *args,
        ],
    )


def saved(folder: Path, name: str) -> bytes:
    path = folder / name
    return gzip.decompress(path.read_bytes()) if name.endswith(".gz") else path.read_bytes()


# -- SMART Backend Services -------------------------------------------------------------------


def test_the_token_is_asked_for_with_a_signed_assertion_and_system_scopes(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    result = export(server, key_file, tmp_path / "out")
    assert result.exit_code == 0, result.output
    (assertion,) = server.assertions
    assert assertion["header"]["typ"] == "JWT" and assertion["header"]["alg"] == "ES384"
    assert assertion["header"]["kid"] == load_signing_key(key_file).kid
    claims = assertion["claims"]
    assert claims["iss"] == claims["sub"] == "population-job"
    assert claims["aud"] == server.token_url
    assert 0 < claims["exp"] - claims["iat"] <= 300
    assert [grant["scope"] for grant in server.granted.values()] == ["system/*.rs"]


def test_a_server_that_speaks_smart_v1_only_is_asked_for_system_read(
    key_file: Path, tmp_path: Path
) -> None:
    v1 = BulkFaultServer(
        dict(FILES), public_jwks=public_jwks(key_file), capabilities=("permission-v1",)
    ).start()
    try:
        result = export(v1, key_file, tmp_path / "out")
    finally:
        v1.stop()
    assert result.exit_code == 0, result.output
    assert [grant["scope"] for grant in v1.granted.values()] == ["system/*.read"]


def test_a_token_that_expires_mid_export_is_renewed_and_the_request_repeated(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    server.expire_after_uses = 2  # kick-off and the first poll; then refused
    client_for(server, key_file).export(ExportRequest(), tmp_path / "out")
    assert len(server.granted) >= 2
    assert saved(tmp_path / "out", "Observation.000.ndjson") == OBSERVATIONS


def test_a_secured_server_without_a_client_id_is_one_line_naming_the_options(
    server: BulkFaultServer, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        main, ["export", "--fhir-server", server.base_url, "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 1
    assert "needs authorisation, give --client-id and --key-file" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--client-id", "x"], "--client-id needs --key-file"),
        (["--key-file", "k.json"], "--key-file needs --client-id"),
        (["--client-id", "x", "--key-file", "missing.json"], "key file not found"),
        (["--fhir-server", "ftp://x"], "not an http(s) URL"),
    ],
)
def test_wrong_options_are_one_line_usage_errors(
    tmp_path: Path, args: list[str], said: str
) -> None:
    base = ["export", "--fhir-server", "http://127.0.0.1:9/fhir", "--out", str(tmp_path)]
    result = CliRunner().invoke(main, [*base, *args])
    assert result.exit_code == 2
    assert said in result.stderr


def test_a_refused_token_request_says_the_servers_reason(
    server: BulkFaultServer, tmp_path: Path
) -> None:
    other_key = tmp_path / "other.json"
    write_key_file(other_key, private_jwks([generate_key("ES384")], ["ES384"]))
    result = export(server, other_key, tmp_path / "out")
    assert result.exit_code == 1
    assert "the token endpoint refused the client: invalid_client" in result.stderr


# -- kick-off and polling ---------------------------------------------------------------------


def test_the_kick_off_names_the_types_filters_and_asks_for_an_async_answer(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    result = export(
        server,
        key_file,
        tmp_path / "out",
        "--group",
        "on-ai",
        "--type",
        "Patient,Observation",
        "--type-filter",
        "Observation?code=http://loinc.org|2243-4",
    )
    assert result.exit_code == 0, result.output
    (kick_off,) = server.paths("/fhir/Group/on-ai/$export")
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(kick_off.path).query)
    assert query == {
        "_type": ["Patient,Observation"],
        "_typeFilter": ["Observation?code=http://loinc.org|2243-4"],
    }
    assert kick_off.headers["prefer"] == "respond-async, handling=strict"
    assert kick_off.headers["authorization"].startswith("Bearer token-")


def test_polling_honours_retry_after_in_seconds_and_as_a_date_and_shows_progress(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    in_five = email.utils.formatdate(time.time() + 5, usegmt=True)
    server.status_answers = [
        Answer(429, {"Retry-After": "2"}),
        Answer(202, {"X-Progress": "40% done", "Retry-After": in_five}),
        Answer(503, {"Retry-After": "3"}),
    ]
    sleeps = Sleeps()
    progress: list[str] = []
    client = client_for(server, key_file, sleeps)
    client.progress = progress.append
    client.export(ExportRequest(), tmp_path / "out")
    assert sleeps[0] == 2 and 3 <= sleeps[1] <= 5 and sleeps[2] == 3
    assert "export in progress: 40% done" in progress


def test_a_failed_export_is_one_line_with_the_servers_diagnostics(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    failed = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "disk full"}],
    }
    server.status_answers = [Answer(500, {}, orjson.dumps(failed))]
    with pytest.raises(BulkError, match="the export failed: HTTP 500: disk full"):
        client_for(server, key_file).export(ExportRequest(), tmp_path / "out")


def test_a_refused_kick_off_is_one_line_on_the_command_line(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    refusal = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "not-supported",
                "diagnostics": "_typeFilter not supported",
            }
        ],
    }
    server.kickoff_answer = Answer(400, {}, orjson.dumps(refusal))
    result = export(server, key_file, tmp_path / "out", "--type-filter", "Observation?code=x")
    assert result.exit_code == 1
    assert "the kick-off was refused: HTTP 400: _typeFilter not supported" in result.stderr


# -- downloads --------------------------------------------------------------------------------


def test_a_connection_dropped_mid_file_resumes_from_where_it_broke(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    server.faults["Observation.ndjson"] = FileFaults(drop_first_after=1000)
    client_for(server, key_file).export(ExportRequest(), tmp_path / "out")
    asked = server.paths("/files/Observation.ndjson")
    assert len(asked) == 2 and asked[1].headers["range"] == "bytes=1000-"
    assert asked[1].headers["if-range"] == '"Observation.ndjson-v1"'
    assert saved(tmp_path / "out", "Observation.000.ndjson") == OBSERVATIONS


def test_a_dropped_file_from_a_server_without_ranges_is_fetched_again_whole(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    server.faults["Observation.ndjson"] = FileFaults(drop_first_after=1000, ranges=False)
    client_for(server, key_file).export(ExportRequest(), tmp_path / "out")
    assert len(server.paths("/files/Observation.ndjson")) == 2
    assert saved(tmp_path / "out", "Observation.000.ndjson") == OBSERVATIONS


def test_a_gzipped_file_is_saved_as_sent_and_read_by_population(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    server.faults["Observation.ndjson"] = FileFaults(gzip=True, drop_first_after=300)
    out = tmp_path / "out"
    client_for(server, key_file).export(ExportRequest(), out)
    assert saved(out, "Observation.000.ndjson.gz") == OBSERVATIONS
    assert all("gzip" in s.headers["accept-encoding"] for s in server.paths("/files/"))
    result = CliRunner().invoke(main, ["population", str(out), "--now", "2026-11-01"])
    assert result.exit_code == 0, result.stderr
    assert "read 2 files, 440 lines" in result.stderr


def test_files_are_fetched_in_parallel_and_retried_on_503_with_retry_after(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    server.files.update(
        {f"Condition.{n}.ndjson": b'{"resourceType":"Condition"}\n' for n in range(6)}
    )
    original = server._file
    answered: set[str] = set()

    def busy_once(name: str, headers: dict[str, str], handler: Any) -> Answer | None:
        if name not in answered:
            answered.add(name)
            return Answer(503, {"Retry-After": "7"})
        return original(name, headers, handler)

    server._file = busy_once  # type: ignore[method-assign]
    sleeps = Sleeps()
    client_for(server, key_file, sleeps).export(ExportRequest(), tmp_path / "out")
    assert sleeps.count(7) == 8
    assert sorted(
        p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("Condition")
    ) == [f"Condition.{n:03d}.ndjson" for n in range(6)]


def test_the_token_goes_to_files_only_when_required_and_never_to_another_host(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    elsewhere = BulkFaultServer(dict(FILES)).start()  # an open server on another port
    try:
        server.file_host = elsewhere.origin
        client_for(server, key_file).export(ExportRequest(), tmp_path / "there")
        assert elsewhere.paths("/files/") and all(
            "authorization" not in s.headers for s in elsewhere.paths("/files/")
        )
        server.file_host = None
        server.manifest_extra = {"requiresAccessToken": False}
        server._refused = lambda headers: None  # type: ignore[method-assign]
        client_for(server, key_file).export(ExportRequest(), tmp_path / "here")
        assert all("authorization" not in s.headers for s in server.paths("/files/"))
    finally:
        elsewhere.stop()


def test_an_error_in_the_manifest_is_saved_and_makes_population_exit_3(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "diagnostics": "Observation/o9 could not be exported",
            }
        ],
    }
    server.files["error.ndjson"] = orjson.dumps(outcome) + b"\n"
    out = tmp_path / "out"
    assert export(server, key_file, out).exit_code == 0
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert manifest["error"][0]["file"] == "error/OperationOutcome.000.ndjson"
    result = CliRunner().invoke(main, ["population", str(out), "--now", "2026-11-01"])
    assert result.exit_code == 3
    assert "the server reported 1 errors in its export (processing 1)" in result.stderr


def test_an_interrupted_export_leaves_nothing_looking_complete_and_resumes_without_refetching(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    gone = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": "exception", "diagnostics": "storage offline"}],
    }
    original = server._file

    def observations_fail(name: str, headers: dict[str, str], handler: Any) -> Answer | None:
        if name == "Observation.ndjson":
            return Answer(500, {}, orjson.dumps(gone))
        return original(name, headers, handler)

    server._file = observations_fail  # type: ignore[method-assign]
    with pytest.raises(BulkError, match="storage offline"):
        client_for(server, key_file).export(ExportRequest(), out)
    assert not (out / "manifest.json").exists()
    assert not (out / "Observation.000.ndjson").exists()
    assert (out / "Patient.000.ndjson").read_bytes() == PATIENTS
    server._file = original  # type: ignore[method-assign]
    client_for(server, key_file).export(ExportRequest(), out)
    assert len(server.paths("/fhir/Patient/$export")) == 1  # the job was resumed, not restarted
    assert len(server.paths("/files/Patient.ndjson")) == 1  # a complete file is not fetched again
    assert saved(out, "Observation.000.ndjson") == OBSERVATIONS
    assert not (out / ".export-in-progress.json").exists()
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    assert {e["file"] for e in manifest["output"]} == {
        "Patient.000.ndjson",
        "Observation.000.ndjson",
    }


def test_a_folder_with_another_export_in_progress_is_refused(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / ".export-in-progress.json").write_bytes(
        orjson.dumps({"request": "http://elsewhere/$export"})
    )
    with pytest.raises(BulkError, match="holds another export in progress"):
        client_for(server, key_file).export(ExportRequest(), out)


def test_a_new_export_into_a_folder_holding_export_files_is_refused(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    """A file left there would be taken as complete: another export's data as this one's."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "Patient.000.ndjson").write_bytes(b'{"resourceType": "Patient", "id": "old"}\n')
    with pytest.raises(BulkError, match="already holds export files"):
        client_for(server, key_file).export(ExportRequest(), out)
    assert server.paths("/fhir/Patient/$export") == []


def test_a_file_shorter_than_the_manifests_count_is_fetched_again(
    server: BulkFaultServer, key_file: Path, tmp_path: Path
) -> None:
    original = server.manifest

    def one_more() -> dict[str, Any]:
        manifest = original()
        manifest["output"][0]["count"] += 1
        return manifest

    server.manifest = one_more  # type: ignore[method-assign]
    with pytest.raises(BulkError, match="40 resources arrived, the manifest says 41"):
        client_for(server, key_file).export(ExportRequest(), tmp_path / "out")
    assert not (tmp_path / "out" / "Patient.000.ndjson").exists()


@pytest.mark.parametrize(
    ("header", "low", "high"),
    [("7", 7, 7), (None, 1.5, 1.5), ("soon", 1.5, 1.5), ("99999", 3600, 3600)],
)
def test_retry_after_is_read_as_seconds_or_a_date(
    header: str | None, low: float, high: float
) -> None:
    assert low <= retry_after(header, 1.5) <= high


def test_retry_after_as_an_http_date_is_the_time_until_then() -> None:
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(in_ten, None) <= 10
    assert retry_after(email.utils.formatdate(time.time() - 10, usegmt=True), None) == 0
