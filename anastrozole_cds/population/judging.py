"""Each judged patient through the clinical core, as rows: one per finding, and one saying
what is missing when the export lacks data the patient's rows depend on."""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from functools import partial
from itertools import islice
from typing import Any, Final

import orjson

from clinical import evaluate
from clinical.export import finding_to_json

PatientText = tuple[str, bytes, tuple[str, ...]]  # patient id, resources (JSON array), gaps
Row = dict[str, Any]
COLUMNS: Final = ("patient_id", "rule_id", "severity", "summary", "intent", "evidence", "data_gaps")
# The row of a patient whose export lacks data: the topic of the CDS data-incomplete card
# (docs/architecture.md), so a worklist filters it as it filters rules.
DATA_INCOMPLETE: Final = "data-incomplete"


def evaluate_patient(patient: PatientText, now: datetime) -> tuple[str, list[Row]]:
    """One patient's findings as rows, in the core's order (most severe first), then the
    data-incomplete row when something they depend on is missing from the export."""
    patient_id, text, gaps = patient
    resources = orjson.loads(text)
    rows = [finding_row(patient_id, finding_to_json(f)) for f in evaluate(resources, now=now)]
    if gaps:
        rows.append(data_incomplete_row(patient_id, gaps))
    return patient_id, rows


def finding_row(patient_id: str, finding: dict[str, Any]) -> Row:
    """A row of the output from `finding_to_json`'s JSON: the columns a worklist needs."""
    return {"patient_id": patient_id, **{name: finding[name] for name in COLUMNS[1:]}}


def data_incomplete_row(patient_id: str, gaps: Iterable[str]) -> Row:
    return {
        "patient_id": patient_id,
        "rule_id": DATA_INCOMPLETE,
        "severity": "info",  # as the CDS data-incomplete card
        "summary": "Data missing from the export: findings may be missing or wrong; "
        "check the chart",
        "intent": None,
        "evidence": [],
        "data_gaps": list(gaps),
    }


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
