"""Which files of an export folder hold resources: the ones its manifest lists, else every
`*.ndjson[.gz]` but the known files that are not FHIR (a bulk-data client's `log.ndjson`).

A manifest (`manifest.json`, as `anastrozole-cds export` saves it last) is the export's own
list: a file it lists that is absent is data missing, and so is a file with fewer resources
than its `count`. Its `error` files (and a bulk-data client's `error/` folder) hold the
OperationOutcomes in which the server said what it could not export. Pure: the caller says
which files exist, so that the Spark engine reads HDFS or S3 folders with the same rules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import unquote, urlsplit

import orjson

MANIFEST: Final = "manifest.json"
EXPORT_SUFFIXES: Final = (".ndjson", ".ndjson.gz")
# Written into an export folder by tools, one JSON object a line, and not FHIR: the
# smart-on-fhir bulk-data-client's event log (the sample-bulk-fhir-datasets carry one too).
NOT_RESOURCES: Final = frozenset({"log.ndjson", "log.ndjson.gz"})
ERROR_FOLDER: Final = "error"  # the bulk-data-client saves the manifest's error files here


class ManifestError(ValueError):
    """The manifest cannot be read as a Bulk Data manifest; the message says why."""


@dataclass(frozen=True, slots=True)
class ExportFile:
    name: str  # relative to the export folder ("Observation.000.ndjson", "error/1.ndjson")
    resource_type: str | None = None  # as the manifest declares it
    count: int | None = None  # resources, as the manifest declares it


@dataclass(slots=True)
class Layout:
    """The files to read, and what the folder says is missing from them."""

    files: list[ExportFile] = field(default_factory=list)
    error_files: list[ExportFile] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # known non-FHIR files, by name
    missing: list[str] = field(default_factory=list)  # listed in the manifest, absent
    from_manifest: bool = False


def is_export_file(name: str) -> bool:
    return name.endswith(EXPORT_SUFFIXES)


def layout_of(names: Iterable[str], read: Callable[[str], bytes]) -> Layout:
    """The layout of a folder holding these files (names relative to it, `error/...` for
    that folder's); `read(name)` gives a file's bytes (only the manifest's are asked for)."""
    present = set(names)
    if MANIFEST in present:
        return _from_manifest(_manifest(read(MANIFEST)), present)
    layout = Layout()
    for name in sorted(present):
        if not is_export_file(name):
            continue
        if name.startswith(f"{ERROR_FOLDER}/"):
            layout.error_files.append(ExportFile(name, "OperationOutcome"))
        elif "/" in name:
            continue  # another tool's folder (the bulk-data-client's deleted/)
        elif name in NOT_RESOURCES:
            layout.skipped.append(name)
        else:
            layout.files.append(ExportFile(name))
    return layout


def _manifest(data: bytes) -> dict[str, Any]:
    try:
        manifest = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ManifestError(f"{MANIFEST} is not JSON") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
        raise ManifestError(f"{MANIFEST} is not a Bulk Data manifest (no output list)")
    return manifest


def _from_manifest(manifest: dict[str, Any], present: set[str]) -> Layout:
    layout = Layout(from_manifest=True)
    for key, into in (("output", layout.files), ("error", layout.error_files)):
        entries = manifest.get(key) or []
        if not isinstance(entries, list):
            raise ManifestError(f"{MANIFEST}: {key} is not a list")
        for number, entry in enumerate(entries, start=1):
            listed = _listed_file(entry, key, number)
            if listed.name in present:
                into.append(listed)
            else:
                layout.missing.append(listed.name)
    return layout


def _listed_file(entry: Any, key: str, number: int) -> ExportFile:
    """One `output` or `error` entry: the local file is its `file` (written by `export`),
    else the last segment of its `url` (what a download by URL saves)."""
    if not isinstance(entry, dict):
        raise ManifestError(f"{MANIFEST}: {key} entry {number} is not an object")
    name = entry.get("file")
    if not isinstance(name, str) or not name:
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            raise ManifestError(f"{MANIFEST}: {key} entry {number} has no url")
        name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    if name.startswith("/") or ".." in name.split("/"):
        raise ManifestError(f"{MANIFEST}: {key} entry {number} names a file outside the folder")
    count = entry.get("count")
    resource_type = entry.get("type")
    return ExportFile(
        name,
        resource_type if isinstance(resource_type, str) else None,
        count if isinstance(count, int) and not isinstance(count, bool) else None,
    )
