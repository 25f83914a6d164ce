"""`anastrozole-cds keys generate`: the SMART app's key pair for private_key_jwt.

Registered on the product's command line by `anastrozole_cds.cli` (COMMANDS).
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ehr.keys import generate_key, private_jwks, public_jwks, read_key_file, write_key_file

DEFAULT_KEY_FILE = Path("instance") / "smart-client-key.json"


@click.group()
def keys() -> None:
    """The SMART app's signing keys (confidential asymmetric client, private_key_jwt)."""


@keys.command()
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_KEY_FILE,
    show_default=True,
    help="Where to write the private key set (JWKS, readable by its owner only).",
)
@click.option(
    "--alg",
    type=click.Choice(["ES384", "RS384"]),
    default="ES384",
    show_default=True,
    help="Signing algorithm (SMART App Launch: servers accept both).",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
@click.option(
    "--add",
    is_flag=True,
    help="Put a new key in front of the keys already in the file (key rotation): the app "
    "signs with it, and keeps publishing the old ones until you remove them.",
)
def generate(out: Path, alg: str, force: bool, add: bool) -> None:
    """Make a key pair; print the public JWKS to register with the EHR."""
    existing: list[dict[str, object]] = []
    if out.exists():
        if add:
            existing = read_key_file(out)
        elif not force:
            raise click.ClickException(
                f"{out} exists: use --force to replace it or --add to rotate"
            )
    key = generate_key(alg)  # type: ignore[arg-type]
    document = private_jwks([key], [alg])  # type: ignore[list-item]
    document["keys"].extend(existing)
    write_key_file(out, document)
    click.echo(f"Private key set written to {out} (mode 0600). Keep it secret.", err=True)
    click.echo(
        "Set ANASTROZOLE_CDS_SMART_CLIENT_AUTH=private_key_jwt and "
        f"ANASTROZOLE_CDS_SMART_PRIVATE_KEY_FILE={out.resolve()}; the app publishes the public "
        "keys at /smart/jwks.json. Public JWKS:",
        err=True,
    )
    click.echo(json.dumps(public_jwks(out), indent=2))


COMMANDS = (keys,)
