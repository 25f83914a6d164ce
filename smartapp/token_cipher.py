"""Tokens sealed for the database: Fernet (AES-128-CBC with HMAC-SHA256, `cryptography`).

The key is the `token_key` setting, or else one generated on first use and kept in the instance
folder (`smart-token-key`, mode 0600), shared by every worker of the instance. Older keys in
`previous_token_keys` still open what they sealed (MultiFernet), so a key can be replaced
without ending the sessions of the day. A sealed token names its session: moved to another row,
it does not open.
"""

from __future__ import annotations

import binascii
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from runtime.key_files import read_or_create_key_file

log = logging.getLogger(__name__)

KEY_FILE_NAME = "smart-token-key"


class TokenKeyError(ValueError):
    """The token key cannot be used; the message says why, never the key."""


def _fernet(key: str | bytes, what: str) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError, binascii.Error):
        raise TokenKeyError(
            f"{what} is not a Fernet key (32 bytes, URL-safe base64; make one with "
            '`python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"`)'
        ) from None


def token_key_file(path: Path) -> bytes:
    """The token key in `path`, made on first use (runtime.key_files: once, whatever the
    workers racing here), checked to be a Fernet key."""
    key = read_or_create_key_file(path, Fernet.generate_key, what="SMART token key")
    _fernet(key, f"the key in {path}")
    return key


class TokenCipher:
    """Seals and opens tokens. Thread-safe; the key file is read (or made) on first use."""

    def __init__(
        self,
        current_key: str | bytes | None,
        previous_keys: Sequence[str | bytes] = (),
        *,
        key_file: Path | None = None,
    ) -> None:
        if current_key is None and key_file is None:
            raise TokenKeyError("give a token key or a key file")
        self._previous = [
            _fernet(key, f"previous token key {number}")
            for number, key in enumerate(previous_keys, start=1)
        ]
        self._key_file = key_file
        self._lock = threading.Lock()
        self._keys: MultiFernet | None = None
        if current_key is not None:
            self._keys = MultiFernet([_fernet(current_key, "the token key"), *self._previous])

    def _multi(self) -> MultiFernet:
        with self._lock:
            if self._keys is None:
                assert self._key_file is not None  # checked in __init__
                current = _fernet(token_key_file(self._key_file), "the key file")
                self._keys = MultiFernet([current, *self._previous])
            return self._keys

    def seal(self, token: str, *, handle: str) -> str:
        return self._multi().encrypt(f"{handle}\n{token}".encode()).decode("ascii")

    def open(self, sealed: str, *, handle: str) -> str | None:
        """The token, or None when no key opens it, it was altered or it is another session's."""
        try:
            plain = self._multi().decrypt(sealed.encode("ascii")).decode()
        except (InvalidToken, UnicodeError):
            return None
        owner, separator, token = plain.partition("\n")
        return token if separator and owner == handle else None
