"""The CDS Hooks service's commands: `anastrozole-cds discovery` and `report`."""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path

import click
import orjson

from runtime.cli import Product, config_option, pass_product


@click.command()
@config_option
@pass_product
def discovery(product: Product, config: Path | None) -> None:
    """Print the CDS Hooks discovery document (GET /cds-services)."""
    from cds_hooks.services import discovery_document
    from runtime.card_settings import read_card_settings

    settings = product.settings(config)
    document = discovery_document(
        relative_dates=settings.prefetch_relative_dates, cards=read_card_settings(settings.cards)
    )
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\n")


@click.command()
@click.option(
    "--since",
    required=True,
    help="First day counted (ISO date, UTC): cards shown since then, and the answers to them.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["html", "csv"]),
    default="html",
    show_default=True,
    help="One HTML page with tables and SVG charts, or CSV rows per week, EHR, tenant and rule.",
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="File to write (default: standard output).",
)
@config_option
@pass_product
def report(
    product: Product, since: str, output_format: str, output: Path | None, config: Path | None
) -> None:
    """The override report for the committee that owns the rules: cards per rule per week,
    acceptance and override rates, override reasons (comments counted, never shown), cards
    kept away by an acknowledgement; per EHR and tenant (docs/cds-hooks.md, "Alert burden")."""
    from sqlalchemy.exc import DBAPIError

    from cds_hooks.report import build_report, report_csv, report_html
    from runtime.acknowledgements import answers, card_counts
    from runtime.store import Store

    try:
        first = date.fromisoformat(since)
    except ValueError:
        raise click.BadParameter(f"not an ISO date: {since!r}", param_hint="--since") from None
    settings = product.settings(config)
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    store = Store(settings.store_location())
    try:
        built = build_report(first, card_counts(store.engine, start), answers(store.engine, start))
    except DBAPIError as error:
        raise click.ClickException(
            f"cannot read the cards from the store ({type(error.orig).__name__}): has the "
            "service run with this store_url?"
        ) from None
    finally:
        store.dispose()
    if output_format == "csv":
        text = report_csv(built)
    else:
        text = report_html(built, generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"report written to {output}", err=True)


COMMANDS = (discovery, report)
