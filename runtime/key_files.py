"""Keys made on first use in the instance folder (the SMART app's token key, the card store's
patient key): made once even when several workers start at the same moment, owner-only."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def read_or_create_key_file(path: Path, make: Callable[[], bytes], *, what: str) -> bytes:
    """The key in `path`; made with `make` first if there is none. Workers racing here end
    with one key: each writes its own temporary file (0600) and links it into place, and only
    one link succeeds."""
    try:
        return _read_key_file(path, what)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(make() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
            log.info("%s created in %s", what, path)
        except FileExistsError:  # another worker made it first: use theirs
            pass
    finally:
        os.unlink(temporary)
    return _read_key_file(path, what)


def _read_key_file(path: Path, what: str) -> bytes:
    key = path.read_bytes().strip()
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        log.warning("%s file %s is readable by others: chmod 600 it", what, path)
    return key
