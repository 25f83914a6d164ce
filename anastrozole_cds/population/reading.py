"""Reading an export folder in process, in passes, in pieces that worker processes share.

1. The medication files: the Medications by id, then each order or statement classified
   (`candidates.py`): the patients a rule can apply to.
2. Every file: each line judged (`lines.py`); the resources of those patients are held, as
   compact JSON text, the others only counted (their lines are never parsed whole).
3. Only when step 2 met orders in files step 1 did not read (a file of mixed types): those
   files again, for the patients they add.

A plain file is read in pieces of about `CHUNK_BYTES` (a line belongs to the piece it starts
in), a gzip file whole; with `workers` > 1 the pieces are read in that many processes. Bad
lines are named by file and line number whichever piece read them.
"""

from __future__ import annotations

import gzip
import multiprocessing
import zlib
from collections import ChainMap, Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from io import BufferedIOBase
from pathlib import Path
from typing import Any, Final, TypeVar

import msgspec
import orjson

from anastrozole_cds.population import lines as L
from anastrozole_cds.population.candidates import (
    Candidates,
    Classifier,
    MissingMedication,
    judge_orders,
    read_order,
)
from anastrozole_cds.population.layout import ExportFile, Layout
from clinical.valuesets import ValueSets, load

CHUNK_BYTES: Final = 32 * 1024 * 1024
NO_PATIENT_RESOURCE: Final = "no Patient resource in the export: sex and age unknown"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LineProblem:
    """A line left out of the reading, and why (never its content: it may hold PHI)."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass(frozen=True, slots=True)
class Chunk:
    """A piece of one file: the lines that start in [start, end) (end None: to the end)."""

    file: int  # its index in the files read
    path: Path
    start: int = 0
    end: int | None = None


@dataclass(slots=True)
class ChunkRead:
    """What reading one piece gave (pass 2 and 3)."""

    lines: int = 0  # physical lines, blank ones included: the next piece's numbering
    resources: int = 0  # non-blank lines
    patients: int = 0  # Patient resources, judged or not
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line in piece, reason)
    held: dict[str, list[bytes]] = field(default_factory=dict)  # by patient id
    medications_named: dict[str, set[str]] = field(default_factory=dict)  # by patient id
    with_patient_resource: set[str] = field(default_factory=set)
    orders: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # met in pass 2
    medications: dict[str, bytes] = field(default_factory=dict)  # met in pass 2


@dataclass(slots=True)
class Population:
    """The judged patients' resources, grouped, with what the reading counted and met."""

    held: dict[str, list[bytes]] = field(default_factory=dict)  # by patient id
    medications: dict[str, bytes] = field(default_factory=dict)  # by Medication id
    medications_named: dict[str, set[str]] = field(default_factory=dict)
    with_patient_resource: set[str] = field(default_factory=set)
    candidates: Candidates = field(default_factory=Candidates)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[LineProblem] = field(default_factory=list)
    resources_per_file: dict[str, int] = field(default_factory=dict)  # non-blank lines
    files: int = 0
    lines: int = 0  # non-blank
    patients_in_export: int = 0  # Patient resources

    def patients(self) -> Iterator[tuple[str, bytes, tuple[str, ...]]]:
        """Each judged patient, by id: its resources as one JSON array (with the Medications
        its orders name) and what is missing from them, in words."""
        gaps = self.gaps()
        for patient_id in sorted(self.held):
            named = sorted(self.medications_named.get(patient_id, ()))
            medications = [self.medications[m] for m in named if m in self.medications]
            text = b"[" + b",".join(self.held[patient_id] + medications) + b"]"
            yield patient_id, text, tuple(gaps.get(patient_id, ()))

    def gaps(self) -> dict[str, list[str]]:
        """What each judged patient's rows may lack: a Medication named but absent, or no
        Patient resource (sex and age unknown)."""
        gaps: dict[str, list[str]] = {}
        for missing in self.candidates.missing:
            gaps.setdefault(missing.patient_id, []).append(missing.gap())
        for patient_id in self.held:
            if patient_id not in self.with_patient_resource:
                gaps.setdefault(patient_id, []).insert(0, NO_PATIENT_RESOURCE)
        return gaps


# -- the passes -------------------------------------------------------------------------------


def read_population(
    folder: Path,
    layout: Layout,
    *,
    now: datetime,
    workers: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
    valuesets: ValueSets | None = None,
) -> Population:
    """Read the layout's files (relative to `folder`) in the three passes above."""
    valuesets = valuesets or load()
    files = [folder / f.name for f in layout.files]
    kinds = [_kind(path, f) for path, f in zip(files, layout.files, strict=True)]
    population = Population(files=len(files))
    # Pass 1: Medications first (the orders name them), then the orders.
    medication_files = [i for i, kind in enumerate(kinds) if kind == "Medication"]
    order_files = [i for i, kind in enumerate(kinds) if kind in L.MEDICATION_ORDERS]
    for found in _run(_medications_in, _chunks(files, medication_files, chunk_bytes), workers):
        population.medications.update(found)
    setup = (valuesets, now, population.medications, None)
    for candidates, found in _run(
        _orders_in, _chunks(files, order_files, chunk_bytes), workers, setup
    ):
        population.candidates.add(candidates)
        population.medications.update(found)
    resolve_late_medications(population, valuesets, now)
    # Pass 2: every file, holding the candidates' resources.
    keep = population.candidates.all()
    read_before = set(medication_files + order_files)
    late_orders = _read_all(population, files, keep, read_before, workers, chunk_bytes, valuesets)
    # Pass 3: the patients that orders in files of mixed types add, in every file.
    added = add_late_candidates(population, late_orders, valuesets, now, keep)
    if added:
        setup3 = (valuesets, now, {}, added)
        everything = _chunks(files, range(len(files)), chunk_bytes)
        for chunk_read in _run(_held_in, everything, workers, setup3):
            _hold(population, chunk_read)
            recount(population, chunk_read)
    return population


def add_late_candidates(
    population: Population,
    orders: list[tuple[str, dict[str, Any]]],
    valuesets: ValueSets,
    now: datetime,
    keep: set[str],
) -> set[str]:
    """Judge the orders pass 2 met in files pass 1 did not read; the patients they add."""
    if not orders:
        return set()
    late = judge_orders(orders, population.medications, Classifier(valuesets, now))
    late.patients -= keep
    late.missing = [m for m in late.missing if m.patient_id not in keep]
    population.candidates.add(late)
    return late.all()


def _kind(path: Path, listed: ExportFile) -> str | None:
    """The resource type of a file: as its manifest entry says, else its first resource's."""
    if listed.resource_type:
        return listed.resource_type
    try:
        for line in _physical_lines(Chunk(0, path)):
            line = L.clean(line)
            if line:
                head = msgspec.json.decode(line, type=dict[str, Any])
                kind = head.get("resourceType")
                return kind if isinstance(kind, str) else None
    except (OSError, EOFError, zlib.error, msgspec.DecodeError):
        return None  # read in pass 2, which names the problem
    return None


def resolve_late_medications(population: Population, valuesets: ValueSets, now: datetime) -> None:
    """Orders whose Medication was met after them (in a file read later) are judged now."""
    missing = population.candidates.missing
    if not missing:
        return
    still: list[MissingMedication] = []
    classifier = Classifier(valuesets, now)
    for item in missing:
        ref = item.medication
        medication_id = L.reference_id(ref, "Medication")
        medication = population.medications.get(medication_id) if medication_id else None
        if medication is None:
            still.append(item)
        elif classifier.needs(
            {"resourceType": "MedicationRequest", "medicationReference": {"reference": ref}},
            medication,
        ):
            population.candidates.patients.add(item.patient_id)
    population.candidates.missing = still


def _read_all(
    population: Population,
    files: list[Path],
    keep: set[str],
    read_before: set[int],
    workers: int,
    chunk_bytes: int,
    valuesets: ValueSets,
) -> list[tuple[str, dict[str, Any]]]:
    """Pass 2: counts, problems and the held resources into `population`; the orders met in
    files pass 1 did not read (a mixed file) are returned."""
    chunks = _chunks(files, range(len(files)), chunk_bytes)
    setup = (valuesets, None, read_before, keep)
    late_orders: list[tuple[str, dict[str, Any]]] = []
    numbered = Counter[int]()  # lines read so far per file, to number each piece's lines
    for chunk, chunk_read in zip(chunks, _run(_all_in, chunks, workers, setup), strict=True):
        offset = numbered[chunk.file]
        numbered[chunk.file] += chunk_read.lines
        count_piece(population, str(chunk.path), chunk_read, offset)
        _hold(population, chunk_read)
        late_orders.extend(chunk_read.orders)
    return late_orders


def count_piece(population: Population, name: str, chunk_read: ChunkRead, offset: int) -> None:
    """Add what one piece of a file counted and met; `offset`: the file's lines before it."""
    population.problems.extend(LineProblem(name, offset + n, r) for n, r in chunk_read.problems)
    resources = chunk_read.resources
    population.resources_per_file[name] = population.resources_per_file.get(name, 0) + resources
    population.lines += resources
    population.patients_in_export += chunk_read.patients
    population.outcomes.update(chunk_read.outcomes)
    for medication_id, text in chunk_read.medications.items():
        population.medications.setdefault(medication_id, text)


def _hold(population: Population, chunk_read: ChunkRead) -> None:
    for patient_id, texts in chunk_read.held.items():
        population.held.setdefault(patient_id, []).extend(texts)
    for patient_id, named in chunk_read.medications_named.items():
        population.medications_named.setdefault(patient_id, set()).update(named)
    population.with_patient_resource |= chunk_read.with_patient_resource


# -- one piece, in a worker -------------------------------------------------------------------

# What every task of a pass needs, set once per worker process (not sent with each task).
_SETUP: tuple[Any, ...] = ()


def _set_up(setup: tuple[Any, ...]) -> None:
    global _SETUP
    _SETUP = setup


def _medications_in(chunk: Chunk) -> dict[str, bytes]:
    return medications_in(_resource_lines(chunk))


def _orders_in(chunk: Chunk) -> tuple[Candidates, dict[str, bytes]]:
    valuesets, now, medications, _ = _SETUP
    return orders_in(_resource_lines(chunk), medications, _classifier(valuesets, now))


def _all_in(chunk: Chunk) -> ChunkRead:
    valuesets, _, read_before, keep = _SETUP
    result = ChunkRead()
    try:
        all_in(_physical_lines(chunk), keep, chunk.file not in read_before, valuesets, result)
    except (OSError, EOFError, zlib.error) as error:  # gzip.BadGzipFile is an OSError
        reason = f"cannot be read further ({type(error).__name__})"
        result.problems.append((result.lines + 1, reason))
    return result


def _held_in(chunk: Chunk) -> ChunkRead:
    valuesets, _, _, keep = _SETUP
    return held_in(_resource_lines(chunk), keep, valuesets)


# -- the lines of a piece, for either engine ---------------------------------------------------


def medications_in(lines: Iterable[bytes]) -> dict[str, bytes]:
    """Pass 1: the Medications among these (clean, non-blank) lines, by id."""
    found: dict[str, bytes] = {}
    for line in lines:
        found.update(_medications_in_line(line))
    return found


def orders_in(
    lines: Iterable[bytes], medications: dict[str, bytes], classifier: Classifier
) -> tuple[Candidates, dict[str, bytes]]:
    """Pass 1: the candidates among these lines' orders, and any Medications among them.
    Each order is judged as it is read (a piece may hold hundreds of thousands)."""
    found: dict[str, bytes] = {}

    def orders() -> Iterator[tuple[str, dict[str, Any]]]:
        for line in lines:
            order = read_order(line)
            if order is not None:
                yield order
            elif b'"Medication"' in line:  # rare: a Medication in an order file
                found.update(_medications_in_line(line))

    return judge_orders(orders(), ChainMap(found, medications), classifier), found


def all_in(
    lines: Iterable[bytes],
    keep: set[str],
    mixed: bool,
    valuesets: ValueSets,
    result: ChunkRead,
) -> ChunkRead:
    """Pass 2: every one of these physical lines judged into `result` (which keeps what it
    had if the lines break off); the candidates' resources held. `mixed`: a file pass 1 did
    not read, whose orders and Medications are noted for pass 3. (The hot loop of a run:
    counts are kept in locals and written back at the end.)"""
    judge, not_judged = L.judge_line, L.NOT_JUDGED
    number, resources, patients, skipped = result.lines, result.resources, result.patients, 0
    try:
        for raw in lines:
            number += 1
            line = raw.removeprefix(L.UTF8_BOM).strip()
            if not line:
                continue
            resources += 1
            outcome = judge(line, keep, valuesets)
            resource_type = outcome[1]
            patients += resource_type == "Patient"
            if outcome[0] == not_judged:
                skipped += 1
            else:
                _take(result, outcome, number)
            if mixed and resource_type in L.MEDICATION_TYPES:
                _note_medication(result, line)
    finally:
        result.lines, result.resources, result.patients = number, resources, patients
        result.outcomes[not_judged] += skipped
    return result


def held_in(lines: Iterable[bytes], keep: set[str], valuesets: ValueSets) -> ChunkRead:
    """Pass 3: the resources of the patients in `keep`, which pass 2 counted as not judged
    (`recount`)."""
    result = ChunkRead()
    for line in lines:
        outcome = L.judge_line(line, keep, valuesets)
        if outcome[0] in (L.KEPT, L.UNREAD):
            _take(result, outcome, 0)
    return result


def recount(population: Population, chunk_read: ChunkRead) -> None:
    """Pass 3's lines are judged now, not "not judged" as pass 2 counted them."""
    population.outcomes[L.NOT_JUDGED] -= chunk_read.outcomes.total()
    population.outcomes.update(chunk_read.outcomes)


def _medications_in_line(line: bytes) -> dict[str, bytes]:
    resource = L.parse_resource(line)
    if isinstance(resource, dict) and resource["resourceType"] == "Medication":
        medication_id = resource.get("id")
        if isinstance(medication_id, str) and medication_id:
            return {medication_id: line}
    return {}


_CLASSIFIERS: dict[int, Classifier] = {}


def classifier_for(valuesets: ValueSets, now: datetime) -> Classifier:
    """One classifier (and its memory of drugs) per process and run."""
    key = id(valuesets)
    classifier = _CLASSIFIERS.get(key)
    if classifier is None or classifier.now != now:
        classifier = _CLASSIFIERS[key] = Classifier(valuesets, now)
    return classifier


_classifier = classifier_for


def _take(result: ChunkRead, outcome: L.Outcome, number: int) -> None:
    kind = outcome[0]
    if kind == L.BAD:
        result.problems.append((number, outcome[1]))
        return
    result.outcomes[kind] += 1
    if kind != L.KEPT:
        return
    _, resource_type, patient_id, text = outcome
    result.held.setdefault(patient_id, []).append(text)
    if resource_type == "Patient":
        result.with_patient_resource.add(patient_id)
    elif resource_type in L.MEDICATION_ORDERS:
        medication_id = L.medication_named(orjson.loads(text))
        if medication_id is not None:
            result.medications_named.setdefault(patient_id, set()).add(medication_id)


def _note_medication(result: ChunkRead, line: bytes) -> None:
    order = read_order(line)
    if order is not None:
        result.orders.append(order)
    else:
        result.medications.update(_medications_in_line(line))


# -- lines of a piece -------------------------------------------------------------------------


def _chunks(files: list[Path], indexes: Iterable[int], chunk_bytes: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    for index in indexes:
        path = files[index]
        size = path.stat().st_size if path.exists() else 0
        if path.name.endswith(".gz") or size <= chunk_bytes:
            chunks.append(Chunk(index, path))
            continue
        starts = range(0, size, chunk_bytes)
        chunks += [Chunk(index, path, s, min(s + chunk_bytes, size)) for s in starts]
    return chunks


def _physical_lines(chunk: Chunk) -> Iterator[bytes]:
    """The lines that start in the piece, each with its line end."""
    with _open(chunk.path) as stream:
        if chunk.end is None:  # the whole file
            yield from stream
            return
        position = chunk.start
        if chunk.start:
            stream.seek(chunk.start - 1)
            position += len(stream.readline()) - 1  # the rest of the line begun before
        for line in stream:
            if chunk.end is not None and position >= chunk.end:
                return
            position += len(line)
            yield line


def _resource_lines(chunk: Chunk) -> Iterator[bytes]:
    """The non-blank lines of a piece, cleaned; a file that breaks off ends them (pass 2
    names the problem)."""
    try:
        for raw in _physical_lines(chunk):
            line = L.clean(raw)
            if line:
                yield line
    except (OSError, EOFError, zlib.error):
        return


def _open(path: Path) -> BufferedIOBase:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def _run(
    task: Callable[[Chunk], T],
    chunks: list[Chunk],
    workers: int,
    setup: tuple[Any, ...] = (),
) -> Iterator[T]:
    """`task` over each piece, in order, in `workers` processes (set up with `setup`)."""
    if workers <= 1 or len(chunks) <= 1:
        _set_up(setup)
        yield from map(task, chunks)
        return
    context = multiprocessing.get_context()
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_set_up, initargs=(setup,)
    ) as pool:
        yield from pool.map(task, chunks)
