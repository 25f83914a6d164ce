"""An EHR's signing key for `check --service`: the private JWK that `check --key` signs with,
and its public half as a key set, the `jwks_file` of the service's `[[issuers]]` entry.

    .venv/bin/python -m sandbox.ehr_keys   # instance/ehr-private.jwk.json, instance/ehr-jwks.json

Run again, it keeps the private key and rewrites its key set; `--force` makes a new pair.
"""

from __future__ import annotations

from pathlib import Path

import click
import orjson
from joserfc.jwk import ECKey, KeySet, RSAKey

from ehr.keys import write_key_file
from sandbox.ehr_client import SandboxError, load_signing_key

# instance/ is in .gitignore: a private key never lands in the repository by accident.
DEFAULT_PRIVATE_FILE = Path("instance") / "ehr-private.jwk.json"
DEFAULT_JWKS_FILE = Path("instance") / "ehr-jwks.json"


def write_ehr_keys(
    private_file: Path, jwks_file: Path, *, kid: str = "ehr-1", force: bool = False
) -> bool:
    """Write the pair (an EC P-384 key, ES384); True when a new private key was made."""
    made = force or not private_file.exists()
    key: ECKey | RSAKey
    if made:
        key = ECKey.generate_key("P-384", parameters={"kid": kid}, private=True)
        write_key_file(private_file, key.as_dict(private=True))  # readable by its owner only
    else:
        try:
            key = load_signing_key(orjson.loads(private_file.read_bytes()))
        except orjson.JSONDecodeError:
            raise SandboxError(f"{private_file} is not JSON: use --force to replace it") from None
        except SandboxError as error:
            raise SandboxError(f"{private_file}: {error}; use --force to replace it") from None
    jwks_file.parent.mkdir(parents=True, exist_ok=True)
    public = KeySet([key]).as_dict(private=False)
    jwks_file.write_bytes(orjson.dumps(public, option=orjson.OPT_INDENT_2))
    return made


@click.command()
@click.option(
    "--private",
    "private_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_PRIVATE_FILE,
    show_default=True,
    help="The private JWK, for `check --key` (readable by its owner only).",
)
@click.option(
    "--jwks",
    "jwks_file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_JWKS_FILE,
    show_default=True,
    help="The public key set, for the service's `jwks_file`.",
)
@click.option("--kid", default="ehr-1", show_default=True, help="The key id (JWT header kid).")
@click.option("--force", is_flag=True, help="Make a new key even if the private file exists.")
def main(private_file: Path, jwks_file: Path, kid: str, force: bool) -> None:
    """Make (or keep) an EHR's signing key and write its public key set."""
    try:
        made = write_ehr_keys(private_file, jwks_file, kid=kid, force=force)
    except SandboxError as error:
        raise click.ClickException(str(error)) from None
    what = "written (mode 0600)" if made else "kept (--force makes a new one)"
    click.echo(f"private JWK {what}: {private_file}  (check --key)")
    click.echo(f"public key set written: {jwks_file}  (the issuer's jwks_file)")


if __name__ == "__main__":
    main()
