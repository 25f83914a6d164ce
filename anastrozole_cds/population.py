"""Whole population: a FHIR Bulk Data export (NDJSON) in, one row per finding per patient out.

The same pure core as a CDS Hooks call, run over every patient of an export
(docs/architecture.md). Reading groups the resources by patient in memory, dropping as it reads what the core
would pass over (resource types it does not read, Observations `observation_reading` calls
"unread"), so memory grows with what the rules read rather than with the export. An export
too large for one machine even so belongs on a distributed engine (docs/population.md).

Each kept resource is held as its compact JSON text, not as parsed dicts: several times
smaller, and a patient's text goes to a worker process far faster than pickled dicts (the
pickling cost more than the evaluation when measured). Each patient is parsed again when
it is evaluated.
"""

from __future__ import annotations

import csv
import gzip
import multiprocessing
import zlib
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from io import BufferedIOBase
from itertools import islice
from pathlib import Path
from typing import Any, Literal, TextIO

import orjson

from clinical import evaluate
from clinical.export import finding_to_json
from clinical.reader import LAB_OBSERVATION_FIELDS, local_reference, observation_reading_of
from clinical.valuesets import ValueSets, load

Resource = dict[str, Any]
PatientText = tuple[str, bytes]  # patient id, its resources as a JSON array
Row = dict[str, Any]
OutputFormat = Literal["csv", "ndjson"]

# The resource types `clinical.record` reads; Medication joins its patients by reference.
PATIENT_TYPES = frozenset(
    {
        "Patient",
        "Observation",
        "DiagnosticReport",
        "MedicationRequest",
        "MedicationStatement",
        "Condition",
        "Procedure",
        "ImagingStudy",
        "ServiceRequest",
    }
)
MEDICATION_USERS = ("MedicationRequest", "MedicationStatement")
COLUMNS = ("patient_id", "rule_id", "severity", "summary", "intent", "evidence", "data_gaps")
GAP_SEPARATOR = " | "  # between a finding's data gaps in CSV (each a sentence)
EXPORT_SUFFIXES = (".ndjson", ".ndjson.gz")
UTF8_BOM = b"\xef\xbb\xbf"  # written by some tools at the start of a file; not part of the JSON
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"):
# such a cell is written after a single quote, which the spreadsheet shows as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line left out of the reading, and why (never its content: it may hold PHI)."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(slots=True)
class ReadCounts:
    files: int = 0
    lines: int = 0
    kept: int = 0
    dropped_unread: int = 0  # Observations the core would pass over
    other_types: int = 0  # resource types the core does not read
    without_patient: int = 0


@dataclass(slots=True)
class Export:
    """An export grouped by patient (each resource as its JSON text), with the Medications
    their orders name by reference."""

    by_patient: dict[str, list[bytes]] = field(default_factory=dict)
    medications: dict[str, bytes] = field(default_factory=dict)  # by Medication id
    medications_named: dict[str, set[str]] = field(default_factory=dict)  # by patient id
    counts: ReadCounts = field(default_factory=ReadCounts)
    problems: list[LineProblem] = field(default_factory=list)

    def patients(self) -> Iterator[PatientText]:
        """Each patient's resources as one JSON array, by patient id, with the Medications
        its orders name (a Medication absent from the export is simply not there)."""
        for patient_id in sorted(self.by_patient):
            named = sorted(self.medications_named.get(patient_id, ()))
            medications = [self.medications[m] for m in named if m in self.medications]
            yield patient_id, b"[" + b",".join(self.by_patient[patient_id] + medications) + b"]"


# -- reading ----------------------------------------------------------------------------------


def export_files(directory: Path) -> list[Path]:
    """The NDJSON files of an export, plain or gzipped, in name order (so output is stable)."""
    return sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and path.name.endswith(EXPORT_SUFFIXES)
    )


def read_export(files: Iterable[Path], valuesets: ValueSets | None = None) -> Export:
    """Group the resources of these NDJSON files by patient; bad lines are left out, and said."""
    valuesets = valuesets or load()
    export = Export()
    for path in files:
        export.counts.files += 1
        _read_file(path, export, valuesets)
    return export


def _read_file(path: Path, export: Export, valuesets: ValueSets) -> None:
    number = 0
    try:
        with _open(path) as lines:
            for number, line in enumerate(lines, start=1):
                if line.removeprefix(UTF8_BOM).strip():
                    export.counts.lines += 1
                    _take_line(line, path, number, export, valuesets)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        reason = f"cannot be read further ({type(error).__name__})"
        export.problems.append(LineProblem(str(path), number + 1, reason))


def _open(path: Path) -> BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _take_line(line: bytes, path: Path, number: int, export: Export, valuesets: ValueSets) -> None:
    line = line.removeprefix(UTF8_BOM)
    resource = parse_resource(line)
    if isinstance(resource, str):
        export.problems.append(LineProblem(str(path), number, resource))
        return
    take_resource(resource, line.strip(), export, valuesets)


def parse_resource(line: bytes) -> Resource | str:
    """One NDJSON line as a resource, or the reason it is not one."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return f"not JSON ({error.msg} at column {error.colno})"
    if not isinstance(value, dict):
        return f"not a FHIR resource (a JSON {_json_kind(value)})"
    if not isinstance(value.get("resourceType"), str):
        return "not a FHIR resource (no resourceType)"
    return value


def _json_kind(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def take_resource(resource: Resource, text: bytes, export: Export, valuesets: ValueSets) -> None:
    """File one resource (`text` is its JSON) under its patient or its Medication id, or
    count why not."""
    resource_type = resource["resourceType"]
    counts = export.counts
    if resource_type == "Medication":
        medication_id = resource.get("id")
        if isinstance(medication_id, str) and medication_id:
            export.medications[medication_id] = text
            counts.kept += 1
        else:  # no id: no order can name it
            counts.without_patient += 1
        return
    if resource_type not in PATIENT_TYPES:
        counts.other_types += 1
        return
    patient_id = patient_id_of(resource)
    if patient_id is None:
        counts.without_patient += 1
        return
    if resource_type == "Observation":
        reading = observation_reading_of(valuesets, resource)
        if reading == "unread":
            counts.dropped_unread += 1
            return
        if reading == "lab":  # only the fields the reader reads of a lab result
            text = _compact({k: resource[k] for k in LAB_OBSERVATION_FIELDS if k in resource})
    if resource_type in MEDICATION_USERS:
        medication_id = _medication_named(resource)
        if medication_id is not None:
            export.medications_named.setdefault(patient_id, set()).add(medication_id)
    export.by_patient.setdefault(patient_id, []).append(text)
    counts.kept += 1


def _compact(resource: Resource) -> bytes:
    """The resource's JSON in a bytes object of its own size: orjson's output keeps a buffer
    of 4 kB or more, 8 times a lab result's size (measured with tracemalloc)."""
    return bytes(memoryview(orjson.dumps(resource)))


def _medication_named(order: Resource) -> str | None:
    """The Medication id an order or statement names by reference ("#id": contained, None)."""
    reference = order.get("medicationReference")
    return (
        reference_id(reference.get("reference"), "Medication")
        if isinstance(reference, dict)
        else None
    )


def patient_id_of(resource: Resource) -> str | None:
    """The patient a resource belongs to: a Patient's own id, else its subject or patient."""
    if resource["resourceType"] == "Patient":
        patient_id = resource.get("id")
        return patient_id if isinstance(patient_id, str) and patient_id else None
    for name in ("subject", "patient"):
        reference = resource.get(name)
        if isinstance(reference, dict):
            patient_id = reference_id(reference.get("reference"), "Patient")
            if patient_id is not None:
                return patient_id
    return None


def reference_id(reference: Any, resource_type: str) -> str | None:
    """The id in a reference to `resource_type`, written as the core reads references
    (`local_reference`: relative, absolute or versioned)."""
    if not isinstance(reference, str):
        return None
    found_type, _, target_id = local_reference(reference).rpartition("/")
    return target_id if found_type == resource_type and target_id else None


# -- evaluating -------------------------------------------------------------------------------


def evaluate_patient(patient: PatientText, now: datetime) -> tuple[str, list[Row]]:
    """One patient's findings as rows, in the core's order (most severe first)."""
    patient_id, text = patient
    resources = orjson.loads(text)
    return patient_id, [
        finding_row(patient_id, finding_to_json(f)) for f in evaluate(resources, now=now)
    ]


def finding_row(patient_id: str, finding: dict[str, Any]) -> Row:
    """A row of the output from `finding_to_json`'s JSON: the columns a worklist needs."""
    return {"patient_id": patient_id, **{name: finding[name] for name in COLUMNS[1:]}}


def evaluate_patients(chunk: list[PatientText], now: datetime) -> list[tuple[str, list[Row]]]:
    """A worker's task: several patients, in order."""
    return [evaluate_patient(patient, now) for patient in chunk]


def evaluate_population(
    patients: Iterable[PatientText], *, now: datetime, workers: int = 1, chunksize: int = 16
) -> Iterator[tuple[str, list[Row]]]:
    """Each patient's rows, in the order given, evaluated in `workers` processes.

    A task is `chunksize` patients (a few ms of work: enough to make the hand-over cheap). At
    most two tasks a worker are in flight, so the patients are not all copied at once, and
    the results come back in the input order whichever worker ran them. A worker that dies
    (killed for memory, say) raises BrokenProcessPool here: multiprocessing.Pool would wait
    for its rows for ever."""
    if workers <= 1:
        yield from map(partial(evaluate_patient, now=now), patients)
        return
    tasks = _chunks(patients, chunksize)
    context = multiprocessing.get_context()
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        in_flight = deque(
            pool.submit(evaluate_patients, chunk, now) for chunk in islice(tasks, 2 * workers)
        )
        while in_flight:
            done = in_flight.popleft().result()
            following = next(tasks, None)
            if following is not None:
                in_flight.append(pool.submit(evaluate_patients, following, now))
            yield from done


def _chunks(patients: Iterable[PatientText], size: int) -> Iterator[list[PatientText]]:
    iterator = iter(patients)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- writing ----------------------------------------------------------------------------------


@dataclass(slots=True)
class FindingCounts:
    patients: int = 0
    without_findings: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)

    def add(self, rows: list[Row]) -> list[Row]:
        self.patients += 1
        self.without_findings += not rows
        self.by_rule.update(row["rule_id"] for row in rows)
        return rows


def write_rows(
    per_patient: Iterable[tuple[str, list[Row]]], stream: TextIO, output_format: OutputFormat
) -> FindingCounts:
    """Write each finding as a CSV row (with a header) or an NDJSON line; count as it goes."""
    counts = FindingCounts()
    rows = (row for _, patient_rows in per_patient for row in counts.add(patient_rows))
    if output_format == "csv":
        writer = csv.writer(stream)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(_csv_values(row))
    else:
        for row in rows:
            stream.write(orjson.dumps(row).decode())
            stream.write("\n")
    return counts


def _csv_values(row: Row) -> list[str]:
    lists = {"evidence": " ", "data_gaps": GAP_SEPARATOR}
    return [
        _as_text(lists[name].join(row[name]) if name in lists else row[name] or "")
        for name in COLUMNS
    ]


def _as_text(cell: str) -> str:
    """The cell as a spreadsheet will show it, never run it: a leading quote before a formula
    character (a patient id may be "-2-3"; an export's text may be anything)."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def summary(read: ReadCounts, found: FindingCounts, bad_lines: int) -> list[str]:
    """What was read and found, in counts only: no patient id, no value (PHI)."""
    rules = ", ".join(f"{rule} {count}" for rule, count in sorted(found.by_rule.items()))
    return [
        f"read {read.files} files, {read.lines} lines: {read.kept} resources kept, "
        f"{read.dropped_unread} Observations dropped unread, {read.other_types} of other types "
        f"skipped, {read.without_patient} without a patient, {bad_lines} bad lines",
        f"evaluated {found.patients} patients ({found.without_findings} with no finding): "
        f"{found.by_rule.total()} findings" + (f" ({rules})" if rules else ""),
    ]
