"""A sample FHIR Bulk Data export of the synthetic patients, for `anastrozole-cds population`:
one `TYPE.ndjson` file per resource type, one resource a line, as an `$export` writes them.

    .venv/bin/python -m sandbox.sample_export ./export   # dated for 2026-11-01, as written
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from pathlib import Path

import click
import orjson

from sandbox.patients import (
    REFERENCE_DATE,
    SyntheticPatient,
    all_patients,
    bundle_resources,
    days_to_shift,
    shift_dates,
)


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


@click.command()
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--as-of",
    "as_of",
    help=f"Move the dates so that the patients' today is this ISO date "
    f"(default: as written, for {REFERENCE_DATE.isoformat()}).",
)
def main(folder: Path, as_of: str | None) -> None:
    """Write the 16 synthetic patients into FOLDER as a Bulk Data export (NDJSON)."""
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
