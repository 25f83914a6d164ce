"""Whole population: a FHIR Bulk Data export (NDJSON) in, one row per finding per patient out.

The same pure core as a CDS Hooks call, run over every patient of an export
(docs/architecture.md, docs/population.md). Two engines share every piece but the plumbing:

- in process (`read_folder`, then `judging.evaluate_population`): a local folder, read in
  passes (`reading.py`), the patients evaluated in worker processes;
- on Apache Spark (`spark.py`): local, HDFS or S3 folders, grouped by patient in Spark.

`layout.py` says which files to read (the manifest's, or `*.ndjson[.gz]` but a client's
log), `lines.py` what each line is, `candidates.py` which patients a rule can apply to
(the others' lines are only counted), `judging.py` the rows, `report.py` the counts and the
exit status.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from anastrozole_cds.population.layout import ERROR_FOLDER, ManifestError, layout_of
from anastrozole_cds.population.reading import CHUNK_BYTES, Population, read_population
from anastrozole_cds.population.report import ReadReport, read_server_errors, report_of

__all__ = ["ManifestError", "NoExportFiles", "Population", "ReadReport", "read_folder"]


class NoExportFiles(ValueError):
    """The folder holds no export file to read."""


def folder_names(folder: Path) -> list[str]:
    """The files of an export folder, and of its `error/` folder, relative to it."""
    names = [p.name for p in folder.iterdir() if p.is_file()]
    errors = folder / ERROR_FOLDER
    if errors.is_dir():
        names += [f"{ERROR_FOLDER}/{p.name}" for p in errors.iterdir() if p.is_file()]
    return names


def read_folder(
    folder: Path, *, now: datetime, workers: int = 1, chunk_bytes: int = CHUNK_BYTES
) -> tuple[Population, ReadReport]:
    """Read an export folder in process: the judged patients, and the report of the reading.
    ManifestError when its manifest.json is not one; NoExportFiles when there is nothing."""
    layout = layout_of(folder_names(folder), lambda name: (folder / name).read_bytes())
    if not layout.files and not layout.missing:
        raise NoExportFiles(f"no *.ndjson or *.ndjson.gz files in {folder}")
    population = read_population(folder, layout, now=now, workers=workers, chunk_bytes=chunk_bytes)
    report = report_of(layout, population, lambda listed: str(folder / listed.name))
    report.judged = len(population.held)
    report.without_patient_resource = len(set(population.held) - population.with_patient_resource)
    for listed in layout.error_files:
        with (folder / listed.name).open("rb") as lines:
            report.bad_lines += read_server_errors(report, lines)
    return population, report
