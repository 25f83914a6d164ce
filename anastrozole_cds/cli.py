"""The `anastrozole-cds` command."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click
import orjson

from anastrozole_cds import __version__

if TYPE_CHECKING:
    from anastrozole_cds.config import ProductSettings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="anastrozole-cds")
def main() -> None:
    """Anastrozole monitoring: CDS Hooks service, SMART app and integrator tools."""


def _parse_now(value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"not an ISO date or date-time: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
    findings = evaluate_resources(resources, now=_parse_now(now_text))
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


def _product_settings(config: Path | None) -> ProductSettings:
    """Settings for `serve` and `discovery`; a bad configuration is a clean CLI error."""
    from anastrozole_cds.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


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
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file (default: $ANASTROZOLE_CDS_CONFIG).",
)
def serve(host: str, port: int, workers: int, threads: int, config: Path | None) -> None:
    """Run the CDS Hooks service (and the rest of the app) under gunicorn."""
    from anastrozole_cds.app import serve as run_server

    run_server(_product_settings(config), host=host, port=port, workers=workers, threads=threads)


@main.command()
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file (default: $ANASTROZOLE_CDS_CONFIG).",
)
def discovery(config: Path | None) -> None:
    """Print the CDS Hooks discovery document (GET /cds-services)."""
    from cds_hooks.services import discovery_document

    settings = _product_settings(config)
    document = discovery_document(relative_dates=settings.prefetch_relative_dates)
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")


from smartapp.cli import keys  # noqa: E402  (the SMART app's key pairs: `keys generate`)

main.add_command(keys)


if __name__ == "__main__":
    main()
