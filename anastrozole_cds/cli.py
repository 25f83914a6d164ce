"""The `anastrozole-cds` command: the top's own commands (evaluate, population, serve), and
each area's, registered from its `COMMANDS` (cds_hooks, smartapp, sandbox). The areas get the
composed product (settings checked whole, the app factory) as click's context object."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import orjson

import cds_hooks.cli
import runtime.cli
import sandbox.cli
import smartapp.cli
from anastrozole_cds import __version__
from runtime.cli import Product, config_option, parse_now, pass_product

if TYPE_CHECKING:
    from flask import Flask

    from anastrozole_cds.population.writing import OutputFormat
    from ehr.backend_services import BackendServicesAuth
    from runtime.settings import ProductSettings

AREA_COMMANDS = (
    *runtime.cli.COMMANDS,
    *cds_hooks.cli.COMMANDS,
    *smartapp.cli.COMMANDS,
    *sandbox.cli.COMMANDS,
)


def _load_settings(config: Path | None) -> ProductSettings:
    from anastrozole_cds.settings import load_settings

    return load_settings(config)


def _create_app(settings: ProductSettings) -> Flask:
    from anastrozole_cds.app import create_app

    return create_app(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anastrozole-cds")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Anastrozole monitoring: CDS Hooks service, SMART app and integrator tools."""
    ctx.obj = Product(load_settings=_load_settings, create_app=_create_app)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--now", "now_text", help="Evaluate as of this ISO date (default: the current time).")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def evaluate(file: Path, now_text: str | None, as_json: bool) -> None:
    """Evaluate a FHIR Bundle (or a JSON list of resources) and print the findings."""
    from clinical import MixedPatientsError
    from clinical import evaluate as evaluate_resources
    from clinical.export import finding_to_json

    try:
        resources = orjson.loads(file.read_bytes())
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"{file} is not JSON: {error}") from error
    if not _is_fhir(resources):
        raise click.ClickException(
            f"{file} is not a FHIR Bundle, a resource or a JSON list of resources "
            '(each an object with a "resourceType")'
        )
    try:
        findings = evaluate_resources(resources, now=parse_now(now_text))
    except MixedPatientsError as error:
        raise click.ClickException(
            f"{file}: {error}; for many patients use `anastrozole-cds population`"
        ) from None
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                [finding_to_json(f) for f in findings], option=orjson.OPT_INDENT_2
            ).decode()
        )
        sys.stdout.write("\n")
        return
    if not findings:
        click.echo("No findings.")
        return
    for finding in findings:
        click.echo(f"[{finding.severity.value.upper():8}] {finding.rule_id}: {finding.summary}")


def _is_fhir(document: Any) -> bool:
    """A resource (a Bundle is one), or a list of resources: what `evaluate` reads."""
    items = document if isinstance(document, list) else [document]
    return all(
        isinstance(item, dict) and isinstance(item.get("resourceType"), str) for item in items
    )


# The types the rules read (docs/population.md); Medication for orders that name one.
EXPORT_TYPES = (
    "Patient,Observation,MedicationRequest,MedicationStatement,Condition,Procedure,"
    "DiagnosticReport,ImagingStudy,ServiceRequest,Medication"
)


@main.command()
@click.option("--fhir-server", required=True, help="The FHIR server's base URL.")
@click.option("--group", help="Export this Group's patients (default: every patient).")
@click.option(
    "--type",
    "types",
    multiple=True,
    help=f"Resource types, comma-separated or repeated (default: {EXPORT_TYPES}).",
)
@click.option(
    "--type-filter",
    "type_filters",
    multiple=True,
    help="A _typeFilter, e.g. 'MedicationRequest?status=active' (repeatable); a server that "
    "cannot apply it refuses the export.",
)
@click.option("--since", help="Only resources changed since this FHIR instant (_since).")
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the files and manifest.json (run again to resume).",
)
@click.option(
    "--client-id",
    envvar="ANASTROZOLE_CDS_BULK_CLIENT_ID",
    help="SMART Backend Services client id [env ANASTROZOLE_CDS_BULK_CLIENT_ID] (none: no "
    "authorisation).",
)
@click.option(
    "--key-file",
    envvar="ANASTROZOLE_CDS_BULK_KEY_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Private key set from `anastrozole-cds keys generate` [env ANASTROZOLE_CDS_BULK_KEY_FILE].",
)
@click.option(
    "--scope",
    envvar="ANASTROZOLE_CDS_BULK_SCOPE",
    help="Scopes to ask for [env ANASTROZOLE_CDS_BULK_SCOPE] (default: system/*.rs, or "
    "system/*.read when the server's smart-configuration says SMART v1 only).",
)
@click.option(
    "--token-url",
    envvar="ANASTROZOLE_CDS_BULK_TOKEN_URL",
    help="Token endpoint [env ANASTROZOLE_CDS_BULK_TOKEN_URL] (default: from the server's "
    ".well-known/smart-configuration).",
)
@click.option(
    "--parallel",
    default=4,
    show_default=True,
    type=click.IntRange(1, 32),
    help="Downloads at a time.",
)
def export(
    fhir_server: str,
    group: str | None,
    types: tuple[str, ...],
    type_filters: tuple[str, ...],
    since: str | None,
    out: Path,
    client_id: str | None,
    key_file: Path | None,
    scope: str | None,
    token_url: str | None,
    parallel: int,
) -> None:
    """Download a FHIR Bulk Data export (Patient or Group $export) into a folder, for
    `population`. Authorised by SMART Backend Services when a client id is given. See
    docs/population.md."""
    from ehr.bulk import BulkClient, BulkError, ExportRequest

    if not fhir_server.startswith(("https://", "http://")):
        raise click.BadParameter("not an http(s) URL", param_hint="--fhir-server")
    names = [t.strip() for value in types or (EXPORT_TYPES,) for t in value.split(",") if t.strip()]
    request = ExportRequest(group, tuple(names), type_filters, since)
    auth = _backend_services(fhir_server, client_id, key_file, scope, token_url)
    client = BulkClient(
        fhir_server, auth=auth, parallel=parallel, progress=lambda line: click.echo(line, err=True)
    )
    try:
        manifest = client.export(request, out)
    except BulkError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"export complete: {manifest}; evaluate it with `anastrozole-cds population {out}`",
        err=True,
    )


def _backend_services(
    fhir_server: str,
    client_id: str | None,
    key_file: Path | None,
    scope: str | None,
    token_url: str | None,
) -> BackendServicesAuth | None:
    """SMART Backend Services for `export`, or None without a client id."""
    from ehr.backend_services import AuthError, BackendServicesAuth, discover
    from ehr.bulk import new_session
    from ehr.keys import KeyFileError, load_signing_key

    if not client_id:
        if key_file:
            raise click.BadParameter("--key-file needs --client-id", param_hint="--client-id")
        return None
    if not key_file:
        raise click.BadParameter(
            "--client-id needs --key-file (make one with `anastrozole-cds keys generate`)",
            param_hint="--key-file",
        )
    try:
        key = load_signing_key(key_file)
    except KeyFileError as error:
        raise click.BadParameter(str(error), param_hint="--key-file") from None
    session = new_session(fhir_server)
    if token_url is None or scope is None:
        try:
            configuration = discover(session, fhir_server)
        except AuthError as error:
            raise click.ClickException(str(error)) from None
        token_url = token_url or configuration.token_endpoint
        scope = scope or configuration.scope()
    return BackendServicesAuth(session, token_url, client_id, key, scope)


MAX_LINE_PROBLEMS_SHOWN = 20


@main.command()
@click.argument("export_dir", metavar="EXPORT")
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    help="Where to write the rows: a file ('-': standard output); with --engine spark, a "
    "folder (local, hdfs:// or s3a://), one subfolder per rule_id.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "ndjson", "parquet"]),
    default="csv",
    show_default=True,
    help="parquet: with --engine spark only.",
)
@click.option("--now", "now_text", help="Evaluate as of this ISO date (default: the current time).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes reading and evaluating (in-process engine).",
)
@click.option(
    "--engine",
    type=click.Choice(["in-process", "spark"]),
    default="in-process",
    show_default=True,
    help="spark: group and evaluate on Apache Spark (pip install 'anastrozole-cds[spark]').",
)
@click.option(
    "--master",
    default=None,
    help="Spark master URL (default: local[*], Spark embedded in this process; "
    "spark-submit sets its own).",
)
def population(
    export_dir: str,
    output: str,
    output_format: str,
    now_text: str | None,
    workers: int,
    engine: str,
    master: str | None,
) -> None:
    """Evaluate every patient of a FHIR Bulk Data export (the files its manifest.json lists,
    else EXPORT/*.ndjson[.gz] but log.ndjson).

    Writes one row per finding (patient_id, rule_id, severity, summary, intent, evidence,
    data_gaps), sorted by patient, and a data-incomplete row for a patient whose data is
    missing from the export; counts go to standard error. Exit status: 0 clean, 1 some lines
    could not be read (or a worker died, or the output could not be written), 2 usage, 3 data
    that rows depend on is missing. See docs/population.md.
    """
    now = parse_now(now_text)
    if engine == "spark":
        report = _population_on_spark(export_dir, output, output_format, now, master)
    else:
        if master is not None:
            raise click.BadParameter("only with --engine spark", param_hint="--master")
        if output_format == "parquet":
            raise click.BadParameter("parquet: only with --engine spark", param_hint="--format")
        in_process_format: OutputFormat = "csv" if output_format == "csv" else "ndjson"
        report = _population_in_process(
            Path(export_dir), Path(output), in_process_format, now, workers
        )
    raise SystemExit(report)


def _population_in_process(
    folder: Path, output: Path, output_format: OutputFormat, now: datetime, workers: int
) -> int:
    from anastrozole_cds import population as bulk
    from anastrozole_cds.population.judging import evaluate_population
    from anastrozole_cds.population.writing import write_rows

    if not folder.is_dir():
        raise click.BadParameter(f"{folder} does not exist or is not a folder", param_hint="EXPORT")
    with _output_stream(output) as stream:  # opened first: a bad path fails before the work
        try:
            population, report = bulk.read_folder(folder, now=now, workers=workers)
        except (bulk.NoExportFiles, bulk.ManifestError) as error:
            raise click.BadParameter(str(error), param_hint="EXPORT") from None
        except BrokenProcessPool:
            raise click.ClickException(_WORKER_DIED) from None
        _show_problems([str(p) for p in population.problems])
        per_patient = evaluate_population(population.patients(), now=now, workers=workers)
        try:
            found = write_rows(per_patient, stream, output_format)
        except BrokenProcessPool:
            raise click.ClickException(_WORKER_DIED) from None
        except OSError as error:  # e.g. the disk is full
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    for line in report.summary(found):
        click.echo(line, err=True)
    return report.exit_status()


_WORKER_DIED = "a worker process died (out of memory?): try fewer --workers"


def _population_on_spark(
    export: str, output: str, output_format: str, now: datetime, master: str | None
) -> int:
    try:
        from anastrozole_cds.population import spark as on_spark
    except ImportError as error:  # pyspark is an extra
        raise click.ClickException(
            f"--engine spark needs pyspark ({error}): pip install 'anastrozole-cds[spark]'"
        ) from None
    if output == "-":
        raise click.BadParameter("give a folder for Spark's output", param_hint="--output")
    from anastrozole_cds import population as bulk

    try:
        result = on_spark.run(export, output, output_format, now=now, master=master)
    except (bulk.NoExportFiles, bulk.ManifestError) as error:
        raise click.BadParameter(str(error), param_hint="EXPORT") from None
    except on_spark.SparkRunError as error:
        raise click.ClickException(str(error)) from None
    _show_problems(result.problems)
    for line in result.report.summary(result.found):
        click.echo(line, err=True)
    return result.report.exit_status()


def _show_problems(problems: list[str]) -> None:
    for problem in problems[:MAX_LINE_PROBLEMS_SHOWN]:
        click.echo(problem, err=True)
    if len(problems) > MAX_LINE_PROBLEMS_SHOWN:
        click.echo(f"... and {len(problems) - MAX_LINE_PROBLEMS_SHOWN} more", err=True)


@contextmanager
def _output_stream(output: Path) -> Iterator[TextIO]:
    """Standard output for '-', else the file (newline="": the csv module writes its own)."""
    if str(output) == "-":
        yield sys.stdout
        return
    try:
        stream = output.open("w", encoding="utf-8", newline="")
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    with stream:
        yield stream


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="Worker processes."
)
@click.option(
    "--threads",
    default=4,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads per worker.",
)
@config_option
@pass_product
def serve(
    product: Product, host: str, port: int, workers: int, threads: int, config: Path | None
) -> None:
    """Run the CDS Hooks service (and the rest of the app) under gunicorn."""
    from anastrozole_cds.server import serve as run_server
    from runtime.settings import ConfigError

    settings = product.settings(config)
    try:
        run_server(settings, host=host, port=port, workers=workers, threads=threads, config=config)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


for command in AREA_COMMANDS:
    main.add_command(command)


if __name__ == "__main__":
    main()
