"""`anastrozole-cds population` on what real exports and spreadsheets bring: a file saved with
a byte order mark, text a spreadsheet would run as a formula, a worker process that dies."""

from __future__ import annotations

import csv
import io
import os
import signal
import threading
from datetime import datetime
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from anastrozole_cds.cli import main
from anastrozole_cds.population import judging, writing
from sandbox.patients import REFERENCE_NOW, all_patients, bundle_resources

LOW_E2 = next(p for p in all_patients() if p.key == "trt-low-e2")


def export_of(
    folder: Path, patient_id: str, *, prefix: bytes = b"", newline: bytes = b"\n"
) -> Path:
    """The trt-low-e2 patient as one NDJSON file, its Patient first, under `patient_id`."""
    lines = []
    for resource in bundle_resources(LOW_E2.bundle):
        resource = orjson.loads(orjson.dumps(resource))
        if resource["resourceType"] == "Patient":
            resource["id"] = patient_id
        for name in ("subject", "patient"):
            if isinstance(resource.get(name), dict):
                resource[name]["reference"] = f"Patient/{patient_id}"
        lines.append(orjson.dumps(resource))
    lines.sort(key=lambda line: b'"resourceType":"Patient"' not in line)
    folder.mkdir()
    (folder / "export.ndjson").write_bytes(prefix + newline.join(lines) + newline)
    return folder


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["population", *args, "--now", REFERENCE_NOW.isoformat()])
    return result.exit_code, result.stdout, result.stderr


def test_a_file_with_a_byte_order_mark_and_crlf_is_read_whole(tmp_path: Path) -> None:
    plain = run(str(export_of(tmp_path / "plain", "p1")))
    marked = run(str(export_of(tmp_path / "bom", "p1", prefix=b"\xef\xbb\xbf", newline=b"\r\n")))
    assert marked[0] == 0, marked[2]
    assert "0 bad lines" in marked[2]
    assert marked[1] == plain[1]


@pytest.mark.parametrize("patient_id", ["-2-3", "=1+2", "+1", "@SUM(1)"])
def test_a_cell_a_spreadsheet_would_run_as_a_formula_is_written_as_text(
    tmp_path: Path, patient_id: str
) -> None:
    """OWASP "CSV Injection": a leading quote makes the cell text ("-2-3" is a valid FHIR id)."""
    code, out, _ = run(str(export_of(tmp_path / "export", patient_id)))
    rows = list(csv.reader(io.StringIO(out)))[1:]
    assert code == 0 and rows
    assert {row[0] for row in rows} == {"'" + patient_id}
    assert not any(cell.startswith(writing.FORMULA_STARTS) for row in rows for cell in row)
    ndjson = run(str(tmp_path / "export"), "--format", "ndjson")[1]
    assert {orjson.loads(line)["patient_id"] for line in ndjson.splitlines()} == {patient_id}


def evaluate_or_die(patient: judging.PatientText, now: datetime) -> tuple[str, list[judging.Row]]:
    if patient[0] == "p07":  # as the kernel's OOM killer would
        os.kill(os.getpid(), signal.SIGKILL)
    return ("", [])


def test_a_worker_that_dies_fails_the_run_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(judging, "evaluate_patient", evaluate_or_die)  # forked workers inherit it
    patients = [(f"p{n:02d}", b"[]", ()) for n in range(40)]
    outcome: list[BaseException | int] = []

    def evaluate_all() -> None:
        try:
            outcome.append(
                len(
                    list(
                        judging.evaluate_population(
                            patients, now=REFERENCE_NOW, workers=2, chunksize=4
                        )
                    )
                )
            )
        except Exception as error:  # what the run must end with
            outcome.append(error)

    runner = threading.Thread(target=evaluate_all, daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive(), "the run hung on a dead worker"
    assert len(outcome) == 1 and type(outcome[0]).__name__ == "BrokenProcessPool"


def test_a_dead_worker_is_one_line_and_exit_1_on_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures.process import BrokenProcessPool

    def broken(*args: object, **kwargs: object) -> int:
        raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(writing, "write_rows", broken)
    code, _, err = run(str(export_of(tmp_path / "export", "p1")), "--workers", "2")
    assert code == 1
    assert "a worker process died" in err and "Traceback" not in err


def test_a_full_disk_is_one_line_and_exit_1(tmp_path: Path) -> None:
    export = export_of(tmp_path / "export", "p0")
    one = (export / "export.ndjson").read_text()
    # 400 patients: more rows than the output's buffer, so the write itself meets the full disk
    (export / "export.ndjson").write_text("".join(one.replace("p0", f"p{n}") for n in range(400)))
    code, _, err = run(str(export), "--output", "/dev/full")
    assert code == 1
    assert "cannot write /dev/full: No space left on device" in err
