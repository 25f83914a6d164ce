"""The integrator tools' commands: `load` synthetic patients into a FHIR server, `check` (play
the EHR: call a hook, print the cards), and `demo` (what `make run` starts)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Any

import click
import orjson

from runtime.cli import Product, parse_now, pass_product


def _parse_day(value: str | None) -> date:
    if value is None:
        return date.today()
    try:
        return date.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"not an ISO date: {value!r}") from error


@click.command()
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


@click.command()
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
@pass_product
def check(
    product: Product,
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
    evaluation_time = parse_now(now_text) if now_text else None
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
            result = run_check(ask, app_factory=product.create_app)
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


@click.command()
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


COMMANDS = (load, check, demo)
