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


# -- the database's schema (runtime owns it) --------------------------------------------------


@click.group()
def db() -> None:
    """The database's schema: create or upgrade it, or say where it stands."""


@db.command("upgrade")
@config_option
@pass_product
def db_upgrade(product: Product, config: Path | None) -> None:
    """Create the tables, or upgrade them to this version's schema (store_url). Safe to run
    again, and while servers run: one upgrade at a time, all of it or none of it."""
    from sqlalchemy.exc import SQLAlchemyError

    from runtime import schema
    from runtime.store import readable_by_others

    url = product.settings(config).store_location()
    try:
        before = schema.state(url)
        revision = schema.upgrade(url)
    except schema.SchemaTooNew as error:
        raise click.ClickException(str(error)) from None
    except (SQLAlchemyError, ImportError) as error:
        raise click.ClickException(
            f"store_url: cannot upgrade the database at {schema.shown_url(url)}: "
            f"{schema.describe_error(error)}"
        ) from None
    warning = readable_by_others(url)
    if warning:
        click.echo(f"warning: {warning}", err=True)
    if before.ok:
        click.echo(f"{schema.shown_url(url)}: already at revision {revision}")
    else:
        click.echo(
            f"{schema.shown_url(url)}: upgraded from {before.current or before.status} "
            f"to revision {revision}"
        )


@db.command("current")
@config_option
@pass_product
def db_current(product: Product, config: Path | None) -> None:
    """The schema revision of the database, and whether this version can use it (exit
    status 1 when it cannot)."""
    from runtime import schema

    url = product.settings(config).store_location()
    found = schema.state(url)
    if found.ok:
        click.echo(f"{schema.shown_url(url)}: revision {found.current} (current)")
        return
    raise click.ClickException(f"{schema.shown_url(url)}: {found.problem(_config_hint(config))}")


def _config_hint(config: Path | None) -> str:
    return f" --config {config}" if config else ""


COMMANDS = (db,)
