"""The CDS Hooks service's commands: `anastrozole-cds discovery`."""

from __future__ import annotations

import sys
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


COMMANDS = (discovery,)
