"""A sample FHIR Bulk Data export for `anastrozole-cds population`: one `TYPE.ndjson` file per
resource type, one resource a line, as an `$export` writes them.

    .venv/bin/python -m sandbox.sample_export ./export   # the 16 synthetic patients, for 2026-11-01
    .venv/bin/python -m sandbox.sample_export ./big --patients 200000   # a generated population

A generated population (`sandbox.synthetic.PopulationMix`) is what benchmarks/population.py
measures: mostly patients on no drug a rule needs, mostly vital signs.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from contextlib import ExitStack
from datetime import date
from pathlib import Path
from typing import BinaryIO

import click
import orjson

from sandbox.patients import (
    REFERENCE_DATE,
    REFERENCE_NOW,
    SyntheticPatient,
    all_patients,
    bundle_resources,
    days_to_shift,
    shift_dates,
)
from sandbox.synthetic import population_patient


def write_sample_export(
    folder: Path, patients: list[SyntheticPatient], *, days: int = 0
) -> dict[str, int]:
    """Write the patients' resources, dates moved by `days`; the count written per type."""
    by_type: dict[str, list[bytes]] = defaultdict(list)
    for patient in patients:
        for resource in bundle_resources(shift_dates(patient.bundle, days)):
            by_type[resource["resourceType"]].append(orjson.dumps(resource))
    folder.mkdir(parents=True, exist_ok=True)
    for resource_type, lines in sorted(by_type.items()):
        (folder / f"{resource_type}.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    return {resource_type: len(lines) for resource_type, lines in sorted(by_type.items())}


def write_population(folder: Path, patients: int, *, seed: int = 0) -> dict[str, int]:
    """Write a generated population of `patients` (dated for REFERENCE_DATE), streaming: one
    file per type; the count written per type."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    now = REFERENCE_NOW
    counts: Counter[str] = Counter()
    with ExitStack() as files:
        sinks: dict[str, BinaryIO] = {}
        for number in range(patients):
            for resource in population_patient(number, rng, now):
                resource_type = resource["resourceType"]
                sink = sinks.get(resource_type)
                if sink is None:
                    path = folder / f"{resource_type}.ndjson"
                    sink = sinks[resource_type] = files.enter_context(path.open("wb"))
                sink.write(orjson.dumps(resource, option=orjson.OPT_APPEND_NEWLINE))
                counts[resource_type] += 1
    return dict(sorted(counts.items()))


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--as-of",
    "as_of",
    help=f"Move the dates so that the patients' today is this ISO date "
    f"(default: as written, for {REFERENCE_DATE.isoformat()}).",
)
@click.option(
    "--patients",
    type=click.IntRange(1),
    help="Write a generated population of this many patients instead (see "
    "sandbox.synthetic.PopulationMix), dated for "
    f"{REFERENCE_DATE.isoformat()}.",
)
@click.option("--seed", default=0, show_default=True, help="With --patients: the random seed.")
def main(folder: Path, as_of: str | None, patients: int | None, seed: int) -> None:
    """Write the 16 synthetic patients (or a generated population) into FOLDER as a Bulk Data
    export (NDJSON)."""
    if patients is not None:
        if as_of:
            raise click.BadParameter("not with --patients", param_hint="--as-of")
        written = write_population(folder, patients, seed=seed)
        click.echo(
            f"{patients} patients, {sum(written.values())} resources in {len(written)} files "
            f"in {folder}; judge them with --now {REFERENCE_DATE.isoformat()}"
        )
        return
    try:
        days = days_to_shift(date.fromisoformat(as_of)) if as_of else 0
    except ValueError:
        raise click.BadParameter(f"not an ISO date: {as_of!r}", param_hint="--as-of") from None
    patients = all_patients()
    counts = write_sample_export(folder, patients, days=days)
    today = date.fromisoformat(as_of) if as_of else REFERENCE_DATE
    click.echo(
        f"{len(patients)} patients, {sum(counts.values())} resources in {len(counts)} files "
        f"in {folder}; judge them with --now {today.isoformat()}"
    )


if __name__ == "__main__":
    main()
