"""What the command line's top gives each area's commands, as click's context object: the
product's settings, checked whole, and its app factory. The areas (cds_hooks, smartapp,
sandbox) sit below the top and do not import it; their commands ask for these instead."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from flask import Flask

    from runtime.settings import ProductSettings


@dataclass(frozen=True, slots=True)
class Product:
    """The composed product, for commands: `anastrozole_cds.cli` makes it."""

    load_settings: Callable[[Path | None], ProductSettings]  # ConfigError naming a setting
    create_app: Callable[[ProductSettings], Flask]

    def settings(self, config: Path | None) -> ProductSettings:
        """Settings for a command; a bad configuration is one line, not a traceback."""
        from runtime.settings import ConfigError

        try:
            settings = self.load_settings(config)
            settings.check_issuer_key_files()
        except ConfigError as error:
            raise click.ClickException(str(error)) from error
        return settings


pass_product = click.make_pass_decorator(Product)

config_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML settings file (default: $ANASTROZOLE_CDS_CONFIG).",
)


def parse_now(value: str | None) -> datetime:
    """`--now`: an ISO date or date-time (UTC when it names no zone); the clock when absent."""
    if value is None:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise click.BadParameter(f"not an ISO date or date-time: {value!r}") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
