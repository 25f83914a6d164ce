"""The `anastrozole-cds` command."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click
import orjson

from anastrozole_cds import __version__

if TYPE_CHECKING:
    from anastrozole_cds.config import ProductSettings
    from anastrozole_cds.population import OutputFormat


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
    if not _is_fhir(resources):
        raise click.ClickException(
            f"{file} is not a FHIR Bundle, a resource or a JSON list of resources "
            '(each an object with a "resourceType")'
        )
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

    now = _parse_now(now_text)
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


def _product_settings(config: Path | None) -> ProductSettings:
    """Settings for `serve` and `discovery`; a bad configuration is a clean CLI error."""
    from anastrozole_cds.config import ConfigError, load_settings

    try:
        settings = load_settings(config)
        settings.check_issuer_key_files()
    except ConfigError as error:
        raise click.ClickException(str(error)) from error
    return settings


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
    from anastrozole_cds.config import ConfigError

    settings = _product_settings(config)
    try:
        run_server(settings, host=host, port=port, workers=workers, threads=threads)
    except ConfigError as error:
        raise click.ClickException(str(error)) from error


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


# -- integrator tools: load synthetic patients, play the EHR ---------------------------------


def _parse_day(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"not an ISO date: {value!r}") from error


@main.command()
@click.option("--fhir-server", help="FHIR R4 base URL to load the patients into.")
@click.option("--token", envvar="ANASTROZOLE_CDS_FHIR_TOKEN", help="Bearer token for the server.")
@click.option(
    "--as-of",
    "as_of",
    help="Move the dates so that the patients' today is this ISO date (default: today).",
)
@click.option("--no-shift", is_flag=True, help="Load the dates as written (dated for 2026-11-01).")
@click.option("--list", "list_only", is_flag=True, help="List the synthetic patients and exit.")
@click.argument("patients", nargs=-1)
def load(
    fhir_server: str,
    token: str | None,
    as_of: str | None,
    no_shift: bool,
    list_only: bool,
    patients: tuple[str, ...],
) -> None:
    """Load the synthetic patients (all, or PATIENTS by key) into a FHIR server.

    One transaction per patient, PUT with stable ids: loading again updates, never duplicates.
    """
    from rich.console import Console
    from rich.progress import Progress

    from sandbox.loader import load_patients
    from sandbox.patients import REFERENCE_DATE, all_patients, days_to_shift, patient

    try:
        chosen = [patient(key) for key in patients] if patients else all_patients()
    except KeyError as error:
        raise click.ClickException(str(error.args[0])) from None
    console = Console(stderr=True)
    if list_only:
        for item in chosen:
            click.echo(f"{item.key:22} {item.patient_id:40} {', '.join(item.expected_cards)}")
        return
    if not fhir_server:
        raise click.UsageError("Missing option '--fhir-server' (only --list needs none).")
    days = 0 if no_shift else days_to_shift(_parse_day(as_of))
    console.print(
        f"Loading {len(chosen)} patient{'' if len(chosen) == 1 else 's'} into {fhir_server} "
        f"(dates moved {days:+d} days from {REFERENCE_DATE.isoformat()})",
        soft_wrap=True,
    )
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("Loading", total=len(chosen))

        def done(loaded: object) -> None:
            progress.advance(task)

        results = load_patients(fhir_server, chosen, days=days, token=token, on_done=done)
    for result in results:
        if result.ok:
            click.echo(
                f"loaded  {result.key:22} Patient/{result.patient_id} ({result.resources} resources)"
            )
        else:
            click.echo(f"FAILED  {result.key:22} {result.error}", err=True)
    not_loaded = len(chosen) - sum(1 for result in results if result.ok)
    if not_loaded:
        raise click.ClickException(f"{not_loaded} of {len(chosen)} patient(s) not loaded")


@main.command()
@click.option("--fhir-server", required=True, help="FHIR R4 base URL the patient is on.")
@click.option("--patient", "patient_id", required=True, help="Patient id on that server.")
@click.option(
    "--hook",
    type=click.Choice(["patient-view", "order-select", "order-sign"]),
    default="patient-view",
    show_default=True,
)
@click.option("--service", help="Base URL of a running service (default: the service, in process).")
@click.option(
    "--token",
    envvar="ANASTROZOLE_CDS_FHIR_TOKEN",
    help="Bearer token for the FHIR server; sent as fhirAuthorization.",
)
@click.option(
    "--key",
    "key_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Private JWK (EC P-384 or RSA, with kid) to sign the JWT.",
)
@click.option("--issuer", help="JWT iss (required with --key and --service).")
@click.option(
    "--user",
    "user_id",
    default="Practitioner/sandbox-clinician",
    show_default=True,
    help="context.userId.",
)
@click.option(
    "--draft-order",
    "draft_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Draft order(s) for order hooks: a resource, a Bundle or a JSON list of resources (default: renew the current anastrozole order).",
)
@click.option(
    "--select",
    "selections",
    multiple=True,
    help="order-select: a selected draft, Type/id (default: every draft).",
)
@click.option(
    "--no-prefetch",
    is_flag=True,
    help="Send no prefetch: the service queries the FHIR server itself.",
)
@click.option(
    "--now",
    "now_text",
    help="In process only: judge (and date the prefetch) as of this ISO date-time.",
)
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="In process only: the service's TOML settings.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the raw CDS Hooks response.")
@click.option(
    "--show-request", is_flag=True, help="Print the request body too (the token is masked)."
)
def check(
    fhir_server: str,
    patient_id: str,
    hook: str,
    service: str | None,
    token: str | None,
    key_file: Path | None,
    issuer: str | None,
    user_id: str,
    draft_file: Path | None,
    selections: tuple[str, ...],
    no_prefetch: bool,
    now_text: str | None,
    config: Path | None,
    as_json: bool,
    show_request: bool,
) -> None:
    """Play the EHR: make a CDS Hooks call for a patient and print the cards."""
    from rich.console import Console

    from sandbox.check import SANDBOX_ISSUER, CheckRequest, run_check
    from sandbox.ehr_client import SandboxError, load_signing_key
    from sandbox.render import cards_table, masked_request

    if service and (now_text or config):
        option = "--now" if now_text else "--config"
        raise click.UsageError(
            f"{option} applies only in process: a service at --service judges with its own "
            "clock and settings"
        )
    key = None
    if key_file is not None:
        try:
            key = load_signing_key(orjson.loads(key_file.read_bytes()))
        except (orjson.JSONDecodeError, SandboxError) as error:
            raise click.ClickException(f"{key_file}: {error}") from None
    if service and key is not None and not issuer:
        raise click.UsageError("--issuer is required with --key and --service")
    drafts = _draft_orders(draft_file) if draft_file else None
    console = Console(stderr=True)
    evaluation_time = _parse_now(now_text) if now_text else None
    ask = CheckRequest(
        fhir_server=fhir_server.rstrip("/"),
        patient_id=patient_id,
        hook=hook,
        service=service,
        token=token,
        key=key,
        issuer=issuer or SANDBOX_ISSUER,
        user_id=user_id,
        draft_orders=drafts,
        selections=list(selections) or None,
        prefetch=not no_prefetch,
        evaluation_time=evaluation_time,
        today=evaluation_time.date() if evaluation_time else date.today(),
        config=config,
    )
    try:
        with console.status("Calling the service..."):
            result = run_check(ask)
    except SandboxError as error:
        raise click.ClickException(str(error)) from None
    for problem_key, reason in result.prefetch_problems.items():
        console.print(f"[yellow]prefetch {problem_key} not fetched ({reason}): left to the service")
    if show_request:
        sys.stdout.write(
            orjson.dumps(masked_request(result.request), option=orjson.OPT_INDENT_2).decode() + "\n"
        )
    if as_json:
        sys.stdout.write(orjson.dumps(result.response, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif result.status == 200:
        Console().print(
            cards_table(result.response.get("cards", []), title=f"{hook}: Patient/{patient_id}")
        )
    if result.status != 200:
        detail = result.response if isinstance(result.response, dict) else {}
        raise click.ClickException(
            f"the service answered HTTP {result.status}: {detail.get('message') or detail.get('error') or ''}"
        )


def _draft_orders(path: Path) -> list[dict[str, Any]]:
    """Draft orders from a file: one resource, a Bundle, or a JSON list."""
    try:
        document = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as error:
        raise click.ClickException(f"{path} is not JSON: {error}") from None
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        document = [entry["resource"] for entry in document.get("entry", []) if "resource" in entry]
    drafts = document if isinstance(document, list) else [document]
    if not drafts or not all(
        isinstance(d, dict) and d.get("resourceType") and d.get("id") for d in drafts
    ):
        raise click.ClickException(f"{path}: every draft order needs a resourceType and an id")
    return drafts


@main.command()
@click.option(
    "--port",
    default=8080,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the product (CDS Hooks service and SMART app).",
)
@click.option(
    "--ehr-port",
    default=8081,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port of the sandbox EHR (the page to open).",
)
def demo(port: int, ehr_port: int) -> None:
    """The product beside a sandbox EHR with the synthetic patients, on 127.0.0.1 (offline).

    Starts a real FHIR server loaded with the patients, the product under gunicorn, and a
    sandbox EHR that shows each patient's cards and launches the SMART app. Ctrl-C stops all.
    """
    from sandbox.demo import run_demo
    from sandbox.ehr_client import SandboxError
    from sandbox.fhir_server import FhirServerError
    from sandbox.processes import ProcessError

    try:
        run_demo(port=port, ehr_port=ehr_port, say=click.echo)
    except (SandboxError, FhirServerError, ProcessError) as error:
        raise click.ClickException(str(error)) from error  # fmt: skip


from smartapp.cli import keys  # noqa: E402  (the SMART app's key pairs: `keys generate`)

main.add_command(keys)


if __name__ == "__main__":
    main()
