"""The Spark engine: an export on local disk, HDFS or S3 (`file:`, `hdfs:`, `s3a:`), grouped by
patient in Spark, each patient through the same clinical core; rows written as CSV, NDJSON
or Parquet, one folder per rule_id.

The passes are those of the in-process engine (`reading.py`), run as Spark jobs over Spark's
own text reader (gzip included) with the same line functions: no rule and no reading logic
lives here, only the plumbing.

1. Medication files: the Medications (collected, broadcast), then the orders classified on
   the executors; the candidates come back to the driver (a small set) and are broadcast.
2. Every file, each partition judged by `reading.all_in`: the candidates' resources leave it
   keyed by patient, with the partition's counts and problems. Only these are kept
   (persisted, spilled to disk when large) and shuffled: the other patients' lines are
   counted where they are read.
3. The candidates' resources grouped by patient (`groupByKey`: spills to disk), put back in
   file order, and evaluated with `judging.evaluate_patient`.

Memory per executor is then bounded by Spark's own spilling and one patient's resources,
whatever the export's size (docs/population.md, "On Spark").
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Final

from anastrozole_cds.population import lines as L
from anastrozole_cds.population.candidates import Candidates, MissingMedication
from anastrozole_cds.population.judging import COLUMNS, evaluate_patient
from anastrozole_cds.population.layout import ERROR_FOLDER, ExportFile, Layout, layout_of
from anastrozole_cds.population.reading import (
    NO_PATIENT_RESOURCE,
    ChunkRead,
    Population,
    add_late_candidates,
    all_in,
    classifier_for,
    count_piece,
    held_in,
    medications_in,
    orders_in,
    recount,
    resolve_late_medications,
)
from anastrozole_cds.population.report import ReadReport, read_server_errors, report_of
from anastrozole_cds.population.writing import FindingCounts, as_text
from clinical.rules import CATALOGUE
from clinical.valuesets import load

if TYPE_CHECKING:
    from pyspark import RDD, Broadcast
    from pyspark.sql import SparkSession

FORMATS: Final = ("csv", "ndjson", "parquet")
NO_PATIENT: Final = ""  # the key of a partition's counts, among the patients' records
PATIENTS_PER_GROUP: Final = 2000  # judged patients per evaluation task (about 12 MB of JSON)


class SparkRunError(Exception):
    """The Spark run could not be made; the message says why in one line."""


@dataclass(slots=True)
class SparkResult:
    report: ReadReport
    found: FindingCounts
    problems: list[str] = field(default_factory=list)


def session(
    master: str | None = None, app_name: str = "anastrozole-cds population"
) -> SparkSession:
    """The running Spark session, or a new one: on `master`, else what spark-submit set, else
    Spark embedded in this process on every core (local[*])."""
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    elif not SparkConf().contains("spark.master"):
        builder = builder.master(master := "local[*]")
    if master and master.startswith("local"):  # the workers run this Python, with its packages
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Local files in 128 MB partitions, as HDFS and S3 blocks are, not the local file
        # system's 32 MB: a quarter of the tasks, and of Spark's cost per task.
        builder = builder.config("spark.hadoop.fs.local.block.size", str(128 * 1024 * 1024))
    return builder.config("spark.ui.showConsoleProgress", "false").getOrCreate()


def run(
    export: str,
    output: str,
    output_format: str,
    *,
    now: datetime,
    master: str | None = None,
    spark: SparkSession | None = None,
) -> SparkResult:
    """Evaluate every patient of the export at `export` (a folder URI) into `output`.
    ManifestError or NoExportFiles (from population) for a folder that is not an export;
    SparkRunError for what Spark says cannot be done."""
    from py4j.protocol import Py4JJavaError
    from pyspark.errors import PySparkException

    spark = spark or session(master)
    try:
        if _FileSystem(spark, output).exists(output):
            raise SparkRunError(f"{output} already exists: Spark writes a new folder")
        layout = _layout(spark, export)
        population, held = _read(spark, export, layout, now)
        found, without_patient = _evaluate_and_write(
            spark, held, population, now, output, output_format
        )
        report, problems = _report(spark, export, layout, population)
        report.judged = found.patients
        report.without_patient_resource = without_patient
    except (Py4JJavaError, PySparkException) as error:
        raise SparkRunError(_one_line(error)) from None
    return SparkResult(report, found, problems)


# -- the folder -------------------------------------------------------------------------------


def _layout(spark: SparkSession, export: str) -> Layout:
    from anastrozole_cds.population import NoExportFiles

    files = _FileSystem(spark, export)
    names = files.names()
    if names is None:
        raise NoExportFiles(f"{export} does not exist or is not a folder")
    layout = layout_of(names, files.read)
    if not layout.files and not layout.missing:
        raise NoExportFiles(f"no *.ndjson or *.ndjson.gz files in {export}")
    return layout


class _FileSystem:
    """The export folder through Hadoop's file systems (local, HDFS, S3...), from the driver:
    listing, the manifest, a file's first line, without a Spark job."""

    def __init__(self, spark: SparkSession, folder: str) -> None:
        self.jvm = spark.sparkContext._jvm  # type: ignore[attr-defined]
        self.conf = spark.sparkContext._jsc.hadoopConfiguration()  # type: ignore[attr-defined]
        self.folder = self.path(folder)
        self.fs = self.folder.getFileSystem(self.conf)

    def path(self, uri: str) -> Any:
        return self.jvm.org.apache.hadoop.fs.Path(uri)

    def is_folder(self, path: Any) -> bool:
        return bool(self.fs.exists(path) and self.fs.getFileStatus(path).isDirectory())

    def exists(self, uri: str) -> bool:
        path = self.path(uri)
        return bool(path.getFileSystem(self.conf).exists(path))

    def names(self) -> list[str] | None:
        """The files of the folder and of its error/ folder; None when it is no folder."""
        if not self.is_folder(self.folder):
            return None
        names = [s.getPath().getName() for s in self.fs.listStatus(self.folder) if s.isFile()]
        errors = self.jvm.org.apache.hadoop.fs.Path(self.folder, ERROR_FOLDER)
        if self.is_folder(errors):
            names += [
                f"{ERROR_FOLDER}/{s.getPath().getName()}"
                for s in self.fs.listStatus(errors)
                if s.isFile()
            ]
        return [str(name) for name in names]

    def _open(self, name: str) -> Any:
        """A decompressed stream of a file of the folder (gzip by its name)."""
        path = self.jvm.org.apache.hadoop.fs.Path(self.folder, name)
        stream = self.fs.open(path)
        codec = self.jvm.org.apache.hadoop.io.compress.CompressionCodecFactory(self.conf).getCodec(
            path
        )
        return codec.createInputStream(stream) if codec is not None else stream

    def read(self, name: str) -> bytes:
        sink = self.jvm.java.io.ByteArrayOutputStream()
        self.jvm.org.apache.hadoop.io.IOUtils.copyBytes(self._open(name), sink, 65536, True)
        return bytes(sink.toByteArray())

    def first_line(self, name: str) -> bytes | None:
        """The first non-blank line (a file's type is its first resource's)."""
        reader = self.jvm.java.io.BufferedReader(
            self.jvm.java.io.InputStreamReader(self._open(name), "UTF-8")
        )
        try:
            while (line := reader.readLine()) is not None:
                if line.strip():
                    return str(line).encode()
        finally:
            reader.close()
        return None


def _uri(export: str, listed: ExportFile) -> str:
    return f"{export.rstrip('/')}/{listed.name}"


def _lines(spark: SparkSession, uri: str) -> RDD[bytes]:
    """A file's lines as bytes (Spark's text reader: plain or .gz, any Hadoop file system)."""
    return spark.sparkContext.textFile(uri, use_unicode=False)


def _kind(files: _FileSystem, listed: ExportFile) -> str | None:
    """A file's resource type: as the manifest declares it, else its first resource's."""
    if listed.resource_type:
        return listed.resource_type
    line = files.first_line(listed.name)
    resource = L.parse_resource(L.clean(line)) if line else None
    return resource["resourceType"] if isinstance(resource, dict) else None


# -- the passes -------------------------------------------------------------------------------


def _read(
    spark: SparkSession, export: str, layout: Layout, now: datetime
) -> tuple[Population, RDD[tuple[str, Any]]]:
    """Passes 1 to 3 (module docstring): the counts on the driver, the candidates' resources
    as an RDD of (patient id, (file, partition, texts, has Patient, Medications named))."""
    from pyspark import StorageLevel

    sc = spark.sparkContext
    files = _FileSystem(spark, export)
    kinds = [_kind(files, f) for f in layout.files]
    uris = [_uri(export, f) for f in layout.files]
    population = Population(files=len(uris))
    medication_files = [i for i, kind in enumerate(kinds) if kind == "Medication"]
    order_files = [i for i, kind in enumerate(kinds) if kind in L.MEDICATION_ORDERS]
    if medication_files:
        found = _union(spark, [uris[i] for i in medication_files]).mapPartitions(_medications_task)
        population.medications.update(found.collectAsMap())
    medications = sc.broadcast(dict(population.medications))
    if order_files:
        orders = _union(spark, [uris[i] for i in order_files]).mapPartitions(
            partial(_orders_task, medications=medications, now=now)
        )
        for candidates, found_medications in orders.collect():
            population.candidates.add(candidates)
            population.medications.update(found_medications)
        resolve_late_medications(population, load(), now)
    keep = population.candidates.all()
    read_before = set(medication_files + order_files)
    records = _per_file(
        spark, uris, partial(_all_task, keep=sc.broadcast(keep), read_before=read_before)
    ).persist(StorageLevel.MEMORY_AND_DISK)
    late_orders = _count(population, uris, records.filter(lambda r: r[0] == NO_PATIENT).collect())
    held = records.filter(lambda record: record[0] != NO_PATIENT)
    added = add_late_candidates(population, late_orders, load(), now, keep)
    if added:
        late = _per_file(spark, uris, partial(_held_task, keep=sc.broadcast(added))).persist(
            StorageLevel.MEMORY_AND_DISK
        )
        for _, (_, _, chunk_read) in late.filter(lambda r: r[0] == NO_PATIENT).collect():
            recount(population, chunk_read)
        held = held.union(late.filter(lambda record: record[0] != NO_PATIENT))
    return population, held


def _union(spark: SparkSession, uris: list[str]) -> RDD[bytes]:
    return spark.sparkContext.union([_lines(spark, uri) for uri in uris])


def _per_file(spark: SparkSession, uris: list[str], task: Any) -> RDD[tuple[str, Any]]:
    """`task(file index, partition index, lines)` over every partition of every file."""
    rdds = [
        _lines(spark, uri).mapPartitionsWithIndex(partial(_with_file, task=task, file=index))
        for index, uri in enumerate(uris)
    ]
    return spark.sparkContext.union(rdds)


def _with_file(partition: int, lines: Iterable[bytes], *, task: Any, file: int) -> Iterator[Any]:
    return task(file, partition, lines)  # type: ignore[no-any-return]


def _count(
    population: Population, uris: list[str], summaries: list[tuple[str, Any]]
) -> list[tuple[str, dict[str, Any]]]:
    """The partitions' counts and problems into `population`, each problem numbered by its
    line in the file; the orders met in mixed files are returned (for pass 3)."""
    late_orders: list[tuple[str, dict[str, Any]]] = []
    numbered = Counter[int]()
    for _, (file, _, chunk_read) in sorted(summaries, key=lambda r: (r[1][0], r[1][1])):
        offset = numbered[file]
        numbered[file] += chunk_read.lines
        count_piece(population, uris[file], chunk_read, offset)
        late_orders.extend(chunk_read.orders)
    return late_orders


# -- the tasks (run on the executors) ---------------------------------------------------------


def _clean(lines: Iterable[bytes]) -> Iterator[bytes]:
    for raw in lines:
        line = L.clean(raw)
        if line:
            yield line


def _medications_task(lines: Iterable[bytes]) -> Iterator[tuple[str, bytes]]:
    yield from medications_in(_clean(lines)).items()


def _orders_task(
    lines: Iterable[bytes], *, medications: Broadcast[dict[str, bytes]], now: datetime
) -> Iterator[tuple[Candidates, dict[str, bytes]]]:
    valuesets = load()
    yield orders_in(_clean(lines), medications.value, classifier_for(valuesets, now))


def _all_task(
    file: int,
    partition: int,
    lines: Iterable[bytes],
    *,
    keep: Broadcast[set[str]],
    read_before: set[int],
) -> Iterator[tuple[str, Any]]:
    result = all_in(lines, keep.value, file not in read_before, load(), ChunkRead())
    yield from _held_records(file, partition, result)
    result.held, result.medications_named, result.with_patient_resource = {}, {}, set()
    yield NO_PATIENT, (file, partition, result)


def _held_task(
    file: int, partition: int, lines: Iterable[bytes], *, keep: Broadcast[set[str]]
) -> Iterator[tuple[str, Any]]:
    result = held_in(_clean(lines), keep.value, load())
    yield from _held_records(file, partition, result)
    yield NO_PATIENT, (file, partition, ChunkRead(outcomes=result.outcomes))


def _held_records(file: int, partition: int, result: ChunkRead) -> Iterator[tuple[str, Any]]:
    for patient_id, texts in result.held.items():
        named = sorted(result.medications_named.get(patient_id, ()))
        has_patient = patient_id in result.with_patient_resource
        yield patient_id, (file, partition, texts, has_patient, named)


def _evaluate_group(
    group: tuple[str, Iterable[tuple[int, int, list[bytes], bool, list[str]]]],
    *,
    medications: Broadcast[dict[str, bytes]],
    missing: Broadcast[dict[str, list[str]]],
    now: datetime,
) -> tuple[str, list[dict[str, Any]]]:
    """One patient: their pieces back in file order, the Medications their orders name, the
    gaps; then the same evaluation as in process."""
    patient_id, pieces = group
    ordered = sorted(pieces, key=lambda piece: (piece[0], piece[1]))
    texts = [text for piece in ordered for text in piece[2]]
    named = sorted({m for piece in ordered for m in piece[4]})
    texts += [medications.value[m] for m in named if m in medications.value]
    gaps = list(missing.value.get(patient_id, ()))
    if not any(piece[3] for piece in ordered):
        gaps.insert(0, NO_PATIENT_RESOURCE)
    return evaluate_patient((patient_id, b"[" + b",".join(texts) + b"]", tuple(gaps)), now)


# -- evaluating and writing -------------------------------------------------------------------


def _evaluate_and_write(
    spark: SparkSession,
    held: RDD[tuple[str, Any]],
    population: Population,
    now: datetime,
    output: str,
    output_format: str,
) -> tuple[FindingCounts, int]:
    """Evaluate each candidate and write the rows; the counts, and how many judged patients
    had no Patient resource."""
    from pyspark import StorageLevel

    sc = spark.sparkContext
    missing: dict[str, list[str]] = {}
    for item in population.candidates.missing:
        missing.setdefault(item.patient_id, []).append(MissingMedication.gap(item))
    evaluate = partial(
        _evaluate_group,
        medications=sc.broadcast(population.medications),
        missing=sc.broadcast(missing),
        now=now,
    )
    # A group per PATIENTS_PER_GROUP judged patients (at least one per core): a task per input
    # partition (hundreds on a large export) cost more in Spark's overhead than evaluating
    # them, and too few groups make each Python worker hold more (measured: 2 groups for
    # 14,000 patients took 860 MB of Python workers, 21 groups 360 MB).
    judged = len(population.candidates.all())
    groups = max(sc.defaultParallelism, 1, -(-judged // PATIENTS_PER_GROUP))
    per_patient = held.groupByKey(groups).map(evaluate).persist(StorageLevel.MEMORY_AND_DISK)
    found = FindingCounts()
    without_patient = 0
    for counts, without in per_patient.mapPartitions(_finding_counts).collect():
        found.patients += counts.patients
        found.without_findings += counts.without_findings
        found.with_data_missing += counts.with_data_missing
        found.by_rule.update(counts.by_rule)
        without_patient += without
    rows = per_patient.flatMap(lambda patient: patient[1]).map(
        partial(_output_row, as_csv=output_format == "csv")
    )
    _write(spark, rows, output, output_format)
    per_patient.unpersist()
    return found, without_patient


def _finding_counts(
    patients: Iterable[tuple[str, list[dict[str, Any]]]],
) -> Iterator[tuple[FindingCounts, int]]:
    counts = FindingCounts()
    without_patient = 0
    for _, rows in patients:
        counts.add(rows)
        without_patient += any(NO_PATIENT_RESOURCE in row["data_gaps"] for row in rows)
    yield counts, without_patient


def _output_row(row: dict[str, Any], *, as_csv: bool) -> tuple[Any, ...]:
    """A row as the output's columns: in CSV, lists joined and formula cells quoted as the
    in-process engine writes them; else lists kept."""
    if as_csv:
        return (
            as_text(row["patient_id"]),
            row["rule_id"],
            row["severity"],
            as_text(row["summary"]),
            row["intent"] or "",
            as_text(" ".join(row["evidence"])),
            as_text(" | ".join(row["data_gaps"])),
        )
    return tuple(row[name] for name in COLUMNS)


def _write(
    spark: SparkSession, rows: RDD[tuple[Any, ...]], output: str, output_format: str
) -> None:
    from pyspark.sql.types import ArrayType, StringType, StructField, StructType

    lists = output_format != "csv"
    schema = StructType(
        [
            StructField(
                name,
                ArrayType(StringType())
                if lists and name in ("evidence", "data_gaps")
                else StringType(),
            )
            for name in COLUMNS
        ]
    )
    frame = spark.createDataFrame(rows, schema)
    # One folder per rule (a worklist is one rule) holding one file, sorted by patient; as
    # many tasks as cores, not spark.sql.shuffle.partitions' 200 mostly empty ones.
    tasks = min(max(spark.sparkContext.defaultParallelism, 1), len(CATALOGUE) + 1)
    frame = frame.repartition(tasks, "rule_id").sortWithinPartitions("patient_id")
    writer = frame.write.partitionBy("rule_id").mode("errorifexists")
    if output_format == "csv":
        writer.option("header", True).csv(output)
    elif output_format == "ndjson":
        writer.json(output)
    else:
        writer.parquet(output)


# -- the report -------------------------------------------------------------------------------


def _report(
    spark: SparkSession, export: str, layout: Layout, population: Population
) -> tuple[ReadReport, list[str]]:
    """The same report as in process: counts, problems, what the layout said is missing."""
    report = report_of(layout, population, partial(_uri, export))
    files = _FileSystem(spark, export)
    for listed in layout.error_files:
        report.bad_lines += read_server_errors(report, files.read(listed.name).splitlines())
    return report, [str(problem) for problem in population.problems]


def _one_line(error: Exception) -> str:
    """Spark's error, first line, without the Java stack."""
    text = str(error).strip().splitlines()
    first = next(
        (line for line in text if "Exception" in line or "Error" in line), text[0] if text else ""
    )
    return f"Spark: {first.strip()[:400]}"
