"""The plumbing of GET /metrics (Prometheus), shared by the faces: one registry per app, or,
under `anastrozole-cds serve`, files that every worker process writes and /metrics adds up.

Each face creates its own metrics in `registry_for(app)` (cds_hooks/metrics.py). Under
`serve`, the workers are separate processes: `serve()` calls `share_between_workers(folder)`
before they start, each worker writes its values to files there, and /metrics adds them up
(prometheus-client's multiprocess mode). One server per folder: a lock keeps a second one
from emptying a live server's counts. Without it (tests, `flask run`) the values live in the
process.
"""

from __future__ import annotations

import fcntl
import logging
import os
import struct
from pathlib import Path
from typing import IO, Any

from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.mmap_dict import MmapedDict

log = logging.getLogger(__name__)

EXTENSION = "runtime.metrics"
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LOCK_FILE = "server.lock"  # held by the server whose workers count in the folder


def shared_between_workers() -> bool:
    """Whether the values go to the workers' shared files (multiprocess mode)."""
    return MULTIPROCESS_ENV in os.environ


def registry_for(app: Flask) -> CollectorRegistry | None:
    """The registry the app's metrics are created in; None when the workers share files
    (prometheus-client then keeps the values in the process's files)."""
    if shared_between_workers():
        return None
    registry: CollectorRegistry | None = app.extensions.get(EXTENSION)
    if registry is None:
        registry = app.extensions[EXTENSION] = CollectorRegistry()
    return registry


def exposition(app: Flask) -> bytes:
    """The Prometheus text format: this process's values, or every worker's added up."""
    registry = registry_for(app)
    if registry is not None:
        return generate_latest(registry)
    shared = CollectorRegistry()
    multiprocess.MultiProcessCollector(shared)
    return generate_latest(shared)


# -- several worker processes --------------------------------------------------------------------


class MetricsFolderInUse(RuntimeError):
    """Another live server counts in this folder."""


# Held open for the server's life: the lock is released when it (and its workers) end.
_folder_lock: list[IO[str]] = []


def share_between_workers(folder: Path) -> None:
    """Multiprocess mode for the workers about to start: each writes its values to files in
    `folder`, and /metrics adds them up. Call before any worker is forked.

    The folder is emptied only once this server holds its lock; MetricsFolderInUse, and
    nothing touched, when another live server holds it (its counts would be wiped)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise MetricsFolderInUse(f"{folder} is in use by another running server") from None
    _folder_lock.append(lock)
    for values_file in folder.glob("*.db"):  # the counts of a server that has ended
        values_file.unlink()
    os.environ[MULTIPROCESS_ENV] = str(folder)
    values.MmapedDict = PreallocatedMmapedDict  # type: ignore[misc]  # see its docstring
    # prometheus-client chooses how values are kept when it is imported, which this module did
    # before the variable was set; choose again, before any metric exists (they are created in
    # the workers).
    values.ValueClass = values.get_value_class()


def worker_exited(pid: int) -> None:
    """gunicorn's child_exit: the worker's counts stay in the totals, its live files go."""
    if shared_between_workers():
        multiprocess.mark_process_dead(pid)


# -- the workers' files on a full disk -------------------------------------------------------------


class PreallocatedMmapedDict(MmapedDict):  # type: ignore[misc]
    """prometheus-client's per-worker values file, with its disk blocks reserved before it is
    written through memory.

    prometheus-client sizes the file with truncate(), which reserves nothing, then writes to
    it through mmap: on a full disk the first write to a page that has no block kills the
    worker with SIGBUS, and its replacement dies the same way (issue 18: up to 55 of 72
    requests got no answer). posix_fallocate reserves the blocks first, or fails with an
    OSError (ENOSPC) that the caller can catch: the metric is then not counted, and the
    request is answered (cds_hooks/metrics.py)."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            with open(filename, "a+b") as file:
                size = os.fstat(file.fileno()).st_size
                try:
                    _reserve(file.fileno(), max(size, _initial_size()))
                except OSError:
                    if size == 0:  # an empty file would break /metrics's reading of them all
                        os.unlink(filename)
                    raise
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> Any:
        encoded = key.encode("utf-8")
        padded = len(encoded) + (8 - (len(encoded) + 4) % 8)
        needed = self._used + struct.calcsize(f"i{padded}sdd")
        capacity = self._capacity
        while needed > capacity:  # what MmapedDict will grow to, reserved first
            capacity *= 2
        if capacity != self._capacity:
            _reserve(self._f.fileno(), capacity)
        return super()._init_value(key)


def _initial_size() -> int:
    from prometheus_client import mmap_dict

    return int(mmap_dict._INITIAL_MMAP_SIZE)


def _reserve(descriptor: int, size: int) -> None:
    """Blocks for the first `size` bytes of the file, or OSError (ENOSPC)."""
    os.posix_fallocate(descriptor, 0, size)
