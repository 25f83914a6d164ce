"""The `anastrozole-cds` command: the top's own commands (evaluate, population, serve), and
each area's, registered from its `COMMANDS` (cds_hooks, smartapp, sandbox). The areas get the
composed product (settings checked whole, the app factory) as click's context object."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
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

    from anastrozole_cds.population import OutputFormat
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
    findings = evaluate_resources(resources, now=parse_now(now_text))
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


MAX_LINE_PROBLEMS_SHOWN = 20


@main.command()
@click.argument("export_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    default="-",
    show_default=True,
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="File to write the rows to ('-': standard output).",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["csv", "ndjson"]),
    default="csv",
    show_default=True,
)
@click.option("--now", "now_text", help="Evaluate as of this ISO date (default: the current time).")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes evaluating the patients.",
)
def population(
    export_dir: Path, output: Path, output_format: OutputFormat, now_text: str | None, workers: int
) -> None:
    """Evaluate every patient of a FHIR Bulk Data export (EXPORT_DIR/*.ndjson[.gz]).

    Writes one row per finding (patient_id, rule_id, severity, summary, intent, evidence,
    data_gaps), sorted by patient; counts go to standard error. Exit status 1 when a line
    could not be read (the rest is still evaluated), or a worker died or the output could not
    be written. See docs/population.md.
    """
    from anastrozole_cds import population as bulk

    now = parse_now(now_text)
    files = bulk.export_files(export_dir)
    if not files:
        raise click.BadParameter(
            f"no *.ndjson or *.ndjson.gz files in {export_dir}", param_hint="EXPORT_DIR"
        )
    with _output_stream(output) as stream:  # opened first: a bad path fails before the work
        export = bulk.read_export(files)
        for problem in export.problems[:MAX_LINE_PROBLEMS_SHOWN]:
            click.echo(str(problem), err=True)
        if len(export.problems) > MAX_LINE_PROBLEMS_SHOWN:
            click.echo(f"... and {len(export.problems) - MAX_LINE_PROBLEMS_SHOWN} more", err=True)
        per_patient = bulk.evaluate_population(export.patients(), now=now, workers=workers)
        try:
            found = bulk.write_rows(per_patient, stream, output_format)
        except BrokenProcessPool:
            raise click.ClickException(
                "a worker process died (out of memory?): try fewer --workers"
            ) from None
        except OSError as error:  # e.g. the disk is full
            raise click.ClickException(f"cannot write {output}: {error.strerror}") from None
    for line in bulk.summary(export.counts, found, bad_lines=len(export.problems)):
        click.echo(line, err=True)
    if export.problems:
        raise SystemExit(1)


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
