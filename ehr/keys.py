"""A private key set for private_key_jwt client authentication: the SMART app (asymmetric
client) and the Bulk Data client (SMART Backend Services) sign their assertions with it.

The private key set is a JWKS file written by `anastrozole-cds keys generate` (mode 0600);
the app signs with its first key and publishes the public half of every key at
/smart/jwks.json, so a new key can be added before an old one is removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from joserfc.jwk import ECKey, KeySet, RSAKey

SigningAlgorithm = Literal["ES384", "RS384"]  # the two SMART App Launch requires servers to accept


@dataclass(frozen=True)
class SigningKey:
    key: ECKey | RSAKey
    alg: SigningAlgorithm
    kid: str


class KeyFileError(ValueError):
    """The key file cannot be used; the message says why, never the key."""


def generate_key(alg: SigningAlgorithm) -> ECKey | RSAKey:
    """A new private key for `alg`, its kid the RFC 7638 thumbprint."""
    key: ECKey | RSAKey
    if alg == "ES384":
        key = ECKey.generate_key("P-384", private=True)
    else:
        key = RSAKey.generate_key(3072, private=True)
    key.ensure_kid()
    return key


def private_jwks(keys: list[ECKey | RSAKey], algs: list[SigningAlgorithm]) -> dict[str, Any]:
    return {
        "keys": [
            {**key.as_dict(private=True), "alg": alg, "use": "sig"}
            for key, alg in zip(keys, algs, strict=True)
        ]
    }


def write_key_file(path: Path, jwks: dict[str, Any]) -> None:
    """Write a private JWKS readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(jwks, handle, indent=2)
        handle.write("\n")
    os.chmod(path, 0o600)


def read_key_file(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyFileError(f"key file not found: {path}") from None
    except (OSError, ValueError):
        raise KeyFileError(f"key file is not a readable JWKS: {path}") from None
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise KeyFileError(f"key file has no keys: {path}")
    return [key for key in keys if isinstance(key, dict)]


def load_signing_key(path: Path) -> SigningKey:
    """The first key of the file, which must be a private ES384 (P-384) or RS384 key."""
    first = read_key_file(path)[0]
    if "d" not in first:
        raise KeyFileError(f"the first key in {path} has no private part")
    try:
        key: ECKey | RSAKey
        alg: SigningAlgorithm
        if first.get("kty") == "EC" and first.get("crv") == "P-384":
            key, alg = ECKey.import_key(first), "ES384"
        elif first.get("kty") == "RSA":
            key, alg = RSAKey.import_key(first), "RS384"
        else:
            raise KeyFileError(f"the first key in {path} is neither EC P-384 nor RSA")
    except (ValueError, TypeError) as error:
        if isinstance(error, KeyFileError):
            raise
        raise KeyFileError(f"the first key in {path} cannot be read") from None
    kid = str(first.get("kid") or key.thumbprint())
    return SigningKey(key, alg, kid)


def public_jwks(path: Path) -> dict[str, Any]:
    """The public half of every key in the file, as the EHR fetches it."""
    public = []
    for entry in read_key_file(path):
        key_set = KeySet.import_key_set({"keys": [entry]})
        for key in key_set.keys:
            exported = key.as_dict(private=False)
            exported.update({k: entry[k] for k in ("kid", "alg", "use") if k in entry})
            exported.setdefault("use", "sig")
            public.append(exported)
    return {"keys": public}
